"""ConversationRepository: every read and write of conversations, messages and attachments.

Returns the domain types of assistant.types, never ORM rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from assistant.errors import ConversationNotFound
from assistant.types import Attachment, ConversationSummary, MediaFile, MediaKind, Message, Role, Status
from storage.blobs import BlobStore
from storage.schema import AttachmentRow, ConversationRow, MessageAttachmentRow, MessageRow

TITLE_CHARS = 60
INTERRUPTED = "The app stopped before this answer was finished."


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def make_title(text: str, files: Sequence[MediaFile]) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not line:
        line = files[0].filename if files else "New chat"
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class ConversationRepository:
    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore):
        self._sessions = sessions
        self._blobs = blobs

    def create_conversation(self, title: str) -> ConversationSummary:
        now = _now()
        row = ConversationRow(id=uuid.uuid4().hex, title=title[:200], created_at=now, updated_at=now)
        with self._sessions.begin() as session:
            session.add(row)
        return _summary(row)

    def list_conversations(self, limit: int = 500) -> list[ConversationSummary]:
        with self._sessions() as session:
            rows = session.scalars(
                select(ConversationRow).order_by(ConversationRow.updated_at.desc()).limit(limit)
            ).all()
            return [_summary(row) for row in rows]

    def get_conversation(self, conversation_id: str) -> ConversationSummary:
        with self._sessions() as session:
            return _summary(self._conversation(session, conversation_id))

    def get_messages(self, conversation_id: str) -> list[Message]:
        with self._sessions() as session:
            self._conversation(session, conversation_id)
            rows = session.scalars(
                select(MessageRow)
                .where(MessageRow.conversation_id == conversation_id)
                .order_by(MessageRow.position)
                .options(selectinload(MessageRow.links).selectinload(MessageAttachmentRow.attachment))
            ).all()
            return [self._message(row) for row in rows]

    def get_message(self, message_id: int) -> Message:
        with self._sessions() as session:
            row = session.scalar(
                select(MessageRow)
                .where(MessageRow.id == message_id)
                .options(selectinload(MessageRow.links).selectinload(MessageAttachmentRow.attachment))
            )
            if row is None:
                raise LookupError(f"message {message_id} does not exist")
            return self._message(row)

    def add_user_message(self, conversation_id: str, text: str, files: Sequence[MediaFile]) -> Message:
        """Store the files (once each, by content) and the message, in order, in one transaction."""
        stored = [(file, *self._blobs.put(file.path, file.mime)) for file in files]
        with self._sessions.begin() as session:
            conversation = self._conversation(session, conversation_id)
            row = self._new_message(session, conversation, Role.USER, text, Status.COMPLETE)
            for position, (file, sha256, size) in enumerate(stored):
                if session.get(AttachmentRow, sha256) is None:
                    session.add(
                        AttachmentRow(sha256=sha256, kind=file.kind.value, mime=file.mime, size_bytes=size, created_at=row.created_at)
                    )
                    session.flush()
                row.links.append(
                    MessageAttachmentRow(position=position, attachment_sha256=sha256, filename=file.filename[:255])
                )
            session.flush()
            session.refresh(row)
            return self._message(row)

    def start_assistant_message(self, conversation_id: str) -> Message:
        with self._sessions.begin() as session:
            conversation = self._conversation(session, conversation_id)
            row = self._new_message(session, conversation, Role.ASSISTANT, "", Status.STREAMING)
            session.flush()
            return self._message(row)

    def update_message_text(self, message_id: int, text: str) -> None:
        with self._sessions.begin() as session:
            session.execute(update(MessageRow).where(MessageRow.id == message_id).values(content=text, updated_at=_now()))

    def finish_message(self, message_id: int, text: str, status: Status, error: str | None = None) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(MessageRow)
                .where(MessageRow.id == message_id)
                .values(content=text, status=status.value, error=error, updated_at=_now())
            )

    def mark_interrupted(self) -> int:
        """Answers left streaming by a crash keep their text and are marked as errors; returns how many."""
        with self._sessions.begin() as session:
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
    return ConversationSummary(id=row.id, title=row.title, created_at=row.created_at, updated_at=row.updated_at)
