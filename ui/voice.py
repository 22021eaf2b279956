"""The page's hands-free voice mode: after one click the microphone stays open, the end of each question is found in the
browser (by loudness), the question is sent by itself as a recording through the composer (so it is stored, heard
and transcribed as any recording is), its answer is spoken sentence by sentence while it is written, and speaking
over the answer stops it and asks the new question (barge-in).

The browser's part is voice.js; the server's part is which sessions are in voice mode, the check that what was sent
is speech at all (assistant.vad), and the answer's sound as `VoiceOut` hands it to the page: mp3 pieces as data URLs
in a hidden textbox, each update holding the pieces not sent yet. Knows nothing of models or SQL.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from assistant.audio_encode import encode
from assistant.media import decode_audio
from assistant.speech import Speech, SpeechEngine, StreamSpeaker
from assistant.vad import SpeechDetector
from domain.errors import AssistantError, InvalidInput
from domain.i18n import ENGLISH, t
from domain.types import Status
from ui.uploads import discard_uploads

log = logging.getLogger(__name__)

# The name voice mode gives each question it records: the server checks those for speech.
QUESTION_FILENAME = "voice-question.wav"
# Silence after speech that ends a question, in the browser (ms): shorter cuts people off mid-thought.
END_OF_SPEECH_MS = 600
VOICE_JS = Path(__file__).with_name("voice.js")


class VoiceSessions:
    """Which browser sessions are in voice mode (by Gradio's session hash), and their questions' check."""

    def __init__(self, detector: SpeechDetector | None = None):
        self._on: set[str] = set()
        self._prepared = False  # the voice is readied once, when voice mode is first turned on
        self._lock = threading.Lock()
        self.detector = detector or SpeechDetector()

    def set_mode(self, action: str, session: str, speech: SpeechEngine | None = None) -> None:
        """`action` is "on:NONCE" or "off:NONCE", as the page script writes it. Turning it on readies the voice
        meanwhile, so that the first answer does not wait for it to load."""
        on = action.startswith("on:")
        with self._lock:
            (self._on.add if on else self._on.discard)(session)
            prepare = on and speech is not None and not self._prepared
            self._prepared = self._prepared or prepare
        if prepare:
            threading.Thread(target=_prepare, args=(speech,), name="voice-prepare", daemon=True).start()

    def forget_page(self, request: gr.Request) -> None:
        """A page closed: its session is out of voice mode."""
        with self._lock:
            self._on.discard(request.session_hash)

    def active(self, session: str) -> bool:
        with self._lock:
            return session in self._on

    def out_for(
        self, dialogue, session: str, stop: threading.Event | None, voice: str | None = None, language: str = ENGLISH
    ) -> VoiceOut | None:
        """The answer's sound for a session in voice mode (in `voice`, else the default; its failure said in
        `language`); None outside voice mode, or when the app has no voice."""
        if dialogue.speech is None or stop is None or not self.active(session):
            return None
        return VoiceOut(dialogue.speech, voice or dialogue.speech.default_voice, stop, uuid.uuid4().hex, language)

    def check(self, paths: list[str], max_seconds: float) -> None:
        """Refuse a voice-mode question that holds no speech (a door, a cough, a fan), its recording discarded. Only
        its first `max_seconds` are decoded: a longer one is refused by the turn's own check anyway."""
        for path in paths:
            if Path(path).name != QUESTION_FILENAME:
                continue
            try:
                heard = self.detector.has_speech(decode_audio(Path(path), max_seconds=max_seconds + 1))
            except InvalidInput:
                continue  # the turn's own validation names what is wrong with the file
            if not heard:
                discard_uploads([path])
                raise InvalidInput(t("voice.only_noise"), QUESTION_FILENAME)


class VoiceOut:
    """One answer's sound for the page, spoken while the answer streams (assistant.speech.StreamSpeaker)."""

    def __init__(self, engine: SpeechEngine, voice: str, stop: threading.Event, turn: str, language: str = ENGLISH):
        self.turn = turn
        self.language = language  # the voice's failure is said in it
        self._pieces: list[str] = []  # made, not yet sent
        self._sent = 0  # sent before them
        self._lock = threading.Lock()
        self._error_sent = False
        self.kept = False  # whether the answer's sound was kept (see to_the_end)
        self.speaker = StreamSpeaker(engine, voice, self._add, stop)

    def _add(self, speech: Speech) -> None:
        url = "data:audio/mpeg;base64," + base64.b64encode(encode(speech.samples, speech.rate, "mp3")).decode()
        with self._lock:
            self._pieces.append(url)

    def update(self, done: bool = False) -> str | None:
        """What the page has not been sent yet, as the hidden textbox's value; None when nothing is new."""
        with self._lock:
            new, start = self._pieces, self._sent
            self._pieces, self._sent = [], self._sent + len(new)
        error = self.speaker.error
        if not new and not done and (error is None or self._error_sent):
            return None
        self._error_sent = self._error_sent or error is not None
        return json.dumps({"turn": self.turn, "from": start, "pieces": new, "done": done,
                           "error": error.said(self.language) if error is not None else None})

    def to_the_end(self, dialogue, message) -> Iterator[str]:
        """After the answer's last token: its last sentences are spoken and sent as they come (Stop still ends them),
        the last update saying so. A sound spoken whole is kept as the answer's spoken form (`kept`)."""
        self.speaker.close(message.text)
        while not self.speaker.wait(0.1):
            if (update := self.update()) is not None:
                yield update
        if self.speaker.complete and message.status is Status.COMPLETE:
            try:
                dialogue.keep_speech(message.id, self.speaker.parts)
                self.kept = True
            except AssistantError as error:
                log.warning("the spoken form of answer %s was not kept: %s", message.id, error)
        yield self.update(done=True)


def _prepare(speech: SpeechEngine) -> None:
    try:
        list(speech.speak("Ready.", speech.default_voice))
    except AssistantError as error:  # said again, to the person, when an answer is to be spoken
        log.info("the voice is not ready: %s", error)


@dataclass(frozen=True)
class VoiceControls:
    mode: gr.Textbox  # "on:NONCE" / "off:NONCE", written by the page script
    out: gr.Textbox  # VoiceOut's updates, read by the page script
    config: gr.Textbox


def toggle_button(visible: bool) -> gr.Button:
    return gr.Button("🎙 Voice", elem_id="voice-toggle", scale=1, min_width=130, visible=visible)


def build_controls(dialogue) -> VoiceControls:
    """The state line and the hidden boxes the page script talks through."""
    gr.HTML('<div id="voice-state" role="status" aria-live="polite"></div>', padding=False)
    config = {"max_seconds": dialogue.max_audio_seconds, "speaks": dialogue.speech is not None,
              "end_ms": END_OF_SPEECH_MS, "filename": QUESTION_FILENAME}
    return VoiceControls(
        mode=gr.Textbox(visible="hidden", elem_id="voice-mode"),
        out=gr.Textbox(visible="hidden", elem_id="voice-out"),
        config=gr.Textbox(json.dumps(config), visible="hidden"),
    )


def wire(app: gr.Blocks, controls: VoiceControls, set_mode, forget) -> None:
    app.load(None, inputs=[controls.config], js=VOICE_JS.read_text(encoding="utf-8"))
    controls.mode.change(set_mode, inputs=[controls.mode], show_progress="hidden")
    app.unload(forget)
    controls.out.change(None, inputs=[controls.out], js="(value) => { if (window.__voice) window.__voice.heard(value); }")


