"""One answer to a stored question, from an empty message to a finished one.

Order of work: wait for the model to load, for the transcripts a model without ears hears, and for the turn's place
in the queue; build the inputs and fit them into the context; stream the answer (saved at most every
SAVE_INTERVAL_S, without the stream ever waiting for a write); finish it as complete, stopped or error. Every way
out, an unexpected exception or a reader that goes away included, ends in a finished answer (assistant/answer_writer
keeps trying to store it while the disk or the database is at fault). Knows engines only by their contract
(assistant.engine_contract); knows nothing of Gradio or SQL: the repository is handed in with each turn.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from assistant.answer_writer import AnswerWriter
from assistant.budget import fit
from assistant.engine_contract import Engine, EngineInfo, GenerationReport
from assistant.events import Event, Queued, ReplyDelta, ReplyFinished, UserTurnSaved, WaitingForModel, WaitingForTranscript
from assistant.media import MediaLoader
from assistant.model_host import ModelHost, Phase
from assistant.prompt import build_model_input
from assistant.turn_queue import Ticket, TurnQueue
from domain import limits
from domain.errors import AssistantError, ConversationBusy
from domain.i18n import Text, t
from domain.settings import AnswerDetails, GenerationSettings
from domain.types import ConversationSummary, Message, Status

if TYPE_CHECKING:
    from assistant.transcribe import Transcriber
    from storage.repository import ConversationRepository, NewTurn

log = logging.getLogger(__name__)

WAIT_POLL_S = 0.5
# How soon Stop takes effect on a queued turn.
QUEUE_POLL_S = 0.1
# What an answer that failed for a reason of the app's own says (the reason goes to the log).
ANSWER_FAILED = t("answer.failed")


@dataclass(frozen=True)
class PendingTurn:
    """A stored question and its empty, streaming answer (as storage's NewTurn)."""

    conversation: ConversationSummary
    question: Message
    answer: Message


def answer_details(
    info: EngineInfo, settings: GenerationSettings, report: GenerationReport, status: Status, left_out: Sequence[Text] = ()
) -> AnswerDetails:
    if status is Status.ERROR:
        finish = "error"
    elif status is Status.STOPPED:
        finish = "stopped"
    else:
        finish = "length" if report.hit_length_limit else "finished"
    used = settings.model_copy(update={"max_new_tokens": report.max_new_tokens or settings.max_new_tokens})
    return AnswerDetails(
        model=info.model,
        quant=info.quant,
        settings=used,
        prompt_tokens=report.prompt_tokens,
        cached_tokens=report.cached_tokens,
        answer_tokens=report.answer_tokens,
        first_token_s=report.first_token_s,
        tokens_per_s=report.tokens_per_s,
        finish=finish,
        left_out=tuple(left_out),
    )


class Answering:
    """Answers turns with the shared model; knows which conversations have answers in progress (branches: several)."""

    def __init__(
        self,
        host: ModelHost,
        media: MediaLoader,
        queue: TurnQueue,
        system_prompt: str | None = None,
        transcriber: Transcriber | None = None,
    ):
        self.host = host
        self.media = media
        self.queue = queue
        self.system_prompt = system_prompt
        self.transcriber = transcriber
        self._answering: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def none_answering(self, conversation_id: str, what_to_do: Text) -> Iterator[None]:
        """ConversationBusy if one of the conversation's answers is being written; else no answer to it starts until
        the block ends."""
        with self._lock:
            if self._answering[conversation_id]:
                raise ConversationBusy(t("conversation.busy", what_to_do=what_to_do))
            yield

    def refuse_if_answering(self, conversation_id: str, what_to_do: Text) -> None:
        """ConversationBusy if one of the conversation's answers is being written now."""
        with self.none_answering(conversation_id, what_to_do):
            pass

    def run(
        self,
        repository: ConversationRepository,
        turn: NewTurn | PendingTurn,
        stop: threading.Event,
        first_token: threading.Event | None = None,
        stop_strings: tuple[str, ...] = (),
        first: Callable[[], None] | None = None,
    ) -> Iterator[Event]:
        """UserTurnSaved, then the answer written into `turn.answer` (stored, streaming). Every way out, an exception
        or a reader that closes the generator at any of its steps included, finishes that answer.

        `first_token` is set once the answer has its first token, or has ended (or been abandoned) without one.
        `first` runs before anything else, where a failure of it too ends the answer."""
        question, reply = turn.question, turn.answer
        first_token = first_token or threading.Event()
        writer = AnswerWriter(repository, reply.id, limits.SAVE_INTERVAL_S)
        answer = _Answer()
        with self._lock:
            self._answering[question.conversation_id] += 1
        try:
            if first is not None:
                first()
            yield UserTurnSaved(turn.conversation, question)
            while not self.host.wait(WAIT_POLL_S):
                if stop.is_set():
                    break
                yield WaitingForModel(self.host.state.message)
            yield from self._write_answer(repository, question, reply, stop, first_token, writer, answer, stop_strings)
        except AssistantError as failure:
            answer.end(Status.ERROR, failure.text, failure)  # kept by key: the page says it in its reader's language
        except GeneratorExit:
            answer.status = Status.STOPPED  # the page went away mid-answer: keep what was said
            raise
        except Exception as failure:  # a bug or a broken dependency: the turn still ends, saved and shown
            log.exception("answering failed")
            answer.end(Status.ERROR, ANSWER_FAILED, failure)
        finally:
            first_token.set()  # also when it failed or stopped before a token: Whisper may go on
            with self._lock:
                self._answering[question.conversation_id] -= 1
                if not self._answering[question.conversation_id]:
                    del self._answering[question.conversation_id]
            writer.finish(answer.text, answer.status, answer.error, answer.details)
        message = dataclasses.replace(
            reply, text=answer.text, status=answer.status, error=answer.error, details=answer.details
        )
        yield ReplyFinished(message, answer.failure)

    def _write_answer(
        self,
        repository: ConversationRepository,
        question: Message,
        reply: Message,
        stop: threading.Event,
        first_token: threading.Event,
        writer: AnswerWriter,
        answer: _Answer,
        stop_strings: tuple[str, ...] = (),
    ) -> Iterator[Event]:
        """Stream the answer into `answer` (and `writer`); the caller finishes it, whatever happens here."""
        ticket: Ticket | None = None
        engine: Engine | None = self.host.engine
        try:
            if stop.is_set():
                answer.status = Status.STOPPED
                return
            if self.host.state.phase is not Phase.READY or engine is None:
                answer.end(Status.ERROR, self.host.state.message)
                return
            settings = repository.get_conversation(question.conversation_id).settings
            yield from self._wait_for_transcripts(repository, question, stop)
            ticket = self.queue.join()
            yield from self._wait_for_turn(ticket, stop)
            if stop.is_set():
                answer.status = Status.STOPPED
                return
            # Built only now: a queued turn holds no decoded media or tensors while it waits. The answer's own path:
            # its question and what that hangs under, never another branch of the conversation.
            history = repository.get_path(reply.id)
            system_prompt = settings.system_prompt or self.system_prompt

            def build(fitting):
                return build_model_input(history, self.media, system_prompt, engine.family, fitting)

            limit = engine.context_tokens - engine.answer_budget(settings)
            family = engine.family
            model_input, left_out = fit(
                history, build, engine.prepare_prompt, limit, family.hears(), family.video_max_frames,
                family.fixed_video_rate(),
            )
            report = GenerationReport()
            answer.details_from = lambda status: answer_details(engine.info, settings, report, status, left_out)
            for chunk in engine.stream(
                model_input,
                stop,
                ticket.release,
                settings,
                report,
                reuse_key=question.conversation_id,
                stop_strings=stop_strings,
            ):
                first_token.set()
                answer.text += chunk
                writer.update(answer.text)
                yield ReplyDelta(answer.text)
            if stop.is_set():
                answer.status = Status.STOPPED
        finally:
            if ticket is not None:
                ticket.release()

    def _wait_for_transcripts(
        self, repository: ConversationRepository, question: Message, stop: threading.Event
    ) -> Iterator[WaitingForTranscript]:
        """A model without an audio tower hears audio as its transcript, so its answer waits for them."""
        family = self.host.family
        if self.transcriber is None or family is None or family.hears():
            return
        shown = None
        for message in repository.get_path(question.id):
            for attachment in message.attachments:
                while not self.transcriber.wait(attachment.sha256, QUEUE_POLL_S):
                    if stop.is_set():
                        return
                    if self.transcriber.state.message != shown:
                        shown = self.transcriber.state.message
                        yield WaitingForTranscript(shown)

    def _wait_for_turn(self, ticket: Ticket, stop: threading.Event) -> Iterator[Queued]:
        shown = 0
        while not ticket.wait(QUEUE_POLL_S if shown else 0):
            if stop.is_set():
                return
            place = ticket.place
            if place != shown:
                shown = place
                yield Queued(place)


class _Answer:
    """An answer as it is being made: the text so far and how it ended."""

    def __init__(self):
        self.text = ""
        self.status = Status.COMPLETE
        self.error: Text | str | None = None
        self.failure: BaseException | None = None
        self.details_from = None  # status -> AnswerDetails, once generation has started

    def end(self, status: Status, error: Text | str | None, failure: BaseException | None = None) -> None:
        self.status, self.error, self.failure = status, error, failure

    @property
    def details(self) -> AnswerDetails | None:
        return self.details_from(self.status) if self.details_from is not None else None
