"""DialogueManager: one user turn, from validation to a saved, streamed answer.

Order of work: validate, save the user's message and files with an empty answer to it (one transaction), wait
for the model to load, wait for the turn's place in the queue, build the inputs, stream the answer (saved at most
every SAVE_INTERVAL_S, without the stream ever waiting for a write), finalize it as complete, stopped or error.
Once the user's message is saved, every outcome, an unexpected exception or a reader that goes away included, ends
in a finished answer (assistant/answer_writer.py keeps trying to store it while the disk or the database is at
fault). Knows nothing of Gradio or SQL; the repository is handed in.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from assistant.answer_writer import AnswerWriter
from assistant.budget import fit
from assistant.continuation import Continuation, Turn, find_continuation
from assistant.engine import EngineInfo, GenerationReport
from assistant.media import MediaLoader
from assistant.model_host import ModelHost, Phase
from assistant.prompt import build_model_input
from assistant.turn_queue import Ticket, TurnQueue
from assistant.validation import clean_text, validate_text, validate_turn
from domain import limits
from domain.errors import AssistantError, ConversationBusy, InvalidInput
from domain.settings import AnswerDetails, GenerationSettings
from domain.types import ConversationSummary, HistoryTurn, MediaFile, MediaKind, Message, Role, SearchHit, Status, StoredFile

if TYPE_CHECKING:
    from assistant.transcribe import Transcriber

if TYPE_CHECKING:
    from storage.interchange import ExportedConversation, ImportSummary
    from storage.repository import ConversationRepository, NewTurn

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 1.0
WAIT_POLL_S = 0.5
# How soon Stop takes effect on a queued turn.
QUEUE_POLL_S = 0.1
TITLE_CHARS = 60
# What an answer that failed for a reason of the app's own says (the reason goes to the log).
ANSWER_FAILED = (
    "The answer failed because of a fault in the app; the details are in its log. "
    "Ask again; if it keeps failing, tell whoever runs the app."
)


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


def answer_details(
    info: EngineInfo, settings: GenerationSettings, report: GenerationReport, status: Status, left_out: Sequence[str] = ()
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


def make_title(text: str, files: Sequence[MediaFile]) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not line:
        line = files[0].filename if files else "New chat"
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class DialogueManager:
    def __init__(
        self,
        repository: ConversationRepository,
        host: ModelHost,
        media: MediaLoader,
        queue: TurnQueue,
        system_prompt: str | None = None,
        transcriber: Transcriber | None = None,
        max_audio_seconds: float = limits.MAX_AUDIO_SECONDS,
    ):
        self.repository = repository
        self.host = host
        self.media = media
        self.queue = queue
        self.system_prompt = system_prompt
        self.transcriber = transcriber  # None: transcripts are off
        self.max_audio_seconds = max_audio_seconds
        self._answering: Counter[str] = Counter()  # conversations with answers in progress (branches: several)
        self._answering_lock = threading.Lock()

    def for_owner(self, owner: int | None) -> DialogueManager:
        """This manager as one user sees it: their conversations only; the model, queue and media are shared."""
        view = copy.copy(self)
        view.repository = self.repository.for_owner(owner)
        return view

    # --- the few queries and changes the page needs besides a turn ---

    def list_conversations(self, archived: bool = False) -> list[ConversationSummary]:
        return self.repository.list_conversations(archived=archived)

    def get_conversation(self, conversation_id: str) -> ConversationSummary:
        return self.repository.get_conversation(conversation_id)

    def get_messages(self, conversation_id: str) -> list[Message]:
        """The active branch; audio in it that has no transcript yet (an earlier run ended first) gets one queued."""
        messages = self.repository.get_messages(conversation_id)
        self._transcribe(messages)
        return messages

    def accepts(self) -> frozenset[MediaKind]:
        """What a message may carry besides text: what the model takes, and audio as a transcript if it cannot hear."""
        family = self.host.family
        if family is None:
            return frozenset(MediaKind)
        return family.accepts | ({MediaKind.AUDIO} if self.transcriber is not None else set())

    def transcript_pending(self, messages: Sequence[Message]) -> bool:
        return self.transcriber is not None and any(
            self.transcriber.is_pending(a.sha256) for m in messages for a in m.attachments
        )

    def set_settings(self, conversation_id: str, settings: GenerationSettings) -> ConversationSummary:
        return self.repository.set_settings(conversation_id, settings)

    def export(self, conversation_ids: Sequence[str] | None = None) -> list[ExportedConversation]:
        return self.repository.export_conversations(conversation_ids)

    def store_history(self, turns: Sequence[HistoryTurn], title: str, settings: GenerationSettings) -> ConversationSummary:
        """A new conversation holding an API client's history, none of ours holding it; its files already checked."""
        return self.repository.store_history(turns, title, settings)

    def import_archive(self, source: Path | BinaryIO, scratch: Path | None = None) -> ImportSummary:
        """An export (ours, ChatGPT's, Open WebUI's), its files checked as uploads are: see assistant.imports."""
        from assistant.imports import import_archive

        return import_archive(source, self.repository.import_conversations, self.max_audio_seconds, scratch)

    def attachment_file(self, sha256: str) -> StoredFile | None:
        """The stored file, if one of this user's messages links it."""
        return self.repository.attachment_file(sha256)

    def continuation_of(
        self, system_prompt: str | None, turns: Sequence[Turn], within: str | None = None
    ) -> Continuation | None:
        """The stored message whose path (on any branch) is exactly these (role, text, attachment sha256s) turns,
        under this system prompt: where a stateless client (the API) that sends the whole history left off. A
        question hangs under it whatever the conversation shows meanwhile, so clients continuing one conversation
        at once each make a branch of it.

        The last turn, when it is an answer, may also be longer than a stored answer the app was interrupted
        writing (the client received more than was saved before the app stopped). `within`: only in that
        conversation."""
        if not turns:
            return None
        candidates = [within] if within is not None else self.repository.conversations_starting_with(clean_text(turns[0][1]))
        for conversation_id in candidates:
            conversation = self.repository.get_conversation(conversation_id)
            if (conversation.settings.system_prompt or None) != (system_prompt or None):
                continue
            found = find_continuation(self.repository.get_tree(conversation_id), turns)
            if found is not None:
                return found
        return None

    def get_path(self, message_id: int) -> list[Message]:
        """The branch from the first message down to this one."""
        return self.repository.get_path(message_id)

    def search(self, query: str) -> list[SearchHit]:
        return self.repository.search(query)

    def rename(self, conversation_id: str, title: str) -> ConversationSummary:
        return self.repository.rename_conversation(conversation_id, title)

    def set_pinned(self, conversation_id: str, pinned: bool) -> ConversationSummary:
        return self.repository.set_pinned(conversation_id, pinned)

    def set_archived(self, conversation_id: str, archived: bool) -> ConversationSummary:
        return self.repository.set_archived(conversation_id, archived)

    def delete(self, conversation_id: str) -> None:
        """Delete a conversation and the files only it used; refused while one of its answers is being written."""
        with self._answering_lock:  # held while deleting, so no answer can start meanwhile
            self._refuse_if_answering(conversation_id, "stop the answer first, then delete it")
            deleted_files = self.repository.delete_conversation(conversation_id)
        engine = self.host.engine
        if engine is not None and engine.reuse is not None:
            # Work derived from it goes with it: its KV cache, and the encoder outputs of files it alone held.
            engine.reuse.forget(conversation_id, deleted_files)

    def _refuse_if_answering(self, conversation_id: str, what_to_do: str) -> None:
        """Under _answering_lock: ConversationBusy if one of the conversation's answers is being written."""
        if self._answering[conversation_id]:
            raise ConversationBusy(f"This conversation is being answered; {what_to_do}.")

    def send(
        self,
        conversation_id: str | None,
        text: str,
        uploads: Sequence[tuple[Path, str]],
        stop: threading.Event,
        settings: GenerationSettings | None = None,
        stop_strings: tuple[str, ...] = (),
        after: Continuation | None = None,
    ) -> Iterator[Event]:
        """Raises InvalidInput before saving anything; after that, every outcome ends in ReplyFinished.

        `settings`, when given, become the conversation's (they travel with it from then on). `stop_strings` end
        this answer where one first appears (the API's `stop`). `after`: the question hangs under that message
        (its conversation's, whatever its current branch) instead of the conversation's current leaf.
        """
        text, files = validate_turn(text, uploads, self.max_audio_seconds)
        self._check_accepted(files)
        where = {}
        if after is not None:
            conversation_id = after.message.conversation_id
            where = {"parent_id": after.message.id, "longer_parent_text": after.longer_text}
        turn = self.repository.add_question(
            conversation_id, text, files, new_title=make_title(text, files), settings=settings, **where
        )
        first_token = threading.Event()

        def transcribe() -> None:
            # In the background. A model that hears audio never waits for the transcript, and Whisper waits for the
            # answer's first token so as not to slow its prefill; a model that hears the transcript waits for it.
            family = self.host.family
            self._transcribe([turn.question], not_before=first_token if family is None or family.hears() else None)

        yield from self._turn(turn, stop, first_token, stop_strings, transcribe)

    def regenerate(
        self, conversation_id: str, stop: threading.Event, settings: GenerationSettings | None = None
    ) -> Iterator[Event]:
        """A new answer to the last question of the active branch; the earlier answers stay as other versions."""
        if settings is not None:
            self.repository.set_settings(conversation_id, settings)
        conversation = self.repository.get_conversation(conversation_id)
        path = self.repository.get_messages(conversation_id)
        question = next((m for m in reversed(path) if m.role is Role.USER), None)
        if question is None:
            raise InvalidInput("There is no question in this conversation to answer again.")
        reply = self.repository.start_assistant_message(conversation_id, parent_id=question.id)
        yield from self._turn(_Turn(conversation, question, reply), stop)

    def edit(
        self, message_id: int, text: str, stop: threading.Event, settings: GenerationSettings | None = None
    ) -> Iterator[Event]:
        """A new version of one of the user's messages (its files kept), answered; the old branch stays reachable."""
        original = self.repository.get_message(message_id)
        if settings is not None:
            self.repository.set_settings(original.conversation_id, settings)
        text = validate_text(text, has_files=bool(original.attachments))
        yield from self._turn(self.repository.edit_question(message_id, text), stop)

    def _check_accepted(self, files: Sequence[MediaFile]) -> None:
        family, accepted = self.host.family, self.accepts()
        for file in files:
            if file.kind in accepted:
                continue
            if file.kind is MediaKind.AUDIO:
                why = f"audio, which {family.title} cannot hear, and audio transcripts are off (--whisper-model none)"
            else:
                why = f"an image, which {family.title} cannot see; it takes {family.describe_accepts()}"
            raise InvalidInput(f"“{file.filename}” is {why}.", file.filename)

    def _transcribe(self, messages: Sequence[Message], not_before: threading.Event | None = None) -> None:
        if self.transcriber is not None:
            self.transcriber.submit((a for m in messages for a in m.attachments), not_before)

    def switch_version(self, message_id: int, step: int) -> str:
        """Show another version of a message (and the branch after it); returns its conversation's id."""
        message = self.repository.get_message(message_id)
        with self._answering_lock:
            self._refuse_if_answering(message.conversation_id, "wait for it (or stop it) before switching versions")
        self.repository.switch_version(message_id, step)
        return message.conversation_id

    def fork(self, message_id: int) -> ConversationSummary:
        return self.repository.fork(message_id)

    def _turn(
        self,
        turn: NewTurn | _Turn,
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
        writer = AnswerWriter(self.repository, reply.id, SAVE_INTERVAL_S)
        answer = _Answer()
        with self._answering_lock:
            self._answering[question.conversation_id] += 1
        try:
            if first is not None:
                first()
            yield UserTurnSaved(turn.conversation, question)
            while not self.host.wait(WAIT_POLL_S):
                if stop.is_set():
                    break
                yield WaitingForModel(self.host.state.message)
            yield from self._write_answer(question, reply, stop, first_token, writer, answer, stop_strings)
        except AssistantError as failure:
            answer.end(Status.ERROR, str(failure), failure)
        except GeneratorExit:
            answer.status = Status.STOPPED  # the page went away mid-answer: keep what was said
            raise
        except Exception as failure:  # a bug or a broken dependency: the turn still ends, saved and shown
            log.exception("answering failed")
            answer.end(Status.ERROR, ANSWER_FAILED, failure)
        finally:
            first_token.set()  # also when it failed or stopped before a token: Whisper may go on
            with self._answering_lock:
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
        engine = self.host.engine
        try:
            if stop.is_set():
                answer.status = Status.STOPPED
                return
            if self.host.state.phase is not Phase.READY or engine is None:
                answer.end(Status.ERROR, self.host.state.message)
                return
            settings = self.repository.get_conversation(question.conversation_id).settings
            yield from self._wait_for_transcripts(question, stop)
            ticket = self.queue.join()
            yield from self._wait_for_turn(ticket, stop)
            if stop.is_set():
                answer.status = Status.STOPPED
                return
            # Built only now: a queued turn holds no decoded media or tensors while it waits. The answer's own path:
            # its question and what that hangs under, never another branch of the conversation.
            history = self.repository.get_path(reply.id)
            system_prompt = settings.system_prompt or self.system_prompt

            def build(fitting):
                return build_model_input(history, self.media, system_prompt, engine.family, fitting)

            limit = engine.context_tokens - engine.answer_budget(settings)
            model_input, left_out = fit(history, build, engine.count_tokens, limit, engine.family.hears())
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

    def _wait_for_transcripts(self, question: Message, stop: threading.Event) -> Iterator[WaitingForTranscript]:
        """A model without an audio tower hears audio as its transcript, so its answer waits for them."""
        family = self.host.family
        if self.transcriber is None or family is None or family.hears():
            return
        shown = None
        for message in self.repository.get_path(question.id):
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


@dataclass(frozen=True)
class _Turn:
    """A stored question and its empty, streaming answer (as storage's NewTurn)."""

    conversation: ConversationSummary
    question: Message
    answer: Message


class _Answer:
    """An answer as it is being made: the text so far and how it ended."""

    def __init__(self):
        self.text = ""
        self.status = Status.COMPLETE
        self.error: str | None = None
        self.failure: BaseException | None = None
        self.details_from = None  # status -> AnswerDetails, once generation has started

    def end(self, status: Status, error: str | None, failure: BaseException | None = None) -> None:
        self.status, self.error, self.failure = status, error, failure

    @property
    def details(self) -> AnswerDetails | None:
        return self.details_from(self.status) if self.details_from is not None else None
