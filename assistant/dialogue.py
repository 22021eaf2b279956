"""DialogueManager: one user turn, from validation to a saved, streamed answer.

Order of work: validate, save the user's message and files, wait for the model, stream the answer
(saved at least every SAVE_INTERVAL_S), finalize it as complete, stopped or error. Knows nothing of
Gradio or SQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import AssistantError
from assistant.media import MediaLoader
from assistant.model_host import ModelHost, Phase
from assistant.prompt import build_model_input
from assistant.types import ConversationSummary, Message, Status
from assistant.validation import validate_turn
from storage.repository import ConversationRepository, make_title

SAVE_INTERVAL_S = 1.0
WAIT_POLL_S = 0.5


@dataclass(frozen=True)
class UserTurnSaved:
    conversation: ConversationSummary
    message: Message


@dataclass(frozen=True)
class WaitingForModel:
    status: str


@dataclass(frozen=True)
class ReplyDelta:
    text: str  # the whole answer so far


@dataclass(frozen=True)
class ReplyFinished:
    message: Message


Event = UserTurnSaved | WaitingForModel | ReplyDelta | ReplyFinished


class DialogueManager:
    def __init__(self, repository: ConversationRepository, host: ModelHost, media: MediaLoader, system_prompt: str | None = None):
        self.repository = repository
        self.host = host
        self.media = media
        self.system_prompt = system_prompt

    def send(
        self,
        conversation_id: str | None,
        text: str,
        uploads: Sequence[tuple[Path, str]],
        stop: threading.Event,
    ) -> Iterator[Event]:
        """Raises InvalidInput before saving anything; after that, every outcome ends in ReplyFinished."""
        files = validate_turn(text, uploads)
        if conversation_id is None:
            conversation = self.repository.create_conversation(make_title(text, files))
        else:
            conversation = self.repository.get_conversation(conversation_id)
        user = self.repository.add_user_message(conversation.id, text, files)
        yield UserTurnSaved(self.repository.get_conversation(conversation.id), user)

        while not self.host.wait(WAIT_POLL_S):
            if stop.is_set():
                break
            yield WaitingForModel(self.host.state.message)
        yield from self._answer(conversation.id, stop)

    def _answer(self, conversation_id: str, stop: threading.Event) -> Iterator[Event]:
        reply = self.repository.start_assistant_message(conversation_id)
        text, status, error = "", Status.COMPLETE, None
        last_save = time.monotonic()
        try:
            engine = self.host.engine
            if stop.is_set():
                status = Status.STOPPED
            elif self.host.state.phase is not Phase.READY or engine is None:
                status, error = Status.ERROR, self.host.state.message
            else:
                history = self.repository.get_messages(conversation_id)
                model_input = build_model_input(history, self.media, self.system_prompt)
                for chunk in engine.stream(model_input, stop):
                    text += chunk
                    if time.monotonic() - last_save >= SAVE_INTERVAL_S:
                        self.repository.update_message_text(reply.id, text)
                        last_save = time.monotonic()
                    yield ReplyDelta(text)
                if stop.is_set():
                    status = Status.STOPPED
        except AssistantError as failure:
            status, error = Status.ERROR, str(failure)
        except GeneratorExit:
            status = Status.STOPPED  # the page went away mid-answer: keep what was said
            raise
        except Exception as failure:
            status, error = Status.ERROR, f"Something went wrong while answering: {type(failure).__name__}: {failure}"
            raise
        finally:
            self.repository.finish_message(reply.id, text, status, error)
        yield ReplyFinished(self.repository.get_message(reply.id))
