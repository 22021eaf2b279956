"""DialogueManager: what the page and the API do with conversations, and one user turn from validation to a
saved question whose answer streams.

A turn is validated, then the user's message and files are saved with an empty answer to it (one transaction); the
answer is then written by assistant.answering, which finishes it whatever happens. Reads and changes besides a turn
go to the repository, for this user only (`for_owner`). Knows nothing of Gradio or SQL; the repository is handed in.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from assistant.answering import Answering, PendingTurn
from assistant.continuation import Continuation, Turn, find_continuation
from assistant.events import (
    Event,
    Queued,
    ReplyDelta,
    ReplyFinished,
    UserTurnSaved,
    WaitingForModel,
    WaitingForTranscript,
)
from assistant.media import MediaLoader
from assistant.model_host import ModelHost
from assistant.spoken_answers import SpokenAnswer, SpokenAnswers
from assistant.turn_queue import TurnQueue
from assistant.validation import clean_text, validate_text, validate_turn
from domain import limits
from domain.errors import InvalidInput, SpeechUnavailable
from domain.i18n import t
from domain.settings import GenerationSettings
from domain.types import ConversationSummary, HistoryTurn, MediaFile, MediaKind, Message, Role, SearchHit, StoredFile

if TYPE_CHECKING:
    from assistant.speech import Speech, SpeechEngine
    from assistant.transcribe import Transcriber
    from storage.interchange import ExportedConversation, ImportSummary
    from storage.repository import ConversationRepository

# The events a turn yields are defined in assistant.events; the page and the API take them from here too.
__all__ = [
    "DialogueManager", "Event", "Queued", "ReplyDelta", "ReplyFinished", "UserTurnSaved", "WaitingForModel",
    "WaitingForTranscript", "make_title",
]


def make_title(text: str, files: Sequence[MediaFile]) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not line:
        line = files[0].filename if files else "New chat"
    return line if len(line) <= limits.AUTO_TITLE_CHARS else line[: limits.AUTO_TITLE_CHARS - 1].rstrip() + "…"


class DialogueManager:
    def __init__(
        self,
        repository: ConversationRepository,
        host: ModelHost,
        media: MediaLoader,
        queue: TurnQueue,
        system_prompt: str | None = None,
        transcriber: Transcriber | None = None,
        speech: SpeechEngine | None = None,
        max_audio_seconds: float = limits.MAX_AUDIO_SECONDS,
        max_video_seconds: float = limits.MAX_VIDEO_SECONDS,
        max_video_bytes: int = limits.MAX_VIDEO_BYTES,
    ):
        self.repository = repository
        self.host = host
        self.queue = queue
        self.transcriber = transcriber  # None: transcripts are off
        self.speech = speech  # None: answers are not spoken
        self._spoken = SpokenAnswers(speech, media.audio) if speech is not None else None
        self.max_audio_seconds = max_audio_seconds
        self.max_video_seconds = max_video_seconds
        self.max_video_bytes = max_video_bytes  # a video file's own size limit (other files: limits.MAX_FILE_BYTES)
        self._answers = Answering(host, media, queue, system_prompt, transcriber)  # shared by every for_owner view

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

    def open_messages(self, conversation_id: str) -> list[Message]:
        """The active branch, to show: opening it also queues a transcript for each audio file in it that has none
        yet (an earlier run ended first)."""
        messages = self.repository.get_messages(conversation_id)
        self._queue_transcripts(messages)
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

    def speak(self, message_id: int, voice: str | None = None) -> SpokenAnswer:
        """The answer's spoken form (made once, then kept): see assistant.spoken_answers."""
        if self._spoken is None:
            raise SpeechUnavailable(t("speech.off"))
        return self._spoken.speak(self.repository, message_id, voice)

    def keep_speech(self, message_id: int, parts: list[Speech]) -> SpokenAnswer:
        """Store the sound a voice made for an answer while it streamed as the answer's spoken form."""
        if self._spoken is None:
            raise SpeechUnavailable(t("speech.off"))
        return self._spoken.keep(self.repository, message_id, parts)

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
        with self._answers.none_answering(conversation_id, t("conversation.busy.delete")):
            deleted_files = self.repository.delete_conversation(conversation_id)  # no answer can start meanwhile
        engine = self.host.engine
        if engine is not None:  # work derived from it goes with it (the files are those it alone held)
            engine.forget(conversation_id, deleted_files)

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
        videos = {"max_video_seconds": self.max_video_seconds, "max_video_bytes": self.max_video_bytes}
        text, files = validate_turn(text, uploads, self.max_audio_seconds, **videos)
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
            self._queue_transcripts([turn.question], not_before=first_token if family is None or family.hears() else None)

        yield from self._answers.run(self.repository, turn, stop, first_token, stop_strings, transcribe)

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
            raise InvalidInput(t("regenerate.no_question"))
        reply = self.repository.start_assistant_message(conversation_id, parent_id=question.id)
        yield from self._answers.run(self.repository, PendingTurn(conversation, question, reply), stop)

    def edit(
        self, message_id: int, text: str, stop: threading.Event, settings: GenerationSettings | None = None
    ) -> Iterator[Event]:
        """A new version of one of the user's messages (its files kept), answered; the old branch stays reachable."""
        original = self.repository.get_message(message_id)
        if settings is not None:
            self.repository.set_settings(original.conversation_id, settings)
        text = validate_text(text, has_files=bool(original.attachments))
        yield from self._answers.run(self.repository, self.repository.edit_question(message_id, text), stop)

    def _check_accepted(self, files: Sequence[MediaFile]) -> None:
        family, accepted = self.host.family, self.accepts()
        for file in files:
            if file.kind in accepted:
                continue
            if file.kind is MediaKind.VIDEO:
                raise InvalidInput(
                    t("video.not_accepted", name=file.filename, model=family.title, accepts=family.describe_accepts()),
                    file.filename,
                )
            if file.kind is MediaKind.AUDIO:
                why = t("file.not_heard", name=file.filename, model=family.title)
            else:
                why = t("file.not_seen", name=file.filename, model=family.title, accepts=family.describe_accepts())
            raise InvalidInput(why, file.filename)

    def _queue_transcripts(self, messages: Sequence[Message], not_before: threading.Event | None = None) -> None:
        if self.transcriber is not None:
            self.transcriber.submit((a for m in messages for a in m.attachments), not_before)

    def switch_version(self, message_id: int, step: int) -> str:
        """Show another version of a message (and the branch after it); returns its conversation's id."""
        message = self.repository.get_message(message_id)
        self._answers.refuse_if_answering(message.conversation_id, t("conversation.busy.switch"))
        self.repository.switch_version(message_id, step)
        return message.conversation_id

    def fork(self, message_id: int) -> ConversationSummary:
        return self.repository.fork(message_id)
