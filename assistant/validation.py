"""The one check every user turn passes before anything is saved or generated."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path

from domain import limits
from assistant.media import load_image, probe
from assistant.video import probe_video, still_frame
from domain.errors import InvalidInput
from domain.i18n import Text, t
from domain.types import MediaFile, MediaKind

# Tab, newline and carriage return are text; other control characters are invisible noise (or terminal escapes).
_KEPT_CONTROLS = {"\t", "\n", "\r"}
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def clean_text(text: str) -> str:
    """The message as it will be saved: valid UTF-8, without control characters other than tab and newlines."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(t("text.not_text")) from None
    return "".join(c for c in text if c in _KEPT_CONTROLS or unicodedata.category(c) != "Cc")


def validate_text(text: str, has_files: bool) -> str:
    """The message text as it will be saved; InvalidInput if it is empty (with no files) or too long."""
    text = clean_text(text)
    if not text.strip() and not has_files:
        raise InvalidInput(t("text.empty"))
    if len(text) > limits.MAX_MESSAGE_CHARS:
        raise InvalidInput(t("text.too_long", chars=len(text), limit=limits.MAX_MESSAGE_CHARS))
    return text


def validate_turn(
    text: str,
    uploads: Sequence[tuple[Path, str]],
    max_audio_seconds: float = limits.MAX_AUDIO_SECONDS,
    max_video_seconds: float = limits.MAX_VIDEO_SECONDS,
    max_video_bytes: int = limits.MAX_VIDEO_BYTES,
) -> tuple[str, list[MediaFile]]:
    """Check the text and each (path, filename) upload against `domain.limits`; return the cleaned text and typed files."""
    text = validate_text(text, has_files=bool(uploads))
    if len(uploads) > limits.MAX_FILES_PER_MESSAGE:
        raise InvalidInput(t("files.too_many", count=len(uploads), limit=limits.MAX_FILES_PER_MESSAGE))
    videos = {"max_video_seconds": max_video_seconds, "max_video_bytes": max_video_bytes}
    return text, [
        validate_file(Path(path), clean_filename(filename), max_audio_seconds, **videos) for path, filename in uploads
    ]


def clean_filename(filename: str) -> str:
    """The name shown to people: no directories, no control characters, valid UTF-8, at most 255 characters."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = name.encode("utf-8", "replace").decode("utf-8")
    # Bidirectional overrides could make "gpj.exe" look like "exe.jpg"; they have no place in a file name.
    name = "".join(c for c in name if unicodedata.category(c) != "Cc" and c not in _BIDI_CONTROLS).strip()
    return (name or "file")[: limits.MAX_FILENAME_CHARS]


def validate_file(
    path: Path,
    filename: str,
    max_audio_seconds: float,
    max_video_seconds: float = limits.MAX_VIDEO_SECONDS,
    max_video_bytes: int = limits.MAX_VIDEO_BYTES,
) -> MediaFile:
    """One file, as an upload or an import brings it: fully decoded, an image or a sound within the limits; a video
    read far enough to know its length, frame size and first frame (a one-frame video becomes a PNG picture)."""
    if not path.is_file():
        raise InvalidInput(t("file.missing", name=filename), filename)
    size = path.stat().st_size
    if size > limits.MAX_FILE_BYTES and not _video_within(path, filename, size, max_video_seconds, max_video_bytes):
        raise InvalidInput(t("file.too_big", name=filename, mb=size / 2**20, limit_mb=limits.MAX_FILE_BYTES / 2**20), filename)
    if size == 0:
        raise InvalidInput(t("file.empty", name=filename), filename)
    media = probe(path, filename, max_audio_seconds=max_audio_seconds, max_video_seconds=max_video_seconds)
    if media.kind is MediaKind.VIDEO:
        _check_video(media, filename, size, max_video_seconds, max_video_bytes)
        return MediaFile(path=path, filename=filename, kind=media.kind, mime=media.mime)
    if media.kind is MediaKind.IMAGE and media.frames == 1:
        path, filename = _still_as_png(path, filename)
    if media.kind is MediaKind.IMAGE:
        if media.pixels > limits.MAX_IMAGE_PIXELS:
            raise InvalidInput(
                t("image.too_many_pixels", name=filename, mp=media.pixels / 1e6, limit_mp=limits.MAX_IMAGE_PIXELS / 1e6),
                filename,
            )
        check_image_shape(media.width, media.height, filename)
        load_image(path, filename)  # decode it all now: a truncated file must not reach the conversation
    else:
        _check_audio(media, filename, max_audio_seconds)
    return MediaFile(path=path, filename=filename, kind=media.kind, mime=media.mime)


def _check_audio(media, filename: str, max_seconds: float) -> None:
    if media.seconds > max_seconds:
        raise InvalidInput(t("audio.too_long", name=filename, limit=duration(max_seconds)), filename)
    if media.seconds < limits.MIN_AUDIO_SECONDS:
        raise InvalidInput(
            t("audio.too_short", name=filename, seconds=media.seconds, least=limits.MIN_AUDIO_SECONDS), filename
        )
    if media.peak < limits.SILENCE_PEAK:
        raise InvalidInput(t("audio.silent", name=filename), filename)


def _video_within(path: Path, filename: str, size: int, max_seconds: float, max_bytes: int) -> bool:
    """Whether a file past the general size limit is a video within the video size limit (videos have their own)."""
    video = probe_video(path, filename, max_seconds)
    if video is None or video.frames < 2:
        return False
    if size > max_bytes:
        raise InvalidInput(t("video.too_big", name=filename, mb=size / 2**20, limit_mb=max_bytes / 2**20), filename)
    return True


def _check_video(media, filename: str, size: int, max_seconds: float, max_bytes: int) -> None:
    if size > max_bytes:
        raise InvalidInput(t("video.too_big", name=filename, mb=size / 2**20, limit_mb=max_bytes / 2**20), filename)
    if media.seconds > max_seconds:
        raise InvalidInput(t("video.too_long", name=filename, limit=duration(max_seconds)), filename)
    if media.pixels > limits.MAX_VIDEO_FRAME_PIXELS:
        raise InvalidInput(
            t("video.too_many_pixels", name=filename, width=media.width, height=media.height, limit="7680×4320"),
            filename,
        )
    check_image_shape(media.width, media.height, filename)


def _still_as_png(path: Path, filename: str) -> tuple[Path, str]:
    """A one-frame "video" (a still in a video container) is a picture: the upload becomes a PNG of its frame, in place
    (so whoever cleans up uploads removes it as before), named "<name>.png"."""
    partial = path.with_name(path.name + ".png.partial")
    still_frame(path, filename).save(partial, format="PNG")
    partial.replace(path)
    return path, Path(filename).stem + ".png"


def duration(seconds: float) -> Text:
    """300 -> "5 minutes", 90 -> "90 seconds" (said in the reader's language)."""
    if seconds >= 120 and seconds % 60 == 0:
        return t("duration.minutes", n=seconds / 60)
    return t("duration.seconds", n=seconds)


def check_image_shape(width: int, height: int, filename: str) -> None:
    """What the vision processor accepts: raise InvalidInput for images too elongated."""
    if max(width, height) / min(width, height) > limits.MAX_IMAGE_ASPECT_RATIO:
        raise InvalidInput(
            t("image.too_elongated", name=filename, width=width, height=height, ratio=limits.MAX_IMAGE_ASPECT_RATIO),
            filename,
        )
