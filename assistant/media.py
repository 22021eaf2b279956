"""Read images, audio and video files into what the model processor takes; knows nothing of storage or models.

Images: anything Pillow opens, EXIF orientation applied, RGB (first frame of animations). Audio:
anything FFmpeg (inside PyAV) decodes, as 16 kHz mono float32. Video (assistant.video): a container with a real
video stream, frames sampled at a family's rate up to its frame cap, with its sound track as audio; a container
holding only sound is audio, and one holding a single frame is a picture. Every failure to read a file is an
InvalidInput naming it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from assistant.video import FRAME_PIXELS, VIDEO_MIN_PIXELS, VideoClip, probe_video, sample_frames
from domain import limits
from domain.errors import InvalidInput
from domain.i18n import t
from domain.types import MediaKind

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class ProbedMedia:
    kind: MediaKind
    mime: str
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    peak: float = 0.0  # audio: the loudest sample, 0..1
    frames: int = 0  # video: 2 means two or more; an image with 1 is the one frame of a video container
    has_audio: bool = False  # video: it has a sound track

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe(
    path: Path, filename: str, max_audio_seconds: float, max_video_seconds: float = limits.MAX_VIDEO_SECONDS
) -> ProbedMedia:
    """Tell what a file is from its header (audio: decoded up to the limit); raise InvalidInput if neither kind."""
    image = _probe_image(path, filename)
    if image is not None:
        return image
    video = probe_video(path, filename, max_video_seconds)
    if video is not None and video.frames == 1:
        # One frame in a video container (an mjpeg or png still): a picture, which validation stores as a PNG.
        return ProbedMedia(kind=MediaKind.IMAGE, mime="image/png", width=video.width, height=video.height, frames=1)
    if video is not None:
        return ProbedMedia(
            kind=MediaKind.VIDEO, mime=video.mime, width=video.width, height=video.height, seconds=video.seconds,
            frames=video.frames, has_audio=video.has_audio,
        )  # fmt: skip
    audio = _probe_audio(path, filename, max_audio_seconds)
    if audio is not None:
        return audio
    raise InvalidInput(t("file.unreadable", name=filename), filename)


def _probe_image(path: Path, filename: str) -> ProbedMedia | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            mime = Image.MIME.get(image.format or "", "image/" + (image.format or "unknown").lower())
    except Image.DecompressionBombError:
        # Pillow refuses to even open images past twice its own limit; say what is wrong, not "unreadable".
        raise InvalidInput(t("image.bomb", name=filename, mp=2 * Image.MAX_IMAGE_PIXELS / 1e6), filename) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    return ProbedMedia(kind=MediaKind.IMAGE, mime=mime, width=width, height=height)


def _probe_audio(path: Path, filename: str, max_seconds: float) -> ProbedMedia | None:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            name = container.format.name.split(",")[0]
            mime = _AUDIO_MIME.get(name, f"audio/{name}")
    except av.error.FFmpegError:
        return None
    # Containers often lack a reliable duration (browser recordings); decode, but no further than the limit.
    try:
        samples = decode_audio(path, max_seconds=max_seconds + 1.0)
    except InvalidInput:
        raise InvalidInput(t("audio.damaged", name=filename), filename) from None
    if len(samples) == 0:
        raise InvalidInput(t("audio.none", name=filename), filename)
    peak = float(np.abs(samples).max())
    return ProbedMedia(kind=MediaKind.AUDIO, mime=mime, seconds=len(samples) / SAMPLE_RATE, peak=peak)


_AUDIO_MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "matroska": "audio/webm",
    "mov": "audio/mp4",
    "flac": "audio/flac",
    "aac": "audio/aac",
}


def load_image(path: Path, filename: str | None = None):
    """Decode the whole image (first frame) with its EXIF orientation applied, as RGB; InvalidInput if it cannot."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = filename or Path(path).name
    try:
        with Image.open(path) as image:
            image.load()  # the header alone says nothing of a truncated body
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except FileNotFoundError:
        raise InvalidInput(t("file.not_stored", name=name), filename) from None
    except Image.DecompressionBombError:
        raise InvalidInput(t("image.too_many_pixels_short", name=name), filename) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        log.info("%s cannot be decoded as an image: %s", name, error)  # the decoder's words are for the log
        raise InvalidInput(t("image.damaged", name=name), filename) from None


def _to_rgb(image):
    from PIL import Image

    if image.mode in ("RGBA", "LA", "P", "PA"):
        # Composite transparency onto white rather than letting convert() turn it black.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I") or image.mode == "F":
        # 16/32-bit and float greyscale: convert("RGB") would clip everything above 255 to white.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 255.0)
        grey = np.clip(values / peak * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return image.convert("RGB")


def decode_audio(path: Path, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream to 16 kHz mono float32, optionally stopping after `max_seconds`."""
    import av

    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    try:
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
    except FileNotFoundError:
        raise InvalidInput(t("file.not_stored", name=Path(path).name)) from None
    except (av.error.FFmpegError, IndexError, ValueError) as error:
        log.info("%s cannot be decoded as audio: %s", Path(path).name, error)
        raise InvalidInput(t("audio.undecodable", name=Path(path).name)) from None
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, dtype=np.float32)
    return audio if limit is None else audio[:limit]


def decode_video(
    path: Path,
    fps: float,
    max_frames: int,
    max_seconds: float = limits.MAX_VIDEO_SECONDS,
    max_pixels: int = FRAME_PIXELS,
    total_pixels: int | None = None,
    min_pixels: int = VIDEO_MIN_PIXELS,
    shrink: int = 1,
) -> VideoClip:
    """Frames sampled at `fps` (evenly fewer past `max_frames`, an even count) and the sound track, if there is one,
    over the first `max_seconds`; the clip's `fps` is the rate its frames were taken at. With `total_pixels`, the
    frames share that many pixels, each at least `min_pixels` and `shrink` times fewer (assistant.video.frame_pixels)."""
    frames, seconds = sample_frames(path, fps, max_frames, max_seconds, max_pixels, total_pixels, min_pixels, shrink)
    audio = None
    if has_sound(path):
        try:
            audio = decode_audio(path, max_seconds=seconds)
        except InvalidInput as error:
            log.warning("%s: its sound track is left out: %s", Path(path).name, error)  # the pictures still count
    if audio is not None and len(audio) == 0:
        audio = None
    return VideoClip(frames=frames, fps=len(frames) / seconds, seconds=seconds, audio=audio)


def has_sound(path: Path) -> bool:
    """Whether the file has a sound track (False when it cannot be opened: then there is nothing to hear)."""
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.error.FFmpegError, OSError, ValueError):
        return False


class MediaLoader:
    """Decodes stored files for the model, caching by path (stored files are content-addressed, so immutable)."""

    def __init__(self, cache_size: int = 64, video_cache_size: int = 4):
        self.image = lru_cache(maxsize=cache_size)(load_image)
        self.audio = lru_cache(maxsize=cache_size)(decode_audio)
        # A clip's frames take up to ~100 MB: few are kept.
        self.video = lru_cache(maxsize=video_cache_size)(decode_video)
