"""A conversation as a whole: create, list, search, rename, pin, archive, set its settings, delete it (with the files
no other conversation uses), and which stored files its owner may download. Its messages are storage.tree's.
"""

from __future__ import annotations

from sqlalchemy import select

from domain import limits
from domain.errors import InvalidInput
from domain.i18n import t
from domain.settings import GenerationSettings
from domain.types import ConversationSummary, MediaKind, SearchHit, StoredFile
from storage.cleanup import delete_unlinked
from storage.owned import OwnedRows, settings_json
from storage.records import to_summary
from storage.schema import AttachmentRow, ConversationRow, MessageAttachmentRow, MessageRow
from storage.search import search_messages


class Conversations(OwnedRows):
    def attachment_file(self, sha256: str) -> StoredFile | None:
        """The stored file of an attachment one of this owner's messages links (what they may download), or None."""
        with self._read() as session:
            row = session.scalar(
                select(AttachmentRow)
                .join(MessageAttachmentRow, MessageAttachmentRow.attachment_sha256 == AttachmentRow.sha256)
                .join(MessageRow, MessageRow.id == MessageAttachmentRow.message_id)
                .join(ConversationRow, ConversationRow.id == MessageRow.conversation_id)
                .where(AttachmentRow.sha256 == sha256, self._owned())
                .limit(1)
            )
            if row is None:
                return None
            return StoredFile(self._blobs.path_for(row.sha256, row.mime), MediaKind(row.kind), row.mime)

    def create_conversation(self, title: str) -> ConversationSummary:
        with self._write.begin() as session:
            return to_summary(self._new_conversation(session, title))

    def list_conversations(self, archived: bool = False) -> list[ConversationSummary]:
        """All of them (or all archived ones): pinned first, then most recently active first."""
        with self._read() as session:
            rows = session.scalars(
                select(ConversationRow)
                .where(ConversationRow.archived == archived, self._owned())
                .order_by(ConversationRow.pinned.desc(), ConversationRow.updated_at.desc())
            ).all()
            return [to_summary(row) for row in rows]

    def get_conversation(self, conversation_id: str) -> ConversationSummary:
        with self._read() as session:
            return to_summary(self._conversation(session, conversation_id))

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages whose text contains `query`, newest first (archived conversations included)."""
        return search_messages(self._read, query, self._owner, limit)

    def conversations_starting_with(self, first_text: str, limit: int = 50) -> list[str]:
        """This owner's conversations (most recent first) with a first message of exactly this text, on any branch."""
        with self._read() as session:
            query = (
                select(ConversationRow.id)
                .join(MessageRow, MessageRow.conversation_id == ConversationRow.id)
                .where(self._owned(), MessageRow.parent_id.is_(None), MessageRow.content == first_text)
                .group_by(ConversationRow.id)
                .order_by(ConversationRow.updated_at.desc())
                .limit(limit)
            )
            return list(session.scalars(query))

    def rename_conversation(self, conversation_id: str, title: str) -> ConversationSummary:
        title = " ".join(title.split())
        if not title:
            raise InvalidInput(t("conversation.no_title"))
        return self._change(conversation_id, title=title[: limits.MAX_TITLE_CHARS])

    def set_pinned(self, conversation_id: str, pinned: bool) -> ConversationSummary:
        return self._change(conversation_id, pinned=pinned)

    def set_archived(self, conversation_id: str, archived: bool) -> ConversationSummary:
        return self._change(conversation_id, archived=archived)

    def set_settings(self, conversation_id: str, settings: GenerationSettings) -> ConversationSummary:
        return self._change(conversation_id, settings=settings_json(settings))

    def _change(self, conversation_id: str, **values) -> ConversationSummary:
        # Title, pin and archive are not activity: updated_at (the list's order) stays.
        with self._write.begin() as session:
            row = self._conversation(session, conversation_id)
            for name, value in values.items():
                setattr(row, name, value)
            session.flush()
            return to_summary(row)

    def delete_conversation(self, conversation_id: str) -> list[str]:
        """Delete it with its messages, and every stored file no other message uses; return those files' sha256."""
        with self._write.begin() as session:
            row = self._conversation(session, conversation_id)
            used = select(MessageAttachmentRow.attachment_sha256).join(MessageRow).where(
                MessageRow.conversation_id == conversation_id
            )
            candidates = set(session.scalars(used).all())
            session.delete(row)
            session.flush()
            return delete_unlinked(session, self._blobs, candidates)
