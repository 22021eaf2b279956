"""This app's own export (`conversations.json` and its `files/`) read back as ImportedConversations.

Every fault in the manifest's shape is told as a sentence that names the field and where it is (which message of
which conversation). What the manifest says a file is (kind, mime, size, hash) is not read at all: the bytes are
checked by the assistant layer. Knows nothing of the database or of what images and sounds are.
"""

from __future__ import annotations

import math
import zipfile
from enum import StrEnum

from pydantic import BaseModel, ValidationError

from domain import limits
from domain.errors import InvalidInput
from domain.settings import AnswerDetails, GenerationSettings
from domain.types import Role, Status, Transcript, TranscriptStatus
from storage.import_files import ImportFiles, too_big
from storage.interchange import (
    FORMAT_VERSION,
    MANIFEST,
    ImportedConversation,
    ImportedFile,
    ImportedMessage,
    ImportSummary,
    check_counts,
    parse_time,
    shown,
)

_WHAT = {list: "a list", dict: "an object", str: "text"}


def read(
    document: dict, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], files: ImportFiles, summary: ImportSummary
) -> list[ImportedConversation]:
    if document.get("version") != FORMAT_VERSION:
        raise InvalidInput(f"This export has format version {shown(document.get('version'))}; this app reads version {FORMAT_VERSION}.")
    conversations = _typed(document, "conversations", "the export", list)
    check_counts(
        len(conversations),
        sum(len(c["messages"]) for c in conversations if isinstance(c, dict) and isinstance(c.get("messages"), list)),
    )
    reader = _Reader(archive, members, files, summary)
    return [reader.conversation(c, f"conversation {i + 1}") for i, c in enumerate(conversations)]


class _Reader:
    def __init__(self, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], files: ImportFiles, summary: ImportSummary):
        self.archive, self.members, self.files, self.summary = archive, members, files, summary
        self.noted: set[str] = set()  # members already named in the summary as left out

    def conversation(self, c, where: str) -> ImportedConversation:
        if not isinstance(c, dict):
            raise _fault(where, "is not an object")
        title = _typed(c, "title", where, str)
        where = f"{where} (“{title[:60]}”)"
        messages = [
            self.message(m, f"message {j + 1} of {where}", title) for j, m in enumerate(_typed(c, "messages", where, list))
        ]
        current = _key(c, "current_message_id", where)
        return ImportedConversation(
            title=title,
            messages=messages,
            current_key=current,
            created_at=parse_time(_field(c, "created_at", where), f"“created_at” of {where}"),
            updated_at=parse_time(_field(c, "updated_at", where), f"“updated_at” of {where}"),
            pinned=bool(_field(c, "pinned", where)),
            archived=bool(_field(c, "archived", where)),
            settings=_model(GenerationSettings, _typed(c, "settings", where, dict, optional=True)),
        )

    def message(self, m, where: str, title: str) -> ImportedMessage:
        if not isinstance(m, dict):
            raise _fault(where, "is not an object")
        key = _key(m, "id", where)
        if key is None:
            raise _fault(where, "has no “id”")
        files = []
        for k, a in enumerate(_typed(m, "attachments", where, list)):
            file = self.attachment(a, f"attachment {k + 1} of {where}", title)
            if file is not None:
                files.append(file)
        return ImportedMessage(
            key=key,
            parent_key=_key(m, "parent_id", where),
            role=_choice(m, "role", where, Role),
            text=_typed(m, "text", where, str),
            status=_choice(m, "status", where, Status),
            error=_typed(m, "error", where, str, optional=True),
            details=_model(AnswerDetails, _typed(m, "details", where, dict, optional=True)),
            created_at=parse_time(_field(m, "created_at", where), f"“created_at” of {where}"),
            files=files,
        )

    def attachment(self, a, where: str, title: str) -> ImportedFile | None:
        if not isinstance(a, dict):
            raise _fault(where, "is not an object")
        member, filename = _typed(a, "file", where, str), _typed(a, "filename", where, str)
        info = self.members.get(member)
        if info is None:
            raise InvalidInput(f"The zip lacks {member} (“{filename}”), which a message needs; nothing was imported.")
        limit = limits.max_file_bytes(member)  # a video's (by its name) is larger
        if info.file_size > limit:  # on the header: never unpacked
            if member not in self.noted:
                self.noted.add(member)
                self.summary.skipped.append(f"{too_big(filename, info.file_size, limit)[:-1]} (in “{title}”)")
            return None
        kept = self.files.member(self.archive, info)
        return ImportedFile(kept.path, kept.sha256, filename, _transcript(a.get("transcript"), where))


def _transcript(value, where: str) -> Transcript | None:
    if not value:
        return None
    where = f"the transcript of {where}"
    if not isinstance(value, dict):
        raise _fault(where, "is not an object")
    seconds = value.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds)):
        raise _fault(where, "has “seconds” that are not a number")
    return Transcript(
        status=_choice(value, "status", where, TranscriptStatus),
        text=_typed(value, "text", where, str, optional=True) or "",
        language=(_typed(value, "language", where, str, optional=True) or "")[: limits.MAX_LANGUAGE_CHARS] or None,
        seconds=None if seconds is None else float(seconds),
        model=(_typed(value, "model", where, str, optional=True) or "")[: limits.MAX_TRANSCRIPT_MODEL_CHARS],
        error=_typed(value, "error", where, str, optional=True),
    )


def _model(model: type[BaseModel], value: dict | None):
    """Settings or answer details as the domain's model; None for none (or an empty object)."""
    if not value:
        return None
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise InvalidInput(f"The export holds settings or answer details of an unknown shape ({error.errors()[0]['msg']}).") from None


def _fault(where: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{MANIFEST} is not in the shape this app writes: {where} {problem}; nothing was imported.")


def _field(obj: dict, key: str, where: str):
    if key not in obj:
        raise _fault(where, f"lacks “{key}”")
    return obj[key]


def _typed(obj: dict, key: str, where: str, kind: type, optional: bool = False):
    """obj[key] if it is of `kind`; an optional one may also be null or absent."""
    value = obj.get(key) if optional else _field(obj, key, where)
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        raise _fault(where, f"has a “{key}” that is not {_WHAT[kind]}{' or null' if optional else ''}")
    return value


def _key(obj: dict, key: str, where: str) -> str | None:
    """A message id (ours are numbers; any text or whole number will do), or None."""
    value = _field(obj, key, where)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _fault(where, f"has a “{key}” that is not a message id")
    return str(value)


def _choice(obj: dict, key: str, where: str, kind: type[StrEnum]):
    value = _field(obj, key, where)
    if not isinstance(value, str) or value not in {member.value for member in kind}:
        raise _fault(where, f"has an unknown “{key}” ({shown(value)})")
    return kind(value)
