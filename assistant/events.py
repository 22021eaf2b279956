"""The typed events a turn yields to its reader (the page, the API), in order: the question saved, waits, the
answer growing, the answer finished. Plain data; knows nothing of models, storage or pages.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.types import ConversationSummary, Message


@dataclass(frozen=True)
class UserTurnSaved:
    conversation: ConversationSummary
    message: Message


@dataclass(frozen=True)
class WaitingForModel:
    status: str


@dataclass(frozen=True)
class WaitingForTranscript:
    status: str  # the model hears audio as its transcript, which is still being made


@dataclass(frozen=True)
class Queued:
    ahead: int  # answers to finish before this one starts


@dataclass(frozen=True)
class ReplyDelta:
    text: str  # the whole answer so far


@dataclass(frozen=True)
class ReplyFinished:
    message: Message  # the answer as it ended, from memory: storing it may still be under way (see AnswerWriter)
    failure: BaseException | None = None  # why it ended in an error, for callers that tell faults apart


Event = UserTurnSaved | WaitingForModel | WaitingForTranscript | Queued | ReplyDelta | ReplyFinished
