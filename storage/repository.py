"""ConversationRepository: every read and write of conversations, messages and attachments.

Returns the domain types of domain.types, never ORM rows. Every write transaction takes SQLite's write
lock up front (see storage.database), so concurrent writers queue instead of racing.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from pydantic import ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, selectinload

from domain.errors import ConversationNotFound, InvalidInput, MessageNotFound
from domain.settings import AnswerDetails, GenerationSettings
from domain.types import INTERRUPTED, ConversationSummary, MediaFile, MediaKind, Message, Role, SearchHit, Status, StoredFile
from storage.blobs import BlobStore, StoredBlob
from storage.database import Database, utc_now
from storage.exchange import ExportedConversation, ImportedConversation, ImportedMessage
from storage.records import LEAF, Leaf, Tree, attach, branch, to_message, to_summary
from storage.schema import AttachmentRow, ConversationRow, MessageAttachmentRow, MessageRow
from storage.search import search_messages

log = logging.getLogger(__name__)

# Loads a message's attachments with it, in one extra query per batch.
_WITH_ATTACHMENTS = (
    selectinload(MessageRow.links).selectinload(MessageAttachmentRow.attachment).selectinload(AttachmentRow.transcript)
)


class NewTurn(NamedTuple):
    """A question just stored, with its conversation as it is now and, when asked for, its empty streaming answer."""

    conversation: ConversationSummary
    question: Message
    answer: Message | None


class ConversationRepository:
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

    def for_owner(self, owner: int | None) -> ConversationRepository:
        return ConversationRepository(self._database, self._blobs, owner, self._writer)

    def _owned(self):
        return ConversationRow.user_id.is_(None) if self._owner is None else ConversationRow.user_id == self._owner

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

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages whose text contains `query`, newest first (archived conversations included)."""
        return search_messages(self._read, query, self._owner, limit)

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
            return [attachment.sha256 for attachment in orphans]

    def get_conversation(self, conversation_id: str) -> ConversationSummary:
        with self._read() as session:
            return to_summary(self._conversation(session, conversation_id))

    def get_messages(self, conversation_id: str) -> list[Message]:
        """The active branch, root first: the path from the conversation's current leaf up to its first message."""
        with self._read() as session:
            conversation = self._conversation(session, conversation_id)
            tree = Tree(self._rows(session, conversation_id))
            return [self._message(row, tree) for row in branch(tree, conversation.current_leaf_id)]

    def get_tree(self, conversation_id: str) -> list[Message]:
        """Every message of the conversation, on every branch, in the order they were added."""
        with self._read() as session:
            self._conversation(session, conversation_id)
            tree = Tree(self._rows(session, conversation_id))
            return [self._message(row, tree) for row in tree.by_id.values()]

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

    def get_path(self, message_id: int) -> list[Message]:
        """The branch from the first message down to this one (what the model sees when answering it)."""
        with self._read() as session:
            row = self._message_row(session, message_id)
            tree = Tree(self._rows(session, row.conversation_id))
            return [self._message(r, tree) for r in branch(tree, message_id)]

    def get_message(self, message_id: int) -> Message:
        with self._read() as session:
            row = self._message_row(session, message_id)
            return self._message(row, Tree(self._rows(session, row.conversation_id)))

    def add_user_message(
        self,
        conversation_id: str | None,
        text: str,
        files: Sequence[MediaFile],
        *,
        new_title: str = "New chat",
        parent_id: int | None | Leaf = LEAF,
        settings: GenerationSettings | None = None,
    ) -> Message:
        """Store the files (once each, by content) and the message, in order, in one transaction.

        With no conversation id, the conversation titled `new_title` is created in that same transaction:
        a failure leaves neither an empty conversation nor files nothing refers to. `settings`, when given,
        become the conversation's.
        """
        return self._add_user_message(conversation_id, text, files, new_title, parent_id, settings).question

    def add_question(
        self,
        conversation_id: str | None,
        text: str,
        files: Sequence[MediaFile],
        *,
        new_title: str = "New chat",
        parent_id: int | None | Leaf = LEAF,
        settings: GenerationSettings | None = None,
        longer_parent_text: str | None = None,
    ) -> NewTurn:
        """As add_user_message, and an empty streaming answer to the question in the same transaction: the app
        stopping at any moment leaves either nothing or a question with an answer (that the next start marks as
        interrupted), never a question without one.

        `longer_parent_text`: the parent is an answer the app was interrupted writing, and a client holds more of it
        than was saved (the stored text starts its text); the parent keeps that longer text (see `_extend`)."""
        return self._add_user_message(conversation_id, text, files, new_title, parent_id, settings, True, longer_parent_text)

    def _add_user_message(
        self,
        conversation_id: str | None,
        text: str,
        files: Sequence[MediaFile],
        new_title: str,
        parent_id: int | None | Leaf,
        settings: GenerationSettings | None,
        with_answer: bool = False,
        longer_parent_text: str | None = None,
    ) -> NewTurn:
        stored: list[StoredBlob] = []
        try:
            # The write lock is held while the files are copied, so no other writer can link a blob
            # that a failure here is about to remove.
            with self._write.begin() as session:
                if conversation_id is None:
                    conversation = self._new_conversation(session, new_title, settings)
                else:
                    conversation = self._conversation(session, conversation_id)
                    if settings is not None:
                        conversation.settings = settings.model_dump(mode="json", exclude_none=True) or None
                if longer_parent_text is not None and isinstance(parent_id, int):
                    self._extend(session, conversation, parent_id, longer_parent_text)
                row = self._new_message(session, conversation, Role.USER, text, Status.COMPLETE, parent_id)
                for position, file in enumerate(files):
                    blob = self._blobs.put(file.path, file.mime)
                    stored.append(blob)
                    attach(session, row, position, blob, file.kind, file.mime, file.filename)
                session.flush()
                answer = None
                if with_answer:
                    answer = self._new_answer(session, conversation, row.id)
                session.refresh(row)
                return NewTurn(to_summary(conversation), self._message(row), answer)
        except BaseException:
            self._discard_unreferenced(stored)
            raise

    def _extend(self, session: Session, conversation: ConversationRow, message_id: int, text: str) -> None:
        """Give an interrupted answer the longer text a client received of it before the app stopped.

        Only an answer of this conversation marked interrupted, and only text that starts with what is stored: what
        was saved is never changed, and the marker stays, since the client's copy may have been cut off too."""
        row = session.get(MessageRow, message_id)
        if row is not None and row.conversation_id == conversation.id and row.content.strip().startswith(text.strip()):
            return  # another request kept as much or more of it already
        if (
            row is None
            or row.conversation_id != conversation.id
            or row.role != Role.ASSISTANT.value
            or (row.status, row.error) != (Status.ERROR.value, INTERRUPTED)
            or not text.strip().startswith(row.content.strip())
        ):
            raise InvalidInput("That answer cannot be continued from the text given for it.")
        row.content = text
        row.updated_at = utc_now()

    def export_conversations(self, conversation_ids: Sequence[str] | None = None) -> list[ExportedConversation]:
        """Whole trees (every branch), with settings and answer details; all conversations when no ids are given."""
        with self._read() as session:
            query = select(ConversationRow).where(self._owned()).order_by(ConversationRow.created_at)
            if conversation_ids is not None:
                query = query.where(ConversationRow.id.in_(conversation_ids))
            conversations = session.scalars(query).all()
            if conversation_ids is not None and len(conversations) != len(set(conversation_ids)):
                raise ConversationNotFound("Some of those conversations do not exist.")
            exported = []
            for row in conversations:
                tree = Tree(self._rows(session, row.id))
                exported.append(
                    ExportedConversation(
                        id=row.id,
                        title=row.title,
                        created_at=row.created_at,
                        updated_at=row.updated_at,
                        pinned=bool(row.pinned),
                        archived=bool(row.archived),
                        settings=row.settings,
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
                    conversation = self._new_conversation(session, imported.title or "Imported chat")
                    conversation.pinned, conversation.archived = imported.pinned, imported.archived
                    conversation.settings = GenerationSettings.model_validate(imported.settings or {}).model_dump(
                        mode="json", exclude_none=True
                    ) or None
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
        except ValidationError as error:
            self._discard_unreferenced(stored)
            raise InvalidInput(f"The export holds settings or answer details of an unknown shape ({error.errors()[0]['msg']}).") from None
        except BaseException:
            self._discard_unreferenced(stored)
            raise

    @staticmethod
    def _insert_messages(
        session: Session, conversation: ConversationRow, messages: Sequence[ImportedMessage]
    ) -> tuple[list[int], dict[str, int]]:
        """The messages of a conversation this transaction creates, in two statements rather than several per
        message (_new_message's locking and re-reading are for conversations others can reach; at a few per
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
                "details": AnswerDetails.model_validate(message.details).model_dump(mode="json") if message.details else None,
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

    def start_assistant_message(self, conversation_id: str, parent_id: int | None | Leaf = LEAF) -> Message:
        """An empty, streaming answer to `parent_id` (by default the current leaf); it becomes the leaf."""
        with self._write.begin() as session:
            conversation = self._conversation(session, conversation_id)
            return self._new_answer(session, conversation, parent_id)

    def _new_answer(self, session: Session, conversation: ConversationRow, parent_id: int | None | Leaf) -> Message:
        """An empty answer, streaming, written by this instance; the newest of its question's versions."""
        row = self._new_message(session, conversation, Role.ASSISTANT, "", Status.STREAMING, parent_id, writer=self._writer)
        versions = session.scalar(
            select(func.count()).where(
                MessageRow.conversation_id == conversation.id,
                MessageRow.parent_id.is_(None) if row.parent_id is None else MessageRow.parent_id == row.parent_id,
                MessageRow.role == Role.ASSISTANT.value,
            )
        )
        return dataclasses.replace(self._message(row), version=versions, versions=versions)

    def edit_user_message(self, message_id: int, text: str) -> Message:
        """A new version of a user message: same parent, same files, new text; the new branch becomes current."""
        return self._edit_user_message(message_id, text).question

    def edit_question(self, message_id: int, text: str) -> NewTurn:
        """As edit_user_message, and an empty streaming answer to the new version in the same transaction."""
        return self._edit_user_message(message_id, text, with_answer=True)

    def _edit_user_message(self, message_id: int, text: str, with_answer: bool = False) -> NewTurn:
        with self._write.begin() as session:
            original = self._message_row(session, message_id)
            if original.role != Role.USER.value:
                raise InvalidInput("Only your own messages can be edited.")
            conversation = self._conversation(session, original.conversation_id)
            row = self._new_message(session, conversation, Role.USER, text, Status.COMPLETE, original.parent_id)
            for link in original.links:
                row.links.append(
                    MessageAttachmentRow(position=link.position, attachment_sha256=link.attachment_sha256, filename=link.filename)
                )
            session.flush()
            answer = self._new_answer(session, conversation, row.id) if with_answer else None
            session.refresh(row)
            return NewTurn(to_summary(conversation), self._message(row), answer)

    def switch_version(self, message_id: int, step: int) -> None:
        """Show the message `step` versions before or after this one (an edit or regeneration), with its latest branch."""
        with self._write.begin() as session:
            row = self._message_row(session, message_id)
            tree = Tree(self._rows(session, row.conversation_id))
            siblings = tree.children(row.parent_id, row.role)
            index = siblings.index(row) + step
            if not 0 <= index < len(siblings):
                return
            leaf = siblings[index]
            while children := tree.children(leaf.id):
                leaf = children[-1]  # the most recent continuation
            self._conversation(session, row.conversation_id).current_leaf_id = leaf.id

    def fork(self, message_id: int) -> ConversationSummary:
        """A new conversation holding the active path up to and including this message (files shared, not copied)."""
        with self._write.begin() as session:
            row = self._message_row(session, message_id)
            source = self._conversation(session, row.conversation_id)
            tree = Tree(self._rows(session, row.conversation_id))
            fork = self._new_conversation(session, f"{source.title} (fork)")
            fork.settings = source.settings
            session.flush()
            parent_id = None
            for original in branch(tree, message_id):
                copy = self._new_message(
                    session, fork, Role(original.role), original.content, Status(original.status), parent_id, original.error
                )
                for link in original.links:
                    copy.links.append(
                        MessageAttachmentRow(position=link.position, attachment_sha256=link.attachment_sha256, filename=link.filename)
                    )
                session.flush()
                parent_id = copy.id
            return to_summary(fork)

    def update_message_text(self, message_id: int, text: str) -> None:
        with self._write.begin() as session:
            session.execute(update(MessageRow).where(MessageRow.id == message_id).values(content=text, updated_at=utc_now()))

    def finish_message(
        self, message_id: int, text: str, status: Status, error: str | None = None, details: AnswerDetails | None = None
    ) -> None:
        with self._write.begin() as session:
            session.execute(
                update(MessageRow)
                .where(MessageRow.id == message_id)
                .values(
                    content=text,
                    status=status.value,
                    error=error,
                    details=details.model_dump(mode="json") if details else None,
                    updated_at=utc_now(),
                    writer=None,
                )
            )

    def set_settings(self, conversation_id: str, settings: GenerationSettings) -> ConversationSummary:
        return self._change(conversation_id, settings=settings.model_dump(mode="json", exclude_none=True) or None)

    def _conversation(self, session: Session, conversation_id: str) -> ConversationRow:
        row = session.get(ConversationRow, conversation_id)
        if row is None or row.user_id != self._owner:
            raise ConversationNotFound(f"Conversation {conversation_id} does not exist.")
        return row

    def _new_conversation(self, session: Session, title: str, settings: GenerationSettings | None = None) -> ConversationRow:
        now = utc_now()
        row = ConversationRow(id=uuid.uuid4().hex, title=title[:200], created_at=now, updated_at=now, user_id=self._owner)
        if settings is not None:
            row.settings = settings.model_dump(mode="json", exclude_none=True) or None
        session.add(row)
        return row

    def _new_message(
        self,
        session: Session,
        conversation: ConversationRow,
        role: Role,
        text: str,
        status: Status,
        parent_id: int | None | Leaf = LEAF,
        error: str | None = None,
        writer: str | None = None,
    ) -> MessageRow:
        """Append a message under `parent_id` (LEAF: the current leaf) and make it the conversation's leaf."""
        # Writers to one conversation take turns: on PostgreSQL (several app instances) the row lock, re-reading
        # the current leaf under it; SQLite's BEGIN IMMEDIATE already holds the whole database.
        session.flush()
        session.refresh(conversation, with_for_update=True)
        last = session.scalar(select(func.max(MessageRow.position)).where(MessageRow.conversation_id == conversation.id))
        now = utc_now()
        row = MessageRow(
            conversation_id=conversation.id,
            position=0 if last is None else last + 1,
            parent_id=conversation.current_leaf_id if parent_id is LEAF else parent_id,
            role=role.value,
            content=text,
            status=status.value,
            error=error,
            created_at=now,
            updated_at=now,
            writer=writer,
        )
        session.add(row)
        session.flush()
        conversation.current_leaf_id = row.id
        conversation.updated_at = now
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
            raise MessageNotFound(f"Message {message_id} does not exist.")
        return row

    def _message(self, row: MessageRow, tree: Tree | None = None) -> Message:
        return to_message(row, self._blobs, tree)
