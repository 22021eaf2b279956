"""Where a stateless client's history (the API's) ends in a stored conversation, on any of its branches.

Knows nothing of storage or HTTP: it looks at a conversation's messages, given as domain messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from assistant.validation import clean_text
from domain.types import Message, Role, Status, is_interrupted

Turn = tuple[Role, str, tuple[str, ...]]  # (role, text, the sha256 of each attached file)


@dataclass(frozen=True)
class Continuation:
    """Where a stateless client's history ends in a stored conversation: the message its last turn matched, and,
    when that is an answer the app was interrupted writing and the client received more of it than was saved,
    the client's longer text."""

    message: Message
    longer_text: str | None = None


def find_continuation(messages: Sequence[Message], turns: Sequence[Turn]) -> Continuation | None:
    """The message of `messages` (a conversation's, every branch) whose path from the root is `turns`, compared as
    they are saved (clean text, no surrounding space); on the newest branch where several are."""
    wanted = [_turn(role, text, shas) for role, text, shas in turns]
    children: dict[int | None, list[Message]] = {}
    for message in messages:
        children.setdefault(message.parent_id, []).append(message)
    level: list[Message | None] = [None]
    for depth, turn in enumerate(wanted):
        candidates = [child for parent in level for child in children.get(parent.id if parent else None, [])]
        level = [m for m in candidates if _signature(m) == turn]
        if not level and depth == len(wanted) - 1:
            extended = [m for m in candidates if _extends(m, turn)]
            if extended:
                return Continuation(max(extended, key=lambda m: m.id), clean_text(turns[-1][1]))
        if not level:
            return None
    return Continuation(max(level, key=lambda m: m.id))


def _turn(role: Role, text: str, shas: tuple[str, ...]) -> Turn:
    return role, clean_text(text).strip(), tuple(shas)


def _signature(message: Message) -> Turn:
    return _turn(message.role, message.text, tuple(a.sha256 for a in message.attachments))


def _extends(message: Message, turn: Turn) -> bool:
    """Whether `turn` is this interrupted answer with more text than was saved of it."""
    role, text, shas = turn
    return (
        role is Role.ASSISTANT
        and message.role is Role.ASSISTANT
        and message.status is Status.ERROR
        and is_interrupted(message.error)
        and not shas
        and text.startswith(clean_text(message.text).strip())
    )
