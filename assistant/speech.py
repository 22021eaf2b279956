"""Speech out: the contract every voice meets, and answers made ready to be spoken, sentence by sentence.

Knows nothing of how a voice makes sound (assistant.piper_speech does, for the text-to-speech engine), of Gradio
or of SQL. Text is split into sentences so that speech can start while an answer is still being written.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from domain.errors import SpeechUnavailable
from domain.i18n import t

log = logging.getLogger(__name__)

# What OpenAI's clients send as `voice` (Open WebUI sends "alloy" unless told otherwise): each means the default voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin", "cedar")

# The longest stretch of text spoken in one piece while an answer streams (about ten seconds of speech).
MAX_SENTENCE_CHARS = 160
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|(?<=[。！？；])\s*|\n\s*\n")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.S)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HTML = re.compile(r"<[^>\n]{1,200}>")
_MARKUP = re.compile(r"(^|\s)#{1,6}\s|[*_`~|>]+|^\s*[-+]\s", re.M)


@dataclass(frozen=True)
class Speech:
    """Sound for one piece of text: mono float32 samples in [-1, 1] at `rate` Hz."""

    samples: np.ndarray
    rate: int
    text: str  # what it says ("" for the rest of a sentence a voice spoke in several pieces)
    voice: str = ""  # the engine's name for the voice that spoke it

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


class SpeechEngine(Protocol):
    """A voice: `speak` yields one Speech per sentence, in order; raises domain.errors.SpeechUnavailable with the
    reason when it cannot speak (its voice files cannot be had, say)."""

    label: str  # names the engine in logs and notes
    voices: tuple[str, ...]
    default_voice: str

    def resolve(self, voice: str | None) -> str:
        """Its name for `voice`: OpenAI's names and None mean the default; ValueError for a voice it does not have."""
        ...

    def speak(self, text: str, voice: str, speed: float = 1.0, stop: threading.Event | None = None) -> Iterator[Speech]:
        """`stop`, once set, ends it within a moment, even mid-sentence where a voice takes long over one."""
        ...


class ModelVoice:
    """The voice answers are spoken with: the loaded model's own (`host.engine.voice`, a talker) when it has one, else
    the text-to-speech engine. Asked anew each time, so it follows the model as it loads."""

    def __init__(self, host, fallback: SpeechEngine):
        self.host = host
        self.fallback = fallback

    @property
    def current(self) -> SpeechEngine:
        return getattr(self.host.engine, "voice", None) or self.fallback

    @property
    def label(self) -> str:
        return self.current.label

    @property
    def voices(self) -> tuple[str, ...]:
        return self.current.voices

    @property
    def default_voice(self) -> str:
        return self.current.default_voice

    def resolve(self, voice: str | None) -> str:
        return self.current.resolve(voice)

    def speak(self, text: str, voice: str, speed: float = 1.0, stop: threading.Event | None = None) -> Iterator[Speech]:
        current = self.current
        return current.speak(text, voice if voice in current.voices else current.default_voice, speed, stop)


def resolve_voice(engine: SpeechEngine, voice: str | None) -> str:
    """`engine`'s name for `voice`: OpenAI's names and None mean its default; ValueError for a voice it lacks."""
    if voice is None or voice in OPENAI_VOICES:
        return engine.default_voice
    if voice not in engine.voices:
        raise ValueError(voice)
    return voice


def pieces(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """A whole text as a voice speaks it: its sentences, each longer than `max_chars` cut at a comma or a space."""
    out = []
    for sentence in sentences(speakable(text)):
        while len(sentence) > max_chars:
            cut = _cut(sentence, max_chars)
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            out.append(sentence)
    return out


def _cut(text: str, limit: int) -> int:
    """Where to cut a run-on `text` at most `limit` characters in: after its last comma or space there."""
    head = text[:limit]
    return max(head.rfind(", "), head.rfind("，"), head.rfind(" ")) + 1 or limit


def language_of(sentence: str) -> str:
    """"zh" when the sentence holds Chinese characters, else "en": which voice speaks it."""
    return "zh" if _CJK.search(sentence) else "en"


def speakable(text: str) -> str:
    """An answer's Markdown as words to say: code blocks, link targets, tags and markup left out."""
    text = _CODE_BLOCK.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _HTML.sub(" ", text)
    text = _MARKUP.sub(r"\1", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text) if part and part.strip()]


class SentenceBuffer:
    """Text as it streams in; `feed` returns the sentences it completed, `flush` what is left at the end. A sentence
    never ends inside a code block (its periods are not the answer's); one running past `max_chars` (a list, a
    run-on) is cut at a comma or a space, so that speech never waits long for a full stop; the first piece at half
    that, since it is what the listener waits for."""

    def __init__(self, max_chars: int = MAX_SENTENCE_CHARS):
        self._text = ""
        self.max_chars = max_chars
        self._started = False

    def feed(self, delta: str) -> list[str]:
        self._text += delta
        end = 0
        for match in _SENTENCE_END.finditer(self._text):
            if self._text.count("```", 0, match.start()) % 2 == 0:
                end = match.end()
        limit = self.max_chars if self._started else self.max_chars // 2
        if end == 0 and len(self._text) > limit and self._text.count("```") % 2 == 0:
            end = _cut(self._text, limit)
        if end == 0:
            return []
        self._started = True
        done, self._text = self._text[:end], self._text[end:]
        return pieces(done)

    def flush(self) -> list[str]:
        rest, self._text = self._text, ""
        return pieces(rest)


class StreamSpeaker:
    """Speaks an answer while it is written: each sentence, once complete, goes to the voice on a thread of its own
    (the text never waits for the sound), and `on_speech` gets every piece in order. Stops between sentences once
    `stop` is set; a voice that cannot speak leaves `error` set and the text unaffected."""

    def __init__(self, engine: SpeechEngine, voice: str, on_speech: Callable[[Speech], None], stop: threading.Event):
        self.engine, self.voice, self.on_speech, self.stop = engine, voice, on_speech, stop
        self.parts: list[Speech] = []
        self.error: SpeechUnavailable | None = None
        self._buffer = SentenceBuffer()
        self._fed = 0
        self._sentences: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="speaker", daemon=True)
        self._thread.start()

    def feed(self, text: str) -> None:
        """The answer's text so far."""
        new, self._fed = text[self._fed :], len(text)
        for sentence in self._buffer.feed(new):
            self._sentences.put(sentence)

    def close(self, text: str) -> None:
        """The whole answer: what is left of it is spoken too, without waiting for it (see `speaking`)."""
        self.feed(text)
        for sentence in self._buffer.flush():
            self._sentences.put(sentence)
        self._sentences.put(None)

    def finish(self, text: str, timeout: float | None = None) -> list[Speech]:
        """`close`, then every piece once all are spoken."""
        self.close(text)
        self._thread.join(timeout)
        return self.parts

    def wait(self, timeout: float) -> bool:
        """True once every sentence given is spoken (or skipped)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def complete(self) -> bool:
        """Whether the whole answer was spoken: nothing skipped for a stop or a failing voice."""
        return not self._thread.is_alive() and not self.stop.is_set() and self.error is None and bool(self.parts)

    def _work(self) -> None:
        while (sentence := self._sentences.get()) is not None:
            if self.stop.is_set() or self.error is not None:
                continue
            try:
                for piece in self.engine.speak(sentence, self.voice, stop=self.stop):
                    self.parts.append(piece)
                    self.on_speech(piece)
            except SpeechUnavailable as error:
                self.error = error
            except Exception:  # noqa: BLE001 - the voice failing costs the sound only, never the answer
                log.exception("speaking a sentence failed")
                self.error = SpeechUnavailable(t("speech.voice_failed"))
