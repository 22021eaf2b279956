"""ConversationRepository: every read and write of one owner's conversations, messages and attachments, in one
object built from its parts (each shares storage.owned's owner scoping):

- storage.conversations: a conversation as a whole (list, search, rename, pin, archive, settings, delete);
- storage.tree: its messages as a tree (branches, questions and answers, edits, versions, forks);
- storage.transfer: whole conversations in and out, for export and import;
- storage.cleanup: stored files removed as the rows that link them go.
"""

from __future__ import annotations

from storage.conversations import Conversations
from storage.transfer import Transfer
from storage.tree import MessageTree, NewTurn

__all__ = ["ConversationRepository", "NewTurn"]


class ConversationRepository(Conversations, MessageTree, Transfer):
    """Seen by one owner (see storage.owned.OwnedRows); `for_owner` gives the same repository for another."""
