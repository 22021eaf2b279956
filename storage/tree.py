"""A conversation's messages as a tree: reading a branch or the whole tree, adding a question (with its empty answer),
an answer, an edited question or a client's whole history, streaming an answer's text into its row, switching
between versions and forking. Each write appends under a parent and moves the conversation's current leaf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from domain.errors import InvalidInput
from domain.i18n import t
from domain.i18n import Text
from domain.settings import AnswerDetails, GenerationSettings
from domain.types import ConversationSummary, MediaFile, Message, Role, Status, is_interrupted
from storage.blobs import StoredBlob
from storage.cleanup import discard_unreferenced
from storage.database import utc_now
from storage.owned import OwnedRows, settings_json
from storage.records import LEAF, Leaf, Tree, attach, branch, read_text, stored_details, stored_text, to_summary
from storage.schema import ConversationRow, MessageAttachmentRow, MessageRow


class NewTurn(NamedTuple):
    """A question just stored, with its conversation as it is now and, when asked for, its empty streaming answer."""

    conversation: ConversationSummary
    question: Message
    answer: Message | None


class MessageTree(OwnedRows):
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
                        conversation.settings = settings_json(settings)
                if longer_parent_text is not None and isinstance(parent_id, int):
                    self._extend(session, conversation, parent_id, longer_parent_text)
                row = self._new_message(session, conversation, Role.USER, text, Status.COMPLETE, parent_id)
                self._attach(session, row, files, stored)
                answer = None
                if with_answer:
                    answer = self._new_answer(session, conversation, row.id)
                session.refresh(row)
                return NewTurn(to_summary(conversation), self._message(row), answer)
        except BaseException:
            discard_unreferenced(self._write, self._blobs, stored)
            raise

    def _attach(self, session: Session, row: MessageRow, files: Sequence[MediaFile], stored: list[StoredBlob]) -> None:
        """Store the files (once each, by content) and link them to the message, in order. Each blob goes into
        `stored` as soon as it is written, for the caller to discard if the transaction fails."""
        for position, file in enumerate(files):
            blob = self._blobs.put(file.path, file.mime)
            stored.append(blob)
            attach(session, row, position, blob, file.kind, file.mime, file.filename)
        session.flush()

    def attach_speech(self, message_id: int, file: MediaFile) -> Message:
        """Keep `file` as the answer's spoken form; an answer that has one already keeps its own (two clicks at once)."""
        stored: list[StoredBlob] = []
        try:
            with self._write.begin() as session:
                row = self._message_row(session, message_id)
                if row.role != Role.ASSISTANT.value:
                    raise InvalidInput(t("speech.not_an_answer"))
                if not any(link.attachment.kind == file.kind.value for link in row.links):
                    blob = self._blobs.put(file.path, file.mime)
                    stored.append(blob)
                    attach(session, row, len(row.links), blob, file.kind, file.mime, file.filename)
                    session.flush()
                    session.refresh(row)
                return self._message(row, Tree(self._rows(session, row.conversation_id)))
        except BaseException:
            discard_unreferenced(self._write, self._blobs, stored)
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
            or row.status != Status.ERROR.value
            or not is_interrupted(read_text(row.error))
            or not text.strip().startswith(row.content.strip())
        ):
            raise InvalidInput(t("continue.mismatch"))
        row.content = text
        row.updated_at = utc_now()

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
                raise InvalidInput(t("edit.not_yours"))
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
        self, message_id: int, text: str, status: Status, error: Text | str | None = None, details: AnswerDetails | None = None
    ) -> None:
        with self._write.begin() as session:
            session.execute(
                update(MessageRow)
                .where(MessageRow.id == message_id)
                .values(
                    content=text,
                    status=status.value,
                    error=stored_text(error),
                    details=stored_details(details),
                    updated_at=utc_now(),
                    writer=None,
                )
            )

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
