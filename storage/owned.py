"""What every part of the conversation repository shares: the database, the blob store, the one owner whose rows
it sees, and the lookups that make another owner's conversations and messages not exist.

Returns the domain types of domain.types, never ORM rows. Every write transaction takes SQLite's write lock up
front (see storage.database), so concurrent writers queue instead of racing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Self

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from domain import limits
from domain.errors import ConversationNotFound, MessageNotFound
from domain.i18n import t
from domain.settings import GenerationSettings
from domain.types import Message
from storage.blobs import BlobStore
from storage.database import Database, utc_now
from storage.records import Tree, to_message
from storage.schema import AttachmentRow, ConversationRow, MessageAttachmentRow, MessageRow

# Loads a message's attachments with it, in one extra query per batch.
_WITH_ATTACHMENTS = (
    selectinload(MessageRow.links).selectinload(MessageAttachmentRow.attachment).selectinload(AttachmentRow.transcript)
)


def settings_json(settings: GenerationSettings | None) -> dict | None:
    """Settings as the conversation's JSON column holds them: only what differs from the app's defaults, or NULL."""
    if settings is None:
        return None
    return settings.model_dump(mode="json", exclude_none=True) or None


class OwnedRows:
    """Seen by one owner: a user's id, or None (the one local person while the app has no accounts).

    Another owner's conversation or message is ConversationNotFound / MessageNotFound, as if it did not exist.
    """

    def __init__(self, database: Database, blobs: BlobStore, owner: int | None = None, writer: str | None = None):
        """`writer` names this app instance on the answers it streams (storage/instances.py)."""
        self._database = database
        self._read = database.read
        self._write = database.write
        self._blobs = blobs
        self._owner = owner
        self._writer = writer

    def for_owner(self, owner: int | None) -> Self:
        return type(self)(self._database, self._blobs, owner, self._writer)

    def _owned(self):
        return ConversationRow.user_id.is_(None) if self._owner is None else ConversationRow.user_id == self._owner

    def _conversation(self, session: Session, conversation_id: str) -> ConversationRow:
        row = session.get(ConversationRow, conversation_id)
        if row is None or row.user_id != self._owner:
            raise ConversationNotFound(t("conversation.not_found", id=conversation_id))
        return row

    def _new_conversation(self, session: Session, title: str, settings: GenerationSettings | None = None) -> ConversationRow:
        now = utc_now()
        row = ConversationRow(
            id=uuid.uuid4().hex, title=title[: limits.MAX_TITLE_CHARS], created_at=now, updated_at=now, user_id=self._owner
        )
        row.settings = settings_json(settings)
        session.add(row)
        return row

    def _rows(self, session: Session, conversation_id: str) -> Sequence[MessageRow]:
        return session.scalars(
            select(MessageRow)
            .where(MessageRow.conversation_id == conversation_id)
            .order_by(MessageRow.position)
            .options(_WITH_ATTACHMENTS)
        ).all()

    def _message_row(self, session: Session, message_id: int) -> MessageRow:
        row = session.scalar(select(MessageRow).where(MessageRow.id == message_id).options(_WITH_ATTACHMENTS))
        owner = session.get(ConversationRow, row.conversation_id) if row is not None else None
        if row is None or owner is None or owner.user_id != self._owner:
            raise MessageNotFound(t("message.not_found", id=message_id))
        return row

    def _message(self, row: MessageRow, tree: Tree | None = None) -> Message:
        return to_message(row, self._blobs, tree)
