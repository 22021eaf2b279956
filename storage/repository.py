"""ConversationRepository: every read and write of conversations, messages and attachments.

Returns the domain types of domain.types, never ORM rows. Every write transaction takes SQLite's write
lock up front (see storage.database), so concurrent writers queue instead of racing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from domain.errors import ConversationNotFound, InvalidInput
from domain.types import Attachment, ConversationSummary, MediaFile, MediaKind, Message, Role, SearchHit, Status
from storage.blobs import BlobStore, StoredBlob
from storage.database import Database
from storage.search import search_messages
from storage.schema import AttachmentRow, ConversationRow, MessageAttachmentRow, MessageRow

log = logging.getLogger(__name__)

INTERRUPTED = "The app stopped before this answer was finished."
# Loads a message's attachments with it, in one extra query per batch.
_WITH_ATTACHMENTS = selectinload(MessageRow.links).selectinload(MessageAttachmentRow.attachment)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ConversationRepository:
    def __init__(self, database: Database, blobs: BlobStore):
        self._read = database.read
        self._write = database.write
        self._blobs = blobs

    def create_conversation(self, title: str) -> ConversationSummary:
        with self._write.begin() as session:
            return _summary(self._new_conversation(session, title))

    def list_conversations(self, archived: bool = False) -> list[ConversationSummary]:
        """All of them (or all archived ones): pinned first, then most recently active first."""
        with self._read() as session:
            rows = session.scalars(
                select(ConversationRow)
                .where(ConversationRow.archived == archived)
                .order_by(ConversationRow.pinned.desc(), ConversationRow.updated_at.desc())
            ).all()
            return [_summary(row) for row in rows]

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages whose text contains `query`, newest first (archived conversations included)."""
        return search_messages(self._read, query, limit)

    def rename_conversation(self, conversation_id: str, title: str) -> ConversationSummary:
        title = " ".join(title.split())
        if not title:
            raise InvalidInput("A conversation needs a title.")
        return self._change(conversation_id, title=title[:200])

    def set_pinned(self, conversation_id: str, pinned: bool) -> ConversationSummary:
        return self._change(conversation_id, pinned=pinned)

    def set_archived(self, conversation_id: str, archived: bool) -> ConversationSummary:
        return self._change(conversation_id, archived=archived)

    def _change(self, conversation_id: str, **values) -> ConversationSummary:
        # Title, pin and archive are not activity: updated_at (the list's order) stays.
        with self._write.begin() as session:
            row = self._conversation(session, conversation_id)
            for name, value in values.items():
                setattr(row, name, value)
            session.flush()
            return _summary(row)

    def delete_conversation(self, conversation_id: str) -> int:
        """Delete it with its messages, and every stored file no other message uses; return how many files went."""
        with self._write.begin() as session:
            row = self._conversation(session, conversation_id)
            used = select(MessageAttachmentRow.attachment_sha256).join(MessageRow).where(
                MessageRow.conversation_id == conversation_id
            )
            candidates = set(session.scalars(used).all())
            session.delete(row)
            session.flush()
            still_used = set(
                session.scalars(
                    select(MessageAttachmentRow.attachment_sha256).where(MessageAttachmentRow.attachment_sha256.in_(candidates))
                ).all()
            )
            orphans = session.scalars(select(AttachmentRow).where(AttachmentRow.sha256.in_(candidates - still_used))).all()
            for attachment in orphans:
                session.delete(attachment)
            session.flush()
            # Still under the write lock, so no other writer can link one of these files meanwhile.
            for attachment in orphans:
                self._blobs.path_for(attachment.sha256, attachment.mime).unlink(missing_ok=True)
            return len(orphans)

    def get_conversation(self, conversation_id: str) -> ConversationSummary:
        with self._read() as session:
            return _summary(self._conversation(session, conversation_id))

    def get_messages(self, conversation_id: str) -> list[Message]:
        with self._read() as session:
            self._conversation(session, conversation_id)
            rows = session.scalars(
                select(MessageRow)
                .where(MessageRow.conversation_id == conversation_id)
                .order_by(MessageRow.position)
                .options(_WITH_ATTACHMENTS)
            ).all()
            return [self._message(row) for row in rows]

    def get_message(self, message_id: int) -> Message:
        with self._read() as session:
            row = session.scalar(select(MessageRow).where(MessageRow.id == message_id).options(_WITH_ATTACHMENTS))
            if row is None:
                raise LookupError(f"message {message_id} does not exist")
            return self._message(row)

    def add_user_message(
        self, conversation_id: str | None, text: str, files: Sequence[MediaFile], *, new_title: str = "New chat"
    ) -> Message:
        """Store the files (once each, by content) and the message, in order, in one transaction.

        With no conversation id, the conversation titled `new_title` is created in that same transaction:
        a failure leaves neither an empty conversation nor files nothing refers to.
        """
        stored: list[StoredBlob] = []
        try:
            # The write lock is held while the files are copied, so no other writer can link a blob
            # that a failure here is about to remove.
            with self._write.begin() as session:
                if conversation_id is None:
                    conversation = self._new_conversation(session, new_title)
                else:
                    conversation = self._conversation(session, conversation_id)
                row = self._new_message(session, conversation, Role.USER, text, Status.COMPLETE)
                for position, file in enumerate(files):
                    blob = self._blobs.put(file.path, file.mime)
                    stored.append(blob)
                    if session.get(AttachmentRow, blob.sha256) is None:
                        session.add(
                            AttachmentRow(
                                sha256=blob.sha256, kind=file.kind.value, mime=file.mime, size_bytes=blob.size, created_at=row.created_at
                            )
                        )
                        session.flush()
                    row.links.append(
                        MessageAttachmentRow(position=position, attachment_sha256=blob.sha256, filename=file.filename[:255])
                    )
                session.flush()
                session.refresh(row)
                return self._message(row)
        except BaseException:
            self._discard_unreferenced(stored)
            raise

    def _discard_unreferenced(self, blobs: Sequence[StoredBlob]) -> None:
        created = [blob for blob in blobs if blob.created]
        if not created:
            return
        try:
            # Under the write lock: no other writer can link one of these between the check and the unlink.
            with self._write.begin() as session:
                for blob in created:
                    if session.get(AttachmentRow, blob.sha256) is None:
                        self._blobs.discard(blob)
        except Exception:
            log.exception("could not remove the files of a message that was not saved")

    def start_assistant_message(self, conversation_id: str) -> Message:
        with self._write.begin() as session:
            conversation = self._conversation(session, conversation_id)
            row = self._new_message(session, conversation, Role.ASSISTANT, "", Status.STREAMING)
            session.flush()
            return self._message(row)

    def update_message_text(self, message_id: int, text: str) -> None:
        with self._write.begin() as session:
            session.execute(update(MessageRow).where(MessageRow.id == message_id).values(content=text, updated_at=_now()))

    def finish_message(self, message_id: int, text: str, status: Status, error: str | None = None) -> None:
        with self._write.begin() as session:
            session.execute(
                update(MessageRow)
                .where(MessageRow.id == message_id)
                .values(content=text, status=status.value, error=error, updated_at=_now())
            )

    def mark_interrupted(self) -> int:
        """Answers left streaming by a crash keep their text and are marked as errors; returns how many."""
        with self._write.begin() as session:
            result = session.execute(
                update(MessageRow)
                .where(MessageRow.status == Status.STREAMING.value)
                .values(status=Status.ERROR.value, error=INTERRUPTED)
            )
            return result.rowcount

    def _conversation(self, session: Session, conversation_id: str) -> ConversationRow:
        row = session.get(ConversationRow, conversation_id)
        if row is None:
            raise ConversationNotFound(f"Conversation {conversation_id} does not exist.")
        return row

    def _new_conversation(self, session: Session, title: str) -> ConversationRow:
        now = _now()
        row = ConversationRow(id=uuid.uuid4().hex, title=title[:200], created_at=now, updated_at=now)
        session.add(row)
        return row

    def _new_message(self, session: Session, conversation: ConversationRow, role: Role, text: str, status: Status) -> MessageRow:
        last = session.scalar(select(func.max(MessageRow.position)).where(MessageRow.conversation_id == conversation.id))
        now = _now()
        row = MessageRow(
            conversation_id=conversation.id,
            position=0 if last is None else last + 1,
            role=role.value,
            content=text,
            status=status.value,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        conversation.updated_at = now
        return row

    def _message(self, row: MessageRow) -> Message:
        attachments = tuple(
            Attachment(
                sha256=link.attachment.sha256,
                kind=MediaKind(link.attachment.kind),
                mime=link.attachment.mime,
                filename=link.filename,
                size_bytes=link.attachment.size_bytes,
                path=self._blobs.path_for(link.attachment.sha256, link.attachment.mime),
            )
            for link in row.links
        )
        return Message(
            id=row.id,
            conversation_id=row.conversation_id,
            role=Role(row.role),
            text=row.content,
            status=Status(row.status),
            attachments=attachments,
            error=row.error,
            created_at=row.created_at,
        )


def _summary(row: ConversationRow) -> ConversationSummary:
    return ConversationSummary(
        id=row.id,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
        pinned=bool(row.pinned),
        archived=bool(row.archived),
    )
