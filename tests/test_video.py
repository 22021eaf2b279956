"""Video files: probing, sampling frames and sound, and the limits validation names; files made on the spot."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.media import SAMPLE_RATE, decode_video, load_image, probe
from assistant.validation import validate_turn
from assistant.video import frame_count, frame_pixels, scaled_size
from domain import limits
from domain.errors import InvalidInput
from domain.types import MediaKind
from tests.media_factory import (
    VIDEO_FORMATS,
    frameless_video,
    moving_square,
    still_video,
    truncated,
    write_tone,
    write_video,
)


@pytest.mark.parametrize("suffix,fmt,codec,audio_codec", VIDEO_FORMATS, ids=[f[0] for f in VIDEO_FORMATS])
def test_each_container_is_a_video_with_its_frames_and_sound(tmp_path, suffix, fmt, codec, audio_codec):
    path = write_video(tmp_path / f"clip{suffix}", seconds=3.0, fmt=fmt, codec=codec, audio_codec=audio_codec)
    _, [file] = validate_turn("", [(path, path.name)])
    assert file.kind is MediaKind.VIDEO and file.mime.startswith("video/")
    clip = decode_video(path, fps=2.0, max_frames=64)
    assert clip.frames.shape == (6, 120, 160, 3) and clip.frames.dtype == np.uint8  # 2 a second, for 3 seconds
    assert abs(clip.fps - 2.0) < 0.05 and abs(clip.seconds - 3.0) < 0.05
    assert clip.audio is not None and clip.audio.dtype == np.float32
    assert abs(len(clip.audio) / SAMPLE_RATE - 3.0) < 0.1
    spectrum = np.abs(np.fft.rfft(clip.audio[:SAMPLE_RATE]))  # the 440 Hz tone survives: 1 Hz per bin
    assert abs(int(np.argmax(spectrum)) - 440) < 5


def test_frames_are_taken_evenly_in_time(tmp_path):
    path = write_video(tmp_path / "clip.mp4", seconds=3.0, fps=10)
    clip = decode_video(path, fps=2.0, max_frames=64)
    # At 10 frames a second, frames 0, 5, 10, ... are the ones at 0, 0.5, 1.0 ... seconds: the square has moved on.
    for index, frame in enumerate(clip.frames):
        expected = moving_square(index * 5)
        assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 12, index


def test_a_long_video_gets_fewer_frames_evenly_and_always_an_even_number(tmp_path):
    path = write_video(tmp_path / "long.mp4", seconds=20.0, fps=5, size=(64, 48))
    clip = decode_video(path, fps=2.0, max_frames=16)
    assert len(clip.frames) == 16 and abs(clip.fps - 0.8) < 0.01 and abs(clip.seconds - 20.0) < 0.1
    assert len(decode_video(path, fps=2.0, max_frames=15).frames) == 14
    assert [frame_count(s, 2.0, 64) for s in (0.2, 1.0, 1.6, 3.0, 40.0)] == [2, 2, 2, 6, 64]


def test_at_a_fixed_rate_a_long_clip_keeps_its_rate_in_smaller_frames(tmp_path):
    """A family that times frames by its rate (Qwen2.5-Omni) gets all of a 40 s clip at 2 a second, its frames sharing a
    pixel budget: smaller than a short clip's. Figures scaled to tiny frames: 8 frames' worth of pixels, shared."""
    total, floor = 160 * 120 * 8 // 2, 28 * 28  # the budget counts pairs of frames (qwen-vl-utils' FRAME_FACTOR)
    long = decode_video(write_video(tmp_path / "long.mp4", seconds=40.0, fps=4), 2.0, 768, 384.0, total_pixels=total, min_pixels=floor)
    short = decode_video(write_video(tmp_path / "short.mp4", seconds=3.0, fps=4), 2.0, 768, 384.0, total_pixels=total, min_pixels=floor)
    assert len(long.frames) == 80 and abs(long.fps - 2.0) < 1e-6 and abs(long.seconds - 40.0) < 0.1
    assert short.frames.shape == (6, 120, 160, 3)  # a short clip's share is more than its frames: kept whole
    height, width = long.frames.shape[1:3]
    assert height * width <= total * 2 // 80 and height * width < 160 * 120 and abs(width / height - 4 / 3) < 0.1
    # The budget's shrink halves a frame's pixels, never below the floor; without a total, each frame has the ceiling.
    assert frame_pixels(80, total, min_pixels=floor, shrink=2) == total // 80 and frame_pixels(80, total, shrink=64) == 128 * 28 * 28
    assert frame_pixels(6, None) == 768 * 28 * 28


def test_only_the_first_seconds_are_sampled_when_asked(tmp_path):
    path = write_video(tmp_path / "clip.mp4", seconds=4.0, audio_codec="aac")
    clip = decode_video(path, fps=2.0, max_frames=64, max_seconds=2.0)
    assert len(clip.frames) == 4 and clip.seconds == 2.0 and abs(len(clip.audio) / SAMPLE_RATE - 2.0) < 0.05


def test_big_frames_are_scaled_down_on_decode_keeping_their_shape(tmp_path):
    path = write_video(tmp_path / "hd.mp4", seconds=1.0, size=(1920, 1080))
    clip = decode_video(path, fps=2.0, max_frames=64, max_pixels=200_000)
    height, width = clip.frames.shape[1:3]
    assert width * height <= 200_000 and abs(width / height - 16 / 9) < 0.02
    assert scaled_size(160, 120, 200_000) == (160, 120)


def test_a_phone_clip_stored_sideways_is_turned_upright(tmp_path):
    path = write_video(tmp_path / "phone.mp4", seconds=1.0, size=(160, 120), rotation=-90)
    media = probe(path, path.name, 300)
    assert (media.width, media.height) == (120, 160)
    assert decode_video(path, 2.0, 64).frames.shape[1:3] == (160, 120)


def test_a_browser_recording_that_states_no_length_is_measured(tmp_path):
    import av

    path = write_video(tmp_path / "rec.webm", seconds=3.0, fmt="webm", codec="libvpx", audio_codec="libopus", live=True)
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    _, [file] = validate_turn("", [(path, path.name)])
    assert file.kind is MediaKind.VIDEO
    clip = decode_video(path, 2.0, 64)
    assert len(clip.frames) == 6 and abs(clip.seconds - 3.0) < 0.1 and clip.audio is not None
    expect_invalid("“rec.webm” is longer than 2 seconds", [(path, "rec.webm")], max_video_seconds=2)


def test_a_video_without_sound_has_no_sound_track(tmp_path):
    path = write_video(tmp_path / "quiet.webm", fmt="webm", codec="libvpx-vp9")
    _, [file] = validate_turn("", [(path, path.name)])
    assert file.kind is MediaKind.VIDEO
    assert decode_video(path, 2.0, 64).audio is None


def test_an_mp4_of_sound_only_is_audio(tmp_path):
    path = write_tone(tmp_path / "voice.mp4", 2.0, fmt="mp4", codec="aac")
    _, [file] = validate_turn("", [(path, path.name)])
    assert file.kind is MediaKind.AUDIO


@pytest.mark.parametrize("codec,fmt", [("png", "mov"), ("mjpeg", "mp4")])
def test_a_one_frame_video_is_a_picture(tmp_path, codec, fmt):
    path = still_video(tmp_path / f"still.{fmt}", codec=codec, fmt=fmt)
    _, [file] = validate_turn("", [(path, "still." + fmt)])
    assert file.kind is MediaKind.IMAGE and file.mime == "image/png" and file.filename == "still.png"
    image = load_image(file.path)
    assert image.size == (80, 60) and image.getpixel((40, 5))[2] > 60  # the dark blue background


def expect_invalid(match: str, uploads, **limits_asked):
    with pytest.raises(InvalidInput, match=match):
        validate_turn("", uploads, **limits_asked)


def test_a_video_longer_than_the_limit_is_refused_naming_it(tmp_path):
    path = write_video(tmp_path / "long.mp4", seconds=12.0, fps=2, size=(32, 32))
    expect_invalid("“long.mp4” is longer than 10 seconds", [(path, "long.mp4")], max_video_seconds=10)
    assert validate_turn("", [(path, "long.mp4")], max_video_seconds=15)[1][0].kind is MediaKind.VIDEO
    assert limits.MAX_VIDEO_SECONDS == 120


def test_a_video_has_its_own_size_limit(tmp_path):
    video = write_video(tmp_path / "clip.mp4", seconds=1.0)
    big = tmp_path / "big.mp4"
    big.write_bytes(video.read_bytes())
    with open(big, "ab") as f:  # trailing bytes past the last box: players and FFmpeg ignore them
        f.truncate(limits.MAX_FILE_BYTES + 1024)
    _, [file] = validate_turn("", [(big, "big.mp4")])
    assert file.kind is MediaKind.VIDEO  # past the 25 MB of other files, within the 200 MB of videos
    expect_invalid(r"“big.mp4” is 25.0 MB; the limit is 20 MB per video", [(big, "big.mp4")], max_video_bytes=20 * 2**20)
    expect_invalid(r"clip.mp4.*the limit is 0 MB per video", [(video, "clip.mp4")], max_video_bytes=1000)
    sound = write_tone(tmp_path / "big.wav", 160.0, layout="stereo")  # 27 MB of sound: the 25 MB limit holds
    expect_invalid(r"big.wav.*the limit is 25 MB per file", [(sound, "big.wav")])


def test_frames_past_8k_are_refused(tmp_path, monkeypatch):
    path = write_video(tmp_path / "wide.mp4", seconds=1.0, size=(320, 240))
    monkeypatch.setattr(limits, "MAX_VIDEO_FRAME_PIXELS", 320 * 240 - 1)  # an 8K file is too slow to make here
    expect_invalid("“wide.mp4” has frames of 320×240 pixels; the limit is 7680×4320", [(path, "wide.mp4")])


def test_a_video_without_frames_is_refused(tmp_path):
    path = frameless_video(tmp_path / "empty.mp4")
    expect_invalid("“empty.mp4” contains no video frames", [(path, "empty.mp4")])


def test_a_broken_video_is_refused_as_damaged(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", seconds=1.0)
    cut = truncated(tmp_path / "cut.mp4", whole, keep=0.5)  # mp4 writes its index last: nothing plays
    expect_invalid("“cut.mp4” is damaged or incomplete", [(cut, "cut.mp4")])
    noise = tmp_path / "noise.mkv"
    noise.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 8)
    expect_invalid("“noise.mkv” is damaged or incomplete", [(noise, "noise.mkv")])


def test_refusals_are_said_in_chinese_too(tmp_path):
    from domain.i18n import CHINESE, say

    path = frameless_video(tmp_path / "empty.mp4")
    with pytest.raises(InvalidInput) as refused:
        validate_turn("", [(path, "empty.mp4")])
    assert say(refused.value.args[0], CHINESE) == "“empty.mp4”中没有任何视频画面。"
