"""Conversations in and out of the database whole, for storage.exchange's zip: every branch of each tree with its
settings, answer details and files out; an export's conversations in, all in one transaction or none at all; and the
history an API client sends whole, stored as a new conversation the same way.
Knows nothing of the export's format (storage.exchange, storage.manifest and storage.foreign read and write it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from domain.errors import ConversationNotFound
from domain.i18n import t
from domain.settings import GenerationSettings
from domain.types import ConversationSummary, HistoryTurn, Status
from storage.blobs import StoredBlob
from storage.cleanup import discard_unreferenced
from storage.database import utc_now
from storage.interchange import ExportedConversation, ImportedConversation, ImportedMessage
from storage.owned import OwnedRows
from storage.records import Tree, attach, stored_details, to_summary
from storage.schema import ConversationRow, MessageRow


class Transfer(OwnedRows):
    def export_conversations(self, conversation_ids: Sequence[str] | None = None) -> list[ExportedConversation]:
        """Whole trees (every branch), with settings and answer details; all conversations when no ids are given."""
        with self._read() as session:
            query = select(ConversationRow).where(self._owned()).order_by(ConversationRow.created_at)
            if conversation_ids is not None:
                query = query.where(ConversationRow.id.in_(conversation_ids))
            conversations = session.scalars(query).all()
            if conversation_ids is not None and len(conversations) != len(set(conversation_ids)):
                raise ConversationNotFound(t("conversation.some_not_found"))
            exported = []
            for row in conversations:
                tree = Tree(self._rows(session, row.id))
                summary = to_summary(row)
                exported.append(
                    ExportedConversation(
                        id=row.id,
                        title=row.title,
                        created_at=row.created_at,
                        updated_at=row.updated_at,
                        pinned=summary.pinned,
                        archived=summary.archived,
                        settings=summary.settings,
                        current_leaf_id=row.current_leaf_id,
                        messages=[self._message(r, tree) for r in tree.by_id.values()],
                    )
                )
            return exported

    def import_conversations(self, conversations: Sequence[ImportedConversation]) -> list[ConversationSummary]:
        """Store them all in one transaction (new ids, the same trees and files), or nothing at all. Every file must
        have been checked (its kind and mime set by the assistant layer: assistant.imports)."""
        stored: list[StoredBlob] = []
        by_path: dict[Path, StoredBlob] = {}  # a file many messages hold is copied (and hashed) once
        try:
            with self._write.begin() as session:
                summaries = []
                for imported in conversations:
                    conversation = self._new_conversation(session, imported.title or "Imported chat", imported.settings)
                    conversation.pinned, conversation.archived = imported.pinned, imported.archived
                    session.flush()  # the conversation's row, before its messages refer to it
                    inserted, ids = self._insert_messages(session, conversation, imported.messages)
                    for message, message_id in zip(imported.messages, inserted):
                        if not message.files:
                            continue
                        row = session.get(MessageRow, message_id)
                        for position, file in enumerate(message.files):
                            if file.kind is None or file.mime is None:
                                raise ValueError(f"the imported file {file.filename!r} was not checked before storing")
                            if (blob := by_path.get(file.path)) is None:
                                blob = by_path[file.path] = self._blobs.put(file.path, file.mime)
                                stored.append(blob)
                            attach(session, row, position, blob, file.kind, file.mime, file.filename, file.transcript)
                    conversation.current_leaf_id = ids.get(imported.current_key or "", inserted[-1] if inserted else None)
                    conversation.created_at = imported.created_at or conversation.created_at
                    conversation.updated_at = imported.updated_at or conversation.updated_at
                    session.flush()
                    summaries.append(to_summary(conversation))
                    session.expunge_all()  # written: a session holding thousands of rows makes every flush slower
                return summaries
        except BaseException:
            discard_unreferenced(self._write, self._blobs, stored)
            raise

    def store_history(self, turns: Sequence[HistoryTurn], title: str, settings: GenerationSettings) -> ConversationSummary:
        """A new conversation holding `turns` as one branch, in one transaction: history an API client sent that no
        stored conversation holds. Their files must have been checked as a turn's are. The messages go in as an
        import's do, a few statements in all (a long history took seconds of the write lock at several per message)."""
        stored: list[StoredBlob] = []
        try:
            with self._write.begin() as session:
                conversation = self._new_conversation(session, title, settings)
                session.flush()
                chain = [ImportedMessage(str(i), str(i - 1) if i else None, t.role, t.text) for i, t in enumerate(turns)]
                inserted, _ = self._insert_messages(session, conversation, chain)
                for turn, message_id in zip(turns, inserted):
                    if turn.files:
                        row = session.get(MessageRow, message_id)
                        for position, file in enumerate(turn.files):
                            blob = self._blobs.put(file.path, file.mime)
                            stored.append(blob)
                            attach(session, row, position, blob, file.kind, file.mime, file.filename)
                conversation.current_leaf_id = inserted[-1] if inserted else None
                session.flush()
                return to_summary(conversation)
        except BaseException:
            discard_unreferenced(self._write, self._blobs, stored)
            raise

    @staticmethod
    def _insert_messages(
        session: Session, conversation: ConversationRow, messages: Sequence[ImportedMessage]
    ) -> tuple[list[int], dict[str, int]]:
        """The messages of a conversation this transaction creates, in two statements rather than several per
        message (storage.tree's locking and re-reading are for conversations others can reach; at a few per
        message, a large import held the database for minutes). Their ids in the order given, and by key."""
        now = utc_now()
        rows = [
            {
                "conversation_id": conversation.id,
                "position": position,
                "parent_id": None,
                "role": message.role.value,
                "content": message.text,
                "status": (Status.STOPPED if message.status is Status.STREAMING else message.status).value,
                "error": message.error,
                "details": stored_details(message.details),
                "created_at": message.created_at or now,
                "updated_at": message.created_at or now,
            }
            for position, message in enumerate(messages)
        ]
        if not rows:
            return [], {}
        inserted = session.scalars(insert(MessageRow).returning(MessageRow.id, sort_by_parameter_order=True), rows).all()
        ids: dict[str, int] = {}
        parents = []
        for message, message_id in zip(messages, inserted):
            # Only a message listed earlier can be a parent: a key that comes later (or never) makes a root, so
            # no export can make a cycle.
            if (parent := ids.get(message.parent_key or "")) is not None:
                parents.append({"id": message_id, "parent_id": parent})
            ids[message.key] = message_id
        if parents:
            session.execute(update(MessageRow), parents)
        return list(inserted), ids
