"""ORM tables. Changing them needs a new Alembic revision in storage/migrations/versions.

Not declared here: the FTS5 indexes `message_fts` (revision 0002) and `transcript_fts` (0006) with their triggers, which SQLAlchemy
cannot express; storage.search queries them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("name", name="uq_app_user_name"),)


class ApiKeyRow(Base):
    """A key for the OpenAI-compatible API; only its SHA-256 is kept (keys are random, so no slow hash is needed)."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))  # the key's start, to tell keys apart in a list
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("key_hash", name="uq_api_key_hash"), Index("ix_api_key_user_id", "user_id"))


class ConversationRow(Base):
    __tablename__ = "conversation"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    pinned: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    archived: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    # The last message of the branch being shown; the model sees the path from the root to it.
    current_leaf_id: Mapped[int | None] = mapped_column(Integer)
    settings: Mapped[dict | None] = mapped_column(JSON)  # domain.settings.GenerationSettings
    # The owner; None while the app has no accounts (one local person).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))

    messages: Mapped[list[MessageRow]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan", passive_deletes=True, order_by="MessageRow.position"
    )

    __table_args__ = (
        Index("ix_conversation_updated_at", "updated_at"),
        Index("ix_conversation_list", "archived", "pinned", "updated_at"),
        Index("ix_conversation_user_id", "user_id"),
    )


class MessageRow(Base):
    __tablename__ = "message"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id", ondelete="CASCADE"))
    position: Mapped[int]  # order of insertion in the conversation, across all branches
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("message.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict | None] = mapped_column(JSON)  # domain.settings.AnswerDetails, for answers
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    writer: Mapped[str | None] = mapped_column(String(255))  # the app instance that writes it while it streams

    conversation: Mapped[ConversationRow] = relationship(back_populates="messages")
    links: Mapped[list[MessageAttachmentRow]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="MessageAttachmentRow.position"
    )

    __table_args__ = (
        UniqueConstraint("conversation_id", "position", name="uq_message_conversation_position"),
        Index("ix_message_parent_id", "parent_id"),
    )


class AttachmentRow(Base):
    __tablename__ = "attachment"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    mime: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int]
    created_at: Mapped[datetime]

    transcript: Mapped[TranscriptRow | None] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class MessageAttachmentRow(Base):
    __tablename__ = "message_attachment"

    message_id: Mapped[int] = mapped_column(ForeignKey("message.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    attachment_sha256: Mapped[str] = mapped_column(ForeignKey("attachment.sha256", ondelete="RESTRICT"))
    filename: Mapped[str] = mapped_column(String(255))

    attachment: Mapped[AttachmentRow] = relationship()

    __table_args__ = (Index("ix_message_attachment_sha256", "attachment_sha256"),)


class TranscriptRow(Base):
    """What Whisper heard in an audio attachment (or why it could not); one per file. FTS: `transcript_fts` (0006)."""

    __tablename__ = "transcript"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("attachment.sha256", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))  # domain.types.TranscriptStatus
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    seconds: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("sha256", name="uq_transcript_sha256"),)


class InstanceRow(Base):
    """A running app instance (host:port), alive while its heartbeat is recent (storage/instances.py)."""

    __tablename__ = "app_instance"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    heartbeat_at: Mapped[datetime]
