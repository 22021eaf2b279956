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
from domain.i18n import Text, t
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

_WHAT = {list: "import.a_list", dict: "import.an_object", str: "import.text"}


def read(
    document: dict, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], files: ImportFiles, summary: ImportSummary
) -> list[ImportedConversation]:
    if document.get("version") != FORMAT_VERSION:
        raise InvalidInput(t("import.bad_version", version=shown(document.get("version")), supported=FORMAT_VERSION))
    conversations = _typed(document, "conversations", t("import.where.export"), list)
    check_counts(
        len(conversations),
        sum(len(c["messages"]) for c in conversations if isinstance(c, dict) and isinstance(c.get("messages"), list)),
    )
    reader = _Reader(archive, members, files, summary)
    return [reader.conversation(c, t("import.where.conversation", n=i + 1)) for i, c in enumerate(conversations)]


class _Reader:
    def __init__(self, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], files: ImportFiles, summary: ImportSummary):
        self.archive, self.members, self.files, self.summary = archive, members, files, summary
        self.noted: set[str] = set()  # members already named in the summary as left out

    def conversation(self, c, where: Text) -> ImportedConversation:
        if not isinstance(c, dict):
            raise _fault(where, t("import.fault.not_object"))
        title = _typed(c, "title", where, str)
        where = t("import.where.titled", where=where, title=title[:60])
        messages = [
            self.message(m, t("import.where.message", n=j + 1, where=where), title)
            for j, m in enumerate(_typed(c, "messages", where, list))
        ]
        current = _key(c, "current_message_id", where)
        return ImportedConversation(
            title=title,
            messages=messages,
            current_key=current,
            created_at=parse_time(_field(c, "created_at", where), t("import.where.key", key="created_at", where=where)),
            updated_at=parse_time(_field(c, "updated_at", where), t("import.where.key", key="updated_at", where=where)),
            pinned=bool(_field(c, "pinned", where)),
            archived=bool(_field(c, "archived", where)),
            settings=_model(GenerationSettings, _typed(c, "settings", where, dict, optional=True)),
        )

    def message(self, m, where: Text, title: str) -> ImportedMessage:
        if not isinstance(m, dict):
            raise _fault(where, t("import.fault.not_object"))
        key = _key(m, "id", where)
        if key is None:
            raise _fault(where, t("import.fault.no_id"))
        files = []
        for k, a in enumerate(_typed(m, "attachments", where, list)):
            file = self.attachment(a, t("import.where.attachment", n=k + 1, where=where), title)
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
            created_at=parse_time(_field(m, "created_at", where), t("import.where.key", key="created_at", where=where)),
            files=files,
        )

    def attachment(self, a, where: Text, title: str) -> ImportedFile | None:
        if not isinstance(a, dict):
            raise _fault(where, t("import.fault.not_object"))
        member, filename = _typed(a, "file", where, str), _typed(a, "filename", where, str)
        info = self.members.get(member)
        if info is None:
            raise InvalidInput(t("import.member_missing", member=member, name=filename))
        if info.file_size > limits.MAX_FILE_BYTES:  # on the header: never unpacked
            if member not in self.noted:
                self.noted.add(member)
                self.summary.skipped.append(t("import.skipped.in", what=too_big(filename, info.file_size), title=title))
            return None
        kept = self.files.member(self.archive, info)
        return ImportedFile(kept.path, kept.sha256, filename, _transcript(a.get("transcript"), where))


def _transcript(value, where: Text) -> Transcript | None:
    if not value:
        return None
    where = t("import.where.transcript", where=where)
    if not isinstance(value, dict):
        raise _fault(where, t("import.fault.not_object"))
    seconds = value.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds)):
        raise _fault(where, t("import.fault.seconds"))
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
        raise InvalidInput(t("import.bad_settings", problem=error.errors()[0]["msg"])) from None


def _fault(where: Text, problem: Text) -> InvalidInput:
    return InvalidInput(t("import.fault", manifest=MANIFEST, where=where, problem=problem))


def _field(obj: dict, key: str, where: Text):
    if key not in obj:
        raise _fault(where, t("import.fault.lacks", key=key))
    return obj[key]


def _typed(obj: dict, key: str, where: Text, kind: type, optional: bool = False):
    """obj[key] if it is of `kind`; an optional one may also be null or absent."""
    value = obj.get(key) if optional else _field(obj, key, where)
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        raise _fault(where, t("import.fault.type_or_null" if optional else "import.fault.type", key=key, kind=t(_WHAT[kind])))
    return value


def _key(obj: dict, key: str, where: Text) -> str | None:
    """A message id (ours are numbers; any text or whole number will do), or None."""
    value = _field(obj, key, where)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _fault(where, t("import.fault.not_an_id", key=key))
    return str(value)


def _choice(obj: dict, key: str, where: Text, kind: type[StrEnum]):
    value = _field(obj, key, where)
    if not isinstance(value, str) or value not in {member.value for member in kind}:
        raise _fault(where, t("import.fault.unknown", key=key, value=shown(value)))
    return kind(value)
