"""What every export format is read into and the export is written from: the interchange types, and the checks
and phrasing all readers share. Knows nothing of zip files, JSON shapes, the database or models.

storage.exchange (our zip), storage.manifest (our conversations.json) and storage.foreign (ChatGPT's and Open
WebUI's exports) all build `ImportedConversation`s; the repository stores them and hands out
`ExportedConversation`s. Settings and answer details travel as the domain's pydantic models, checked once, where
they are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from domain import limits
from domain.errors import InvalidInput
from domain.i18n import ENGLISH, Text, say, t
from domain.settings import AnswerDetails, GenerationSettings
from domain.types import MediaKind, Message, Role, Status, Transcript

FORMAT = "local-assistant"
FORMAT_VERSION = 1
MANIFEST = "conversations.json"


@dataclass
class ImportedFile:
    """A file as an export brings it: a scratch copy (deleted after the import), and what it is only once checked.

    `kind` and `mime` stay None until the assistant layer has validated the bytes (assistant.imports); the
    repository stores no file without them, and nothing an export declares about a file is ever used for them.
    """

    path: Path
    sha256: str
    filename: str
    transcript: Transcript | None = None
    kind: MediaKind | None = None
    mime: str | None = None


@dataclass
class ImportedMessage:
    key: str  # unique within its conversation, in the source format
    parent_key: str | None
    role: Role
    text: str
    status: Status = Status.COMPLETE
    error: str | None = None
    details: AnswerDetails | None = None
    created_at: datetime | None = None
    files: list[ImportedFile] = field(default_factory=list)


@dataclass
class ImportedConversation:
    title: str
    messages: list[ImportedMessage]  # parents before children
    current_key: str | None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    pinned: bool = False
    archived: bool = False
    settings: GenerationSettings | None = None


@dataclass
class ImportSummary:
    conversations: int = 0
    messages: int = 0
    files: int = 0  # distinct files (the same bytes attached twice count once)
    skipped: list[Text] = field(default_factory=list)  # what the source held that did not come over, by name

    def count(self, conversations: list[ImportedConversation]) -> None:
        self.conversations = len(conversations)
        self.messages = sum(len(c.messages) for c in conversations)
        self.files = len({f.sha256 for c in conversations for m in c.messages for f in m.files})

    def sentence(self, language: str = ENGLISH) -> str:
        """What came over and, of the first ten things that did not, each by name; in `language`."""
        text = say(t("import.summary", conversations=self.conversations, messages=self.messages, files=self.files), language)
        if not self.skipped:
            return text
        shown = say(t("import.separator"), language).join(say(skipped, language) for skipped in self.skipped[:10])
        if len(self.skipped) > 10:
            shown = say(t("import.and_more", items=shown, n=len(self.skipped) - 10), language)
        return say(t("import.summary.skipped", summary=text, items=shown), language)


@dataclass
class ExportedConversation:
    """What the repository hands the exporter: one conversation with every message of its tree."""

    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    pinned: bool
    archived: bool
    settings: GenerationSettings
    current_leaf_id: int | None
    messages: list[Message]  # in order of insertion; parents first


def check_counts(conversations: int, messages: int) -> None:
    """Refuse, before anything is built, an import larger than one transaction may be."""
    if conversations > limits.MAX_IMPORT_CONVERSATIONS:
        raise InvalidInput(t("import.too_many_conversations", count=conversations, limit=limits.MAX_IMPORT_CONVERSATIONS))
    if messages > limits.MAX_IMPORT_MESSAGES:
        raise InvalidInput(t("import.too_many_messages", count=messages, limit=limits.MAX_IMPORT_MESSAGES))


def parse_time(value, what: Text) -> datetime | None:
    """ISO text, or seconds (or milliseconds) since the epoch, as naive UTC; InvalidInput naming `what` otherwise."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(value)
        if isinstance(value, (int, float)):
            seconds = value / 1000 if value > 1e11 else value  # larger numbers are milliseconds
            return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        parsed = datetime.fromisoformat(value)
        return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, OverflowError, OSError):  # NaN, beyond year 9999 or the platform's time_t, not a date at all
        raise InvalidInput(t("import.bad_time", what=what, value=shown(value))) from None


def shown(value, length: int = 40) -> str | Text:
    """A value from an export as a person reads it in a sentence: short, and never recursing into containers."""
    if isinstance(value, list | dict):
        return t("import.a_list") if isinstance(value, list) else t("import.an_object")
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= length else text[: length - 1] + "…"
