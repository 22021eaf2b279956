"""Domain types shared by the dialogue manager, storage and UI; plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from domain.i18n import Text, t
from domain.settings import AnswerDetails, GenerationSettings


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class Status(StrEnum):
    COMPLETE = "complete"
    STREAMING = "streaming"
    STOPPED = "stopped"
    ERROR = "error"


# The error of an answer the app stopped writing (killed, crashed, lost power) before it was finished; its text is
# what had been saved.
INTERRUPTED = t("answer.interrupted")


def is_interrupted(error: Text | str | None) -> bool:
    """Whether an answer's error is INTERRUPTED: as a Text, or in the English words rows stored before it was one."""
    return error == INTERRUPTED or error == str(INTERRUPTED)


class MediaKind(StrEnum):
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"  # frames, and for a model that hears, its sound track in the same item


@dataclass(frozen=True)
class MediaFile:
    """An uploaded file that passed validation and is ready to be stored."""

    path: Path
    filename: str
    kind: MediaKind
    mime: str


@dataclass(frozen=True)
class HistoryTurn:
    """A message of the history an API client sends whole, none of ours holding it; its files already checked."""

    role: Role
    text: str
    files: tuple[MediaFile, ...] = ()


class TranscriptStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"  # `error` says why; sending the file again retries


@dataclass(frozen=True)
class Transcript:
    """What Whisper heard in an audio file, stored once per file."""

    status: TranscriptStatus
    text: str = ""
    language: str | None = None
    seconds: float | None = None
    model: str = ""
    error: Text | str | None = None  # a Text said in the reader's language; a str (old rows, imports) as it is


@dataclass(frozen=True)
class Attachment:
    """A stored file, content-addressed by the sha256 of its bytes."""

    sha256: str
    kind: MediaKind
    mime: str
    filename: str
    size_bytes: int
    path: Path
    transcript: Transcript | None = None  # audio and video (its sound track) only; None while none has been made


@dataclass(frozen=True)
class StoredFile:
    """Where an attachment's bytes are, and what validation found them to be (how they may be served)."""

    path: Path
    kind: MediaKind
    mime: str


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: str
    role: Role
    text: str
    status: Status
    attachments: tuple[Attachment, ...] = ()
    error: Text | str | None = None  # a Text said in the reader's language; a str (old rows, imports) as it is
    created_at: datetime | None = None
    parent_id: int | None = None
    details: AnswerDetails | None = None
    speech: Attachment | None = None  # an answer's spoken form (assistant.spoken_answers), never in the prompt
    version: int = 1  # which of its parent's children of the same turn this is (1-based) …
    versions: int = 1  # … and how many there are: regenerated answers, edited questions


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    pinned: bool = False
    archived: bool = False
    settings: GenerationSettings = GenerationSettings()


@dataclass(frozen=True)
class SearchHit:
    """A message whose text matches a search, with the words around the match."""

    conversation_id: str
    conversation_title: str
    message_id: int
    snippet: str
