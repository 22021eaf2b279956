"""Read images and audio files into what the model processor takes; knows nothing of storage or models.

Images: anything Pillow opens, EXIF orientation applied, RGB. Audio: anything FFmpeg (inside PyAV)
decodes, as 16 kHz mono float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from assistant.errors import InvalidInput
from assistant.types import MediaKind

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class ProbedMedia:
    kind: MediaKind
    mime: str
    pixels: int = 0
    seconds: float = 0.0


def probe(path: Path, filename: str, max_audio_seconds: float) -> ProbedMedia:
    """Tell what a file is without decoding more than needed; raise InvalidInput if it is neither kind."""
    image = _probe_image(path)
    if image is not None:
        return image
    audio = _probe_audio(path, filename, max_audio_seconds)
    if audio is not None:
        return audio
    raise InvalidInput(f"“{filename}” is not an image or audio file this app can read.")


def _probe_image(path: Path) -> ProbedMedia | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            mime = Image.MIME.get(image.format or "", "image/" + (image.format or "unknown").lower())
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return ProbedMedia(kind=MediaKind.IMAGE, mime=mime, pixels=width * height)


def _probe_audio(path: Path, filename: str, max_seconds: float) -> ProbedMedia | None:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            if container.streams.video and not _is_audio_container(container.format.name):
                raise InvalidInput(f"“{filename}” is a video; video files are not supported yet.")
            name = container.format.name.split(",")[0]
            mime = _AUDIO_MIME.get(name, f"audio/{name}")
    except av.error.FFmpegError:
        return None
    # Containers often lack a reliable duration (browser recordings); decode, but no further than the limit.
    seconds = len(decode_audio(path, max_seconds=max_seconds + 1.0)) / SAMPLE_RATE
    if seconds == 0:
        raise InvalidInput(f"“{filename}” contains no audio.")
    return ProbedMedia(kind=MediaKind.AUDIO, mime=mime, seconds=seconds)


def _is_audio_container(name: str) -> bool:
    # Cover art in mp3/m4a/flac shows up as a video stream.
    return any(part in {"mp3", "flac", "ogg", "wav"} for part in name.split(","))


_AUDIO_MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "matroska": "audio/webm",
    "mov": "audio/mp4",
    "flac": "audio/flac",
    "aac": "audio/aac",
}


def load_image(path: Path):
    """Open an image with its EXIF orientation applied, as RGB."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P"):
            # Composite transparency onto white rather than letting convert() turn it black.
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return image.convert("RGB")


def decode_audio(path: Path, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream to 16 kHz mono float32, optionally stopping after `max_seconds`."""
    import av

    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += len(chunk)
            if limit is not None and total >= limit:
                break
        else:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, dtype=np.float32)
    return audio if limit is None else audio[:limit]


class MediaLoader:
    """Decodes stored files for the model, caching by path (stored files are content-addressed, so immutable)."""

    def __init__(self, cache_size: int = 64):
        self.image = lru_cache(maxsize=cache_size)(load_image)
        self.audio = lru_cache(maxsize=cache_size)(decode_audio)
