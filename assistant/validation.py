"""The one check every user turn passes before anything is saved or generated."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from assistant import limits
from assistant.errors import InvalidInput
from assistant.media import probe
from assistant.types import MediaFile, MediaKind


def validate_turn(text: str, uploads: Sequence[tuple[Path, str]]) -> list[MediaFile]:
    """Check the text and each (path, filename) upload against `assistant.limits`; return the files typed."""
    if not text.strip() and not uploads:
        raise InvalidInput("Type a message or attach an image or audio file.")
    if len(text) > limits.MAX_MESSAGE_CHARS:
        raise InvalidInput(
            f"The message is {len(text):,} characters long; the limit is {limits.MAX_MESSAGE_CHARS:,}."
        )
    if len(uploads) > limits.MAX_FILES_PER_MESSAGE:
        raise InvalidInput(
            f"{len(uploads)} files are attached; a message can carry at most {limits.MAX_FILES_PER_MESSAGE}."
        )
    files = []
    for path, filename in uploads:
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(f"“{filename}” did not arrive; please attach it again.")
        size = path.stat().st_size
        if size > limits.MAX_FILE_BYTES:
            raise InvalidInput(
                f"“{filename}” is {size / 2**20:.1f} MB; the limit is {limits.MAX_FILE_BYTES / 2**20:.0f} MB per file."
            )
        if size == 0:
            raise InvalidInput(f"“{filename}” is empty.")
        media = probe(path, filename, max_audio_seconds=limits.MAX_AUDIO_SECONDS)
        if media.kind is MediaKind.IMAGE and media.pixels > limits.MAX_IMAGE_PIXELS:
            raise InvalidInput(
                f"“{filename}” has {media.pixels / 1e6:.0f} megapixels; the limit is "
                f"{limits.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels."
            )
        if media.kind is MediaKind.AUDIO and media.seconds > limits.MAX_AUDIO_SECONDS:
            raise InvalidInput(
                f"“{filename}” is longer than {limits.MAX_AUDIO_SECONDS:.0f} seconds, the most one clip can be."
            )
        files.append(MediaFile(path=path, filename=filename, kind=media.kind, mime=media.mime))
    return files
