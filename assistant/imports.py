"""Importing an export: storage reads it, every file it brings is checked as an upload is, then all is stored at once.

The one way in for the page and the command line. A file that fails the check (not fully decodable, not an image
or a sound, SVG, over a limit) is left out of its message and named in the summary; what a kept file is (its kind
and MIME type) comes from the check, never from what the export declares. Each distinct file is checked once,
however many messages hold it. Knows nothing of zip or JSON (storage.exchange reads them), of SQL, or of the page.
"""

from __future__ import annotations

import mimetypes
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from assistant.validation import clean_filename, validate_file
from domain import limits
from domain.errors import InvalidInput
from domain.i18n import t
from domain.types import MediaFile, MediaKind
from storage.exchange import read_archive
from storage.interchange import ImportedConversation, ImportSummary


def import_archive(
    source: Path | BinaryIO,
    store: Callable[[Sequence[ImportedConversation]], object],
    max_audio_seconds: float = limits.MAX_AUDIO_SECONDS,
    scratch: Path | None = None,
) -> ImportSummary:
    """Read `source` (a file's path, or the open file), check its files, and hand the conversations to `store` (one
    transaction); the summary says what came over and what did not. Its files wait in a folder under `scratch`
    (the system's temporary folder by default), removed when done."""
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="import-", dir=scratch) as folder:
        conversations, summary = read_archive(source, Path(folder))
        check_files(conversations, summary, max_audio_seconds)
        store(conversations)
    return summary


def check_files(conversations: Sequence[ImportedConversation], summary: ImportSummary, max_audio_seconds: float) -> None:
    """Give each file the kind and MIME type its bytes show; leave out (and name) what an upload would be refused."""
    checked: dict[str, MediaFile | None] = {}  # by sha256: None for a file refused
    for conversation in conversations:
        for message in conversation.messages:
            kept = []
            for file in message.files:
                filename = clean_filename(file.filename)
                if file.sha256 not in checked:
                    checked[file.sha256] = _check(file.path, filename, max_audio_seconds, conversation.title, summary)
                media = checked[file.sha256]
                if media is None:
                    continue
                if len(kept) == limits.MAX_FILES_PER_MESSAGE:
                    summary.skipped.append(
                        t("import.skipped.past_files", name=filename, limit=limits.MAX_FILES_PER_MESSAGE, title=conversation.title)
                    )
                    continue
                file.filename = _named(filename, media.mime)
                file.kind, file.mime = media.kind, media.mime
                if media.kind not in (MediaKind.AUDIO, MediaKind.VIDEO):
                    file.transcript = None  # what the export called a recording's transcript, on what is not one
                kept.append(file)
            message.files = kept
    summary.count(conversations)


def _check(path: Path, filename: str, max_audio_seconds: float, title: str, summary: ImportSummary) -> MediaFile | None:
    try:
        return validate_file(path, filename, max_audio_seconds)
    except InvalidInput as error:
        summary.skipped.append(t("import.skipped.in", what=error.text, title=title))
        return None


def _named(filename: str, mime: str) -> str:
    """A name without an extension (a file embedded in a chat) gets the one its checked type has."""
    if "." in filename:
        return filename
    return filename + (mimetypes.guess_extension(mime, strict=False) or "")
