"""The text-to-speech engine for models that have no voice of their own: Piper (piper-tts), on the CPU, offline.

Why Piper: it installs from the package index with its own espeak-ng (no system package), runs a sentence in tens of
milliseconds on one CPU core through onnxruntime, and has published voices for English and Chinese among some forty
languages. A voice is two files (model and config) fetched once, on first use, into the data directory, with
progress, the way Whisper's weights are. Each sentence is spoken by the voice of its language (Chinese sentences by the
Chinese voice), so one answer may mix both. Knows nothing of Gradio, SQL or the language model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.download import DownloadFailed, download
from assistant.speech import Speech, language_of, pieces, resolve_voice
from domain.errors import SpeechUnavailable
from domain.i18n import Text, t

log = logging.getLogger(__name__)

Progress = Callable[[Text | str, float | None], None]
VOICE_URL = "https://huggingface.co/rhasspy/piper-voices/resolve/main"
# After a voice failed to download or load, answers within this many seconds go without it at once, with the reason.
FAILED_RETRY_S = 300.0


@dataclass(frozen=True)
class Voice:
    code: str  # Piper's name for it: language_REGION-name-quality, as its files are named
    language: str  # "en", "zh": the sentences it speaks


# The published voices offered: an English pair and the Chinese one (medium quality: 63 MB each, 22.05 kHz).
PUBLISHED_VOICES = {
    "lessac": Voice("en_US-lessac-medium", "en"),
    "amy": Voice("en_US-amy-medium", "en"),
    "huayan": Voice("zh_CN-huayan-medium", "zh"),
}


def voice_url(base: str, code: str, suffix: str) -> str:
    """Where the published voice `code` (en_US-lessac-medium) keeps its file `suffix` (.onnx or .onnx.json)."""
    language, name, quality = code.split("-", 2)
    return f"{base}/{language.split('_')[0]}/{language}/{name}/{quality}/{code}{suffix}"


def fetch_voice(code: str, folder: Path, progress: Progress, base_url: str = VOICE_URL) -> Path:
    """The voice's model file in `folder`, downloaded (config first, then model) unless there already."""
    model = folder / f"{code}.onnx"
    if model.is_file() and model.with_suffix(".onnx.json").is_file():
        return model
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx.json", ".onnx"):
        _download(voice_url(base_url, code, suffix), folder / f"{code}{suffix}", code, progress)
    return model


def _download(url: str, target: Path, code: str, progress: Progress) -> None:
    try:
        download(url, target, t("progress.the_voice", voice=code), progress)
    except DownloadFailed as error:
        raise SpeechUnavailable(t("speech.voice_download_failed", voice=code, reason=error.reason)) from None


class PiperSpeech:
    """Voices by name (`voices`); `files(code, progress)` gives a voice's model file, fetching or building it."""

    label = "Piper"

    def __init__(self, voices: Mapping[str, Voice], files: Callable[[str, Progress], Path], progress: Progress | None = None):
        if not voices:
            raise ValueError("at least one voice")
        self._voices = dict(voices)
        self._files = files
        self._progress = progress or (lambda message, fraction: log.info("%s", message))
        self._loaded: dict[str, object] = {}
        self._failed: dict[str, tuple[str, float]] = {}  # code -> (why, when)
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self.voices = tuple(self._voices)
        self.default_voice = self.voices[0]

    def resolve(self, voice: str | None) -> str:
        return resolve_voice(self, voice)

    def speak(self, text: str, voice: str, speed: float = 1.0, stop: threading.Event | None = None) -> Iterator[Speech]:
        chosen = self._voices[self.resolve(voice)]
        for sentence in pieces(text):
            if stop is not None and stop.is_set():
                return  # a sentence takes Piper milliseconds: stopping between them is soon enough
            voice_used = self._for_language(chosen, language_of(sentence))
            yield from self._synthesize(self._load(voice_used), voice_used.code, sentence, speed)

    def _for_language(self, chosen: Voice, language: str) -> Voice:
        if chosen.language == language:
            return chosen
        return next((v for v in self._voices.values() if v.language == language), chosen)

    def _synthesize(self, piper_voice, code: str, sentence: str, speed: float) -> Iterator[Speech]:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / speed)
        for i, chunk in enumerate(piper_voice.synthesize(sentence, syn_config=config)):
            samples = np.asarray(chunk.audio_float_array, dtype=np.float32)
            yield Speech(samples, chunk.sample_rate, sentence if i == 0 else "", code)

    def _load(self, voice: Voice):
        loaded = self._loaded.get(voice.code)
        if loaded is not None:
            return loaded
        with self._lock:
            lock = self._locks.setdefault(voice.code, threading.Lock())
        with lock:  # one download per voice, however many answers ask at once; other voices go on speaking
            if voice.code in self._loaded:
                return self._loaded[voice.code]
            failed = self._failed.get(voice.code)
            if failed is not None and time.monotonic() - failed[1] < FAILED_RETRY_S:
                raise SpeechUnavailable(failed[0])
            try:
                path = self._files(voice.code, self._progress)
            except SpeechUnavailable as error:
                self._failed[voice.code] = (error.text, time.monotonic())
                raise
            try:
                from piper import PiperVoice

                loaded = PiperVoice.load(path, download_dir=path.parent)
            except Exception:  # noqa: BLE001 - a damaged file: whatever onnxruntime or json says, the voice is unusable
                log.warning("loading the voice %s failed", voice.code, exc_info=True)
                message = t("speech.voice_load_failed", voice=voice.code)
                self._failed[voice.code] = (message, time.monotonic())
                for damaged in (path, path.with_suffix(".onnx.json")):  # fetched again next time
                    damaged.unlink(missing_ok=True)
                raise SpeechUnavailable(message) from None
            self._loaded[voice.code] = loaded
            return loaded
