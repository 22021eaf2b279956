"""An answer's spoken form: made on demand with the app's voice, once, and kept with the answer (content-addressed,
as every file is), so it plays again after a restart and travels with exports. Knows nothing of Gradio or SQL.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.audio_encode import encode, resample
from assistant.media import SAMPLE_RATE
from assistant.speech import Speech, SpeechEngine
from domain import limits
from domain.errors import InvalidInput
from domain.i18n import t
from domain.types import MediaFile, MediaKind, Message, Role, Status

SPOKEN_FILENAME = "spoken answer.mp3"


@dataclass(frozen=True)
class SpokenAnswer:
    message: Message  # with its `speech`
    samples: np.ndarray  # mono float32
    rate: int


class SpokenAnswers:
    def __init__(self, speech: SpeechEngine, decode: Callable[[Path], np.ndarray]):
        """`decode(path)`: a stored sound's 16 kHz mono samples (assistant.media.MediaLoader.audio)."""
        self.speech = speech
        self.decode = decode

    def speak(self, repository, message_id: int, voice: str | None = None) -> SpokenAnswer:
        """The answer's stored sound, made and stored first if it has none; SpeechUnavailable when no voice can be
        had, InvalidInput for a message that is not a finished answer with words in it."""
        message = repository.get_message(message_id)
        if message.speech is not None:
            return SpokenAnswer(message, self.decode(message.speech.path), SAMPLE_RATE)
        if message.role is not Role.ASSISTANT or message.status not in (Status.COMPLETE, Status.STOPPED):
            raise InvalidInput(t("speech.unfinished"))
        try:
            voice = self.speech.resolve(voice)
        except ValueError:  # a conversation's voice the model now loaded lacks: its default speaks
            voice = self.speech.default_voice
        return self.keep(repository, message_id, list(self.speech.speak(message.text, voice)))

    def keep(self, repository, message_id: int, parts: list[Speech]) -> SpokenAnswer:
        """Store what the voice said for the answer (spoken while it streamed, say) as its spoken form."""
        if not parts:
            raise InvalidInput(t("speech.no_words"))
        rate = parts[0].rate  # voices of other rates (a Chinese voice beside an English one) are brought to it
        samples = np.concatenate([p.samples if p.rate == rate else resample(p.samples, p.rate, rate) for p in parts])
        shortest = int((limits.MIN_AUDIO_SECONDS + 0.1) * rate)  # "Yes." stays a sound an import accepts
        if len(samples) < shortest:
            samples = np.pad(samples, (0, shortest - len(samples)))
        with tempfile.TemporaryDirectory(prefix="speech-") as folder:
            path = Path(folder) / "speech.mp3"
            path.write_bytes(encode(samples, rate, "mp3"))
            stored = repository.attach_speech(message_id, MediaFile(path, SPOKEN_FILENAME, MediaKind.AUDIO, "audio/mpeg"))
        return SpokenAnswer(stored, samples, rate)
