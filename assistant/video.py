"""Read video files with PyAV: what a container holds, and its frames sampled at a rate; knows nothing of models.

A video is a container with a real video stream (album art flagged as an attached picture is not one). Probing
reads the header and at most a few packets (the whole packet index only when the container does not say how long it
is) and decodes one frame, so a 200 MB clip is checked in moments. Decoding samples frames uniformly at a rate, up to
a frame cap, in an even number (the Qwen vision towers take frames in pairs), turned upright (phones store a rotation)
and scaled down as they are converted, so no whole 4K frame is kept. The sound track is decoded by assistant.media.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domain.errors import InvalidInput
from domain.i18n import t

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv")
# A frame is scaled down to at most this many pixels on decode: the Qwen video processors' own per-frame ceiling
# (768 merged 28-pixel patches), so their resize afterwards changes little.
FRAME_PIXELS = 768 * 28 * 28
# A family that keeps its rate for a clip's whole length (Qwen2.5-Omni) holds the clip's cost by scaling its frames
# down instead, as qwen-vl-utils does (vision_process.fetch_video): each frame at most
# max(VIDEO_MIN_PIXELS, min(FRAME_PIXELS, VIDEO_TOTAL_PIXELS * FRAME_FACTOR / frames)). VIDEO_MIN_PIXELS and
# FRAME_FACTOR are qwen-vl-utils' (128 merged patches, the Qwen video processors' own floor, below which they scale
# a frame back up; frames go in pairs, so the total counts pairs). The total is qwen-vl-utils' 0.9 of a token budget,
# here 24,576 tokens: what a clip capped at 64 frames of FRAME_PIXELS cost (32 pairs x 768), so a long clip at the
# full rate costs no more than a capped one did (a 120 s clip: 240 frames of ~144,000 pixels, ~100 MB decoded).
VIDEO_MIN_PIXELS = 128 * 28 * 28
FRAME_FACTOR = 2
VIDEO_TOTAL_PIXELS = int(24576 * 28 * 28 * 0.9)


@dataclass(frozen=True)
class VideoClip:
    """A video as the model takes it: frames sampled at `fps` (uint8, frames × height × width × 3) and, when it has
    one, its sound track (16 kHz mono float32) covering the same time."""

    frames: np.ndarray
    fps: float
    seconds: float
    audio: np.ndarray | None = None


@dataclass(frozen=True)
class VideoInfo:
    """What probing found: the upright frame size, the length, whether there is sound; `frames` is 0, 1 or 2 (more)."""

    mime: str
    width: int
    height: int
    seconds: float
    frames: int
    has_audio: bool


def is_cover_art(stream) -> bool:
    # Album art in mp3/m4a/flac is a one-picture "video" stream flagged as an attached picture.
    from av.stream import Disposition

    return bool(stream.disposition & Disposition.attached_pic)


def _video_stream(container):
    return next((s for s in container.streams.video if not is_cover_art(s)), None)


def probe_video(path: Path, filename: str, max_seconds: float) -> VideoInfo | None:
    """None when the file holds no video stream (an image, audio, audio with cover art); InvalidInput when it is a
    video that cannot be read. A video stream without a single frame counts as none (its sound, if any, is audio)."""
    import av

    try:
        container = av.open(str(path))
    except FileNotFoundError:
        raise
    except (av.error.FFmpegError, ValueError) as error:
        if Path(filename).suffix.lower() in VIDEO_SUFFIXES:
            log.info("%s cannot be opened as a video: %s", filename, error)
            raise InvalidInput(t("video.damaged", name=filename), filename) from None
        return None
    with container:
        if _is_picture_demuxer(container):
            return None  # FFmpeg reads lone pictures (png, jpeg...) as one-frame streams: Pillow's to judge
        stream = _video_stream(container)
        has_audio = bool(container.streams.audio)
        if stream is None:
            if not has_audio and Path(filename).suffix.lower() in VIDEO_SUFFIXES:
                raise InvalidInput(t("video.no_frames", name=filename), filename)  # an mp4 of no frame lists no stream
            return None
        seconds = _stated_seconds(container, stream)
        frames, end = _count_packets(container, stream, need_end=seconds is None, max_seconds=max_seconds)
        mime = _mime(container, filename)
    if frames == 0:
        if has_audio:
            return None  # only the sound plays: an audio file
        raise InvalidInput(t("video.no_frames", name=filename), filename)
    try:
        first = _first_frame(path, filename)
    except InvalidInput:
        if Path(filename).suffix.lower() not in VIDEO_SUFFIXES:
            return None  # something FFmpeg half-recognises, named as no video: not ours to call damaged
        raise
    if first is None:
        if has_audio:
            return None
        raise InvalidInput(t("video.no_frames", name=filename), filename)
    width, height = _upright_size(first)
    return VideoInfo(mime, width, height, seconds if seconds is not None else end, frames, has_audio)


def _is_picture_demuxer(container) -> bool:
    names = container.format.name.split(",")
    return any(name in ("image2", "image2pipe") or name.endswith("_pipe") for name in names)


def _stated_seconds(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # av.time_base
    return None


def _count_packets(container, stream, need_end: bool, max_seconds: float) -> tuple[int, float]:
    """(packets with data, up to 2 unless the end is needed; where the last one ends, in seconds from the first)."""
    import av

    count, start, end = 0, None, 0.0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the demuxer's flush packet
            count += 1
            if packet.pts is not None and packet.time_base:
                at = float(packet.pts * packet.time_base)
                start = at if start is None else min(start, at)
                end = max(end, at + float((packet.duration or 0) * packet.time_base) - start)
            if count >= 2 and (not need_end or end > max_seconds + 1.0):
                break
    except av.error.FFmpegError as error:
        log.info("demuxing stopped early: %s", error)  # a cut file: it plays as far as it goes
    return count, end


def _first_frame(path: Path, filename: str):
    import av

    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container)
            for frame in container.decode(stream):
                return frame
    except (av.error.FFmpegError, ValueError) as error:
        log.info("%s: no frame decodes: %s", filename, error)
        raise InvalidInput(t("video.damaged", name=filename), filename) from None
    return None


def _upright_size(frame) -> tuple[int, int]:
    turns = _quarter_turns(frame)
    return (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)


def _quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns that show the frame upright (the display matrix phones write)."""
    rotation = getattr(frame, "rotation", 0) or 0
    return round(rotation / 90) % 4


def _mime(container, filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    names = container.format.name.split(",")
    if "matroska" in names or "webm" in names:
        return "video/x-matroska" if suffix == ".mkv" else "video/webm"
    if "mov" in names or "mp4" in names:
        return "video/quicktime" if suffix == ".mov" else "video/mp4"
    return f"video/{names[0]}"


def thinned(clip: VideoClip, count: int) -> VideoClip:
    """The clip with `count` of its frames (an even number, at least 2), evenly spread; its sound unchanged."""
    count = max(min(count, len(clip.frames)) // 2 * 2, 2)
    if count >= len(clip.frames):
        return clip
    picked = np.linspace(0, len(clip.frames) - 1, count).round().astype(int)
    return VideoClip(frames=clip.frames[picked], fps=count / clip.seconds, seconds=clip.seconds, audio=clip.audio)


def frame_count(seconds: float, fps: float, max_frames: int) -> int:
    """Frames sampled from `seconds` of video at `fps`, at most `max_frames`, always an even number and at least 2."""
    count = min(int(seconds * fps + 1e-6), max_frames)
    return max(count - count % 2, 2)


def scaled_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size a frame is decoded at: at most `max_pixels`, the same shape, even sides (what the scaler prefers)."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def frame_pixels(
    count: int,
    total_pixels: int | None,
    max_pixels: int = FRAME_PIXELS,
    min_pixels: int = VIDEO_MIN_PIXELS,
    shrink: int = 1,
) -> int:
    """The most pixels each of `count` frames may have so they share `total_pixels` (None: each `max_pixels`), divided
    by `shrink` (the context budget's), never below `min_pixels`."""
    if total_pixels is None:
        return max_pixels
    share = min(max_pixels, total_pixels * FRAME_FACTOR // max(count, 1))
    return max(min_pixels, share // shrink)


def sample_frames(
    path: Path,
    fps: float,
    max_frames: int,
    max_seconds: float,
    max_pixels: int = FRAME_PIXELS,
    total_pixels: int | None = None,
    min_pixels: int = VIDEO_MIN_PIXELS,
    shrink: int = 1,
) -> tuple[np.ndarray, float]:
    """(frames × height × width × 3 uint8 sampled uniformly over the first `max_seconds`, the seconds they cover).

    With `total_pixels`, the frames share that many pixels (see frame_pixels), each scaled as it is decoded."""
    import av

    name = Path(path).name
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container)
            if stream is None:
                raise InvalidInput(t("video.no_frames", name=name), name)
            seconds = _stated_seconds(container, stream)
            if seconds is None:
                seconds = _count_packets(container, stream, need_end=True, max_seconds=max_seconds)[1]
                container.seek(0)
            seconds = min(seconds, max_seconds)
            stream.thread_type = "AUTO"
            count = frame_count(seconds, fps, max_frames)
            max_pixels = frame_pixels(count, total_pixels, max_pixels, min_pixels, shrink)
            frames = _pick(container.decode(stream), seconds, fps, max_frames, max_pixels)
    except FileNotFoundError:
        raise InvalidInput(t("video.missing", name=name), name) from None
    except (av.error.FFmpegError, ValueError) as error:
        log.info("%s cannot be decoded as a video: %s", name, error)
        raise InvalidInput(t("video.damaged", name=name), name) from None
    if not frames:
        raise InvalidInput(t("video.no_frames", name=name), name)
    return np.stack(frames), max(seconds, len(frames) / fps)


def _pick(decoded, seconds: float, fps: float, max_frames: int, max_pixels: int) -> list[np.ndarray]:
    """The first frame at or after each of `count` evenly spaced times; the last one again if the stream ends early."""
    count = frame_count(seconds, fps, max_frames)
    step = seconds / count if seconds > 0 else 1.0 / fps
    picked: list[np.ndarray] = []
    start = None
    last = None
    for index, frame in enumerate(decoded):
        at = frame.time if frame.time is not None else index / fps
        start = at if start is None else start
        while len(picked) < count and at - start >= len(picked) * step - 1e-3:
            picked.append(_rgb(frame, max_pixels))
        last = frame
        if len(picked) == count:
            break
    while picked and len(picked) < count:
        picked.append(picked[-1])  # the container said it was longer than it is
    if not picked and last is not None:
        picked = [_rgb(last, max_pixels)] * 2
    return picked


def _rgb(frame, max_pixels: int) -> np.ndarray:
    """The frame upright, scaled down to at most `max_pixels` as it is converted (never a full-size RGB copy)."""
    width, height = scaled_size(frame.width, frame.height, max_pixels)
    rgb = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
    turns = _quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def still_frame(path: Path, filename: str):
    """The one frame of a one-frame video, upright, as an RGB PIL image (such a "video" is a picture)."""
    from PIL import Image

    frame = _first_frame(path, filename)
    if frame is None:
        raise InvalidInput(t("video.no_frames", name=filename), filename)
    rgb = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame)
    return Image.fromarray(np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb)
