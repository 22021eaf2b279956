"""Media decoding and the one validation step, on files made on the spot."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from domain import limits
from domain.errors import InvalidInput
from assistant.media import SAMPLE_RATE, decode_audio, load_image
from domain.types import MediaKind
from assistant.validation import validate_turn
from tests.media_factory import FORMATS, write_tone


@pytest.mark.parametrize("suffix,fmt,codec,rate,layout", FORMATS, ids=[f[0] for f in FORMATS])
def test_audio_formats_decode_to_16k_mono_float32(tmp_path, suffix, fmt, codec, rate, layout):
    path = write_tone(tmp_path / f"tone{suffix}", 1.5, rate, fmt, codec, layout)
    audio = decode_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - 1.5) < 0.1
    # The 440 Hz tone survives resampling: its spectrum peaks there.
    spectrum = np.abs(np.fft.rfft(audio[:SAMPLE_RATE]))  # one second: 1 Hz per bin
    assert abs(int(np.argmax(spectrum)) - 440) < 5
    _, [file] = validate_turn("", [(path, path.name)])
    assert file.kind is MediaKind.AUDIO


def test_speech_from_espeak_is_audio(speech_wav):
    _, [file] = validate_turn("listen", [(speech_wav, "q.wav")])
    assert file.kind is MediaKind.AUDIO and file.mime == "audio/wav"


def test_exif_orientation_is_applied_and_result_is_rgb(tmp_path):
    image = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes())
    loaded = load_image(path)
    assert loaded.size == (20, 40)
    assert loaded.mode == "RGB"


def test_transparent_png_is_composited_on_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    assert load_image(path).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_image_formats_are_images(tmp_path, fmt):
    path = tmp_path / f"img.{fmt.lower()}"
    Image.new("RGB", (30, 30), (1, 2, 3)).save(path, format=fmt)
    _, [file] = validate_turn("", [(path, path.name)])
    assert file.kind is MediaKind.IMAGE


def test_several_files_keep_their_order(tmp_path, png_file, speech_wav):
    _, files = validate_turn("two", [(speech_wav, "a.wav"), (png_file, "b.png")])
    assert [f.filename for f in files] == ["a.wav", "b.png"]
    assert [f.kind for f in files] == [MediaKind.AUDIO, MediaKind.IMAGE]


def expect_invalid(match: str, text: str, uploads):
    with pytest.raises(InvalidInput, match=match):
        validate_turn(text, uploads)


def test_empty_message_is_refused():
    expect_invalid("Type a message", "   \n", [])


def test_too_long_message_names_the_limit():
    expect_invalid(f"{limits.MAX_MESSAGE_CHARS:,}", "x" * (limits.MAX_MESSAGE_CHARS + 1), [])


def test_too_many_files(png_file):
    expect_invalid("at most", "hi", [(png_file, "p.png")] * (limits.MAX_FILES_PER_MESSAGE + 1))


def test_too_big_file(tmp_path):
    path = tmp_path / "huge.wav"
    with open(path, "wb") as f:
        f.truncate(limits.MAX_FILE_BYTES + 1)
    expect_invalid("huge.wav.*MB", "", [(path, "huge.wav")])


def test_too_many_pixels(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("1", (10_000, limits.MAX_IMAGE_PIXELS // 10_000 + 10)).save(path)
    expect_invalid("wide.png.*megapixels", "", [(path, "wide.png")])


def test_audio_length_limit_is_configurable(tmp_path):
    path = write_tone(tmp_path / "long.wav", 12, rate=8000)
    with pytest.raises(InvalidInput, match="“long.wav” is longer than 10 seconds"):
        validate_turn("", [(path, "long.wav")], max_audio_seconds=10)
    assert validate_turn("", [(path, "long.wav")], max_audio_seconds=15)[1][0].kind is MediaKind.AUDIO


def test_not_media(tmp_path):
    path = tmp_path / "notes.png"
    path.write_bytes(b"this is not an image")
    expect_invalid("notes.png.*not an image or audio", "", [(path, "notes.png")])


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    expect_invalid("empty.wav.*empty", "", [(path, "empty.wav")])
