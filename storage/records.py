"""ORM rows as domain types, and helpers for the message tree; shared by the repositories."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy.orm import Session

from domain import limits
from domain.i18n import ENGLISH, Text, catalog
from domain.settings import AnswerDetails, GenerationSettings
from domain.types import Attachment, ConversationSummary, MediaKind, Message, Role, Status, Transcript, TranscriptStatus
from storage.blobs import BlobStore, StoredBlob
from storage.schema import AttachmentRow, ConversationRow, MessageAttachmentRow, MessageRow, TranscriptRow


class Leaf:
    """The type of LEAF: 'after the conversation's current leaf'."""


LEAF = Leaf()


def stored_text(text: Text | str | None) -> str | None:
    """A sentence as a text column keeps it: a Text as JSON ({"key": ..., "params": ...}) so it can be said in any
    language later; a str (an old row's English, an import's words) as it is."""
    if not isinstance(text, Text):
        return text
    return json.dumps(_encoded(text), ensure_ascii=False, default=str)


def read_text(value: str | None) -> Text | str | None:
    """A text column's sentence back: the Text it was stored as, else the plain words (old rows, imports)."""
    if not value or not value.startswith("{"):
        return value
    try:
        text = _decoded(json.loads(value))
    except ValueError:
        return value
    return text if isinstance(text, Text) and text.key in catalog(ENGLISH) else value


def stored_details(details: AnswerDetails | None) -> dict | None:
    """An answer's details as its JSON column keeps them: what it left out by key ({"key": ..., "params": ...}), as
    stored_text keeps a sentence, so it can be said in any language later (the details' own JSON says English)."""
    if details is None:
        return None
    return {**details.model_dump(mode="json"), "left_out": [_encoded(item) for item in details.left_out]}


def read_details(value: dict | None) -> AnswerDetails | None:
    """A details column back, what was left out as the Texts it was stored as (plain words: older rows, imports)."""
    if not value:
        return None
    return AnswerDetails.model_validate({**value, "left_out": [_read_item(item) for item in value.get("left_out") or ()]})


def _read_item(item) -> Text | str:
    if isinstance(item, str):
        return item
    text = _decoded(item)
    if isinstance(text, Text) and text.key in catalog(ENGLISH):
        return text
    return json.dumps(item, ensure_ascii=False)  # a key this version does not know: shown as stored, as read_text does


def _encoded(value):
    if isinstance(value, Text):
        return {"key": value.key, "params": {name: _encoded(param) for name, param in value.params.items()}}
    return value


def _decoded(value):
    if isinstance(value, dict) and set(value) == {"key", "params"} and isinstance(value["key"], str) and isinstance(
        value["params"], dict
    ):
        return Text(value["key"], {name: _decoded(param) for name, param in value["params"].items()})
    return value


def to_message(row: MessageRow, blobs: BlobStore, tree: Tree | None = None) -> Message:
    """The domain message; with its conversation's whole `tree`, also which version of its turn it is."""
    siblings = tree.children(row.parent_id, row.role) if tree is not None else [row]
    attachments = tuple(
        Attachment(
            sha256=link.attachment.sha256,
            kind=MediaKind(link.attachment.kind),
            mime=link.attachment.mime,
            filename=link.filename,
            size_bytes=link.attachment.size_bytes,
            path=blobs.path_for(link.attachment.sha256, link.attachment.mime),
            transcript=to_transcript(link.attachment.transcript),
        )
        for link in row.links
    )
    speech = None
    if row.role == Role.ASSISTANT.value:  # an answer's sound is its spoken form (assistant messages take no files)
        speech = next((a for a in attachments if a.kind is MediaKind.AUDIO), None)
        attachments = tuple(a for a in attachments if a is not speech)
    return Message(
        id=row.id,
        conversation_id=row.conversation_id,
        role=Role(row.role),
        text=row.content,
        status=Status(row.status),
        attachments=attachments,
        speech=speech,
        error=read_text(row.error),
        created_at=row.created_at,
        parent_id=row.parent_id,
        details=read_details(row.details),
        version=siblings.index(row) + 1 if row in siblings else 1,
        versions=max(len(siblings), 1),
    )


def to_transcript(row: TranscriptRow | None) -> Transcript | None:
    if row is None:
        return None
    return Transcript(
        status=TranscriptStatus(row.status),
        text=row.text,
        language=row.language,
        seconds=row.seconds,
        model=row.model,
        error=read_text(row.error),
    )


def attach(
    session: Session,
    row: MessageRow,
    position: int,
    blob: StoredBlob,
    kind: MediaKind,
    mime: str,
    filename: str,
    transcript: Transcript | None = None,
) -> None:
    """Link a stored blob to a message, adding its attachment row the first time these bytes are seen (and its
    transcript, when one comes with it and none is stored)."""
    attachment = session.get(AttachmentRow, blob.sha256)
    if attachment is None:
        attachment = AttachmentRow(sha256=blob.sha256, kind=kind.value, mime=mime, size_bytes=blob.size, created_at=row.created_at)
        session.add(attachment)
        session.flush()
    if transcript is not None and kind in (MediaKind.AUDIO, MediaKind.VIDEO) and attachment.transcript is None:
        attachment.transcript = TranscriptRow(
            sha256=blob.sha256,
            status=transcript.status.value,
            text=transcript.text,
            language=transcript.language,
            seconds=transcript.seconds,
            model=transcript.model,
            error=transcript.error,
            created_at=row.created_at,
        )
        session.flush()
    row.links.append(MessageAttachmentRow(position=position, attachment_sha256=blob.sha256, filename=filename[: limits.MAX_FILENAME_CHARS]))


class Tree:
    """A conversation's messages, by id and by parent (children in order of insertion)."""

    def __init__(self, rows: Sequence[MessageRow]):
        self.by_id = {row.id: row for row in rows}
        self._kids: dict[int | None, list[MessageRow]] = {}
        for row in rows:
            self._kids.setdefault(row.parent_id, []).append(row)

    def children(self, parent_id: int | None, role: str | None = None) -> list[MessageRow]:
        """Optionally only those of one role: the versions of a turn."""
        return [r for r in self._kids.get(parent_id, []) if role is None or r.role == role]


def branch(tree: Tree, leaf_id: int | None) -> list[MessageRow]:
    """The messages from the root down to `leaf_id`."""
    path = []
    while leaf_id is not None and leaf_id in tree.by_id:
        path.append(tree.by_id[leaf_id])
        leaf_id = tree.by_id[leaf_id].parent_id
    return path[::-1]


def to_summary(row: ConversationRow) -> ConversationSummary:
    return ConversationSummary(
        id=row.id,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
        pinned=bool(row.pinned),
        archived=bool(row.archived),
        settings=GenerationSettings.model_validate(row.settings or {}),
    )
