"""Audio files of every supported container, encoded on the spot with PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (suffix, container format, codec, sample rate, layout)
FORMATS = [
    (".wav", "wav", "pcm_s16le", 44100, "stereo"),
    (".mp3", "mp3", "libmp3lame", 44100, "stereo"),
    (".ogg", "ogg", "libopus", 48000, "mono"),
    (".webm", "webm", "libopus", 48000, "mono"),
    (".m4a", "ipod", "aac", 44100, "stereo"),
    (".flac", "flac", "flac", 22050, "mono"),
]


def write_tone(path: Path, seconds: float, rate: int = 44100, fmt: str = "wav", codec: str = "pcm_s16le", layout: str = "mono") -> Path:
    return write_audio(path, _sine(seconds, rate), rate, fmt, codec, layout)


def write_audio(path: Path, wave: np.ndarray, rate: int, fmt: str = "wav", codec: str = "pcm_s16le", layout: str = "mono") -> Path:
    """Mono float samples in -1..1, encoded with PyAV in the given container and codec."""
    import av

    channels = 2 if layout == "stereo" else 1
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        frame_format = "s16" if codec.startswith("pcm") else stream.codec_context.format.name
        pcm = np.tile(wave, (channels, 1))
        if frame_format.startswith("s16"):
            pcm = (pcm * 32767).astype(np.int16)
        elif frame_format.startswith("s32"):
            pcm = (pcm * 2_147_483_000).astype(np.int32)
        packed = not frame_format.endswith("p")
        step = stream.codec_context.frame_size or 1024
        for start in range(0, pcm.shape[1], step):
            chunk = pcm[:, start : start + step]
            data = chunk.T.reshape(1, -1) if packed else chunk
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=frame_format, layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# --- images and files that once broke conversations, made on the spot ----------------------------------


def png(path: Path, size=(96, 64), color=(220, 20, 20), mode="RGB") -> Path:
    from PIL import Image

    Image.new(mode, size, color).save(path)
    return path


def truncated(path: Path, source: Path, keep: float = 0.6) -> Path:
    """The first part of a valid file: its header still parses."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def noisy_image(path: Path, size=(64, 64), fmt: str | None = None) -> Path:
    """Random pixels, so that compression leaves a body worth truncating."""
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)
    return path


def bomb_png(path: Path, size=(20_000, 10_000)) -> Path:
    """A PNG whose header claims `size` pixels (200 MP by default) in a file of a few kB."""
    from PIL import Image

    Image.new("1", size).save(path, optimize=True)
    return path


def animated_gif(path: Path) -> Path:
    from PIL import Image

    frames = [Image.new("RGB", (40, 30), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def sixteen_bit_png(path: Path) -> Path:
    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (32, 1))
    Image.fromarray(ramp, mode="I;16").save(path)
    return path


def cmyk_jpeg(path: Path) -> Path:
    from PIL import Image

    Image.new("CMYK", (48, 32), (0, 255, 255, 0)).save(path, format="JPEG")
    return path


def m4a_with_cover_art(path: Path, seconds: float = 1.0) -> Path:
    """AAC audio in MP4 with an album cover (a one-picture video stream flagged as an attached picture)."""
    import av
    from av.stream import Disposition

    rate = 44100
    with av.open(str(path), "w", format="mp4") as container:
        audio = container.add_stream("aac", rate=rate, layout="mono")
        cover = container.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
        cover.disposition = Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24").reformat(format="yuvj420p")
        for packet in [*cover.encode(picture), *cover.encode(None)]:
            container.mux(packet)
        _mux_mono(container, audio, _sine(seconds, rate), rate, "fltp")
    return path


def video_with_sound(path: Path, seconds: float = 1.0) -> Path:
    """A WebM video (VP8 frames and an Opus track): a video, even when named like audio."""
    import av

    rate, fps = 48000, 10
    with av.open(str(path), "w", format="webm") as container:
        video = container.add_stream("libvpx", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("libopus", rate=rate, layout="mono")
        for i in range(int(seconds * fps)):
            image = np.full((48, 64, 3), i * 20 % 256, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        _mux_mono(container, audio, np.zeros(int(seconds * rate), np.float32), rate, "flt")
    return path


def _sine(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _mux_mono(container, stream, wave: np.ndarray, rate: int, frame_format: str) -> None:
    """Encode mono float32 samples into `stream` a codec frame at a time, then flush it."""
    import av

    step = stream.codec_context.frame_size or 1024
    for start in range(0, len(wave), step):
        frame = av.AudioFrame.from_ndarray(wave[None, start : start + step].copy(), format=frame_format, layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def silence_wav(path: Path, seconds: float = 2.0) -> Path:
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * int(seconds * 16000))
    return path


# --- videos: a shape moving across the frame, optionally with a sound track ---------------------------------

# (suffix, container format, video codec, audio codec)
VIDEO_FORMATS = [
    (".mp4", "mp4", "libx264", "aac"),
    (".mov", "mov", "libx264", "aac"),
    (".webm", "webm", "libvpx-vp9", "libopus"),
    (".mkv", "matroska", "mpeg4", "libopus"),
]


def moving_square(index: int, size=(160, 120)) -> np.ndarray:
    """Frame `index`: a white square on dark blue, moved 8 pixels right each frame (wrapping), so frames differ."""
    width, height = size
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 2] = 90
    side = height // 3
    left = (index * 8) % (width - side)
    image[height // 3 : height // 3 + side, left : left + side] = 255
    return image


def write_video(
    path: Path,
    seconds: float = 2.0,
    fps: int = 10,
    size=(160, 120),
    fmt: str = "mp4",
    codec: str = "libx264",
    audio_codec: str | None = None,
    sound: np.ndarray | None = None,
    rotation: int | None = None,
    live: bool = False,
) -> Path:
    """A video of `moving_square` frames; with `audio_codec`, a sound track of `sound` (16 kHz mono float, a tone by
    default), padded or cut to the video's length. `live` (WebM/Matroska): no duration or index, as browsers record."""
    import av

    width, height = size
    with av.open(str(path), "w", format=fmt, options={"live": "1"} if live else {}) as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = {"mjpeg": "yuvj420p", "png": "rgb24"}.get(codec, "yuv420p")
        if rotation is not None:
            video.set_display_rotation(rotation)
        audio = None
        if audio_codec is not None:
            rate = 48000
            audio = container.add_stream(audio_codec, rate=rate, layout="mono")
        for i in range(max(int(round(seconds * fps)), 1)):
            frame = av.VideoFrame.from_ndarray(moving_square(i, size), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            wave = _sine(seconds, 16000) if sound is None else sound
            wave = np.resize(wave, int(seconds * 16000)) if sound is None else wave[: int(seconds * 16000)]
            wave = np.pad(wave, (0, max(0, int(seconds * 16000) - len(wave))))
            upsampled = np.interp(np.arange(int(seconds * rate)) / rate, np.arange(len(wave)) / 16000, wave)
            frame_format = audio.codec_context.format.name
            samples = (upsampled * 32767).astype(np.int16) if frame_format.startswith("s16") else upsampled.astype(np.float32)
            _mux_mono(container, audio, samples, rate, frame_format)
    return path


def still_video(path: Path, codec: str = "png", fmt: str = "mov", size=(80, 60)) -> Path:
    """A "video" of one picture (a png or mjpeg frame in a container)."""
    return write_video(path, seconds=0.1, fps=10, size=size, fmt=fmt, codec=codec)


def frameless_video(path: Path, fmt: str = "mp4") -> Path:
    """A container whose video track never got a frame."""
    import av

    with av.open(str(path), "w", format=fmt) as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path
