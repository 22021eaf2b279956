"""Whisper transcripts of audio attachments and videos' sound tracks, made by one background worker; knows nothing
of Gradio or SQL.

The worker loads openai-whisper on first need (downloading named weights into the data directory, with
progress in `state`), transcribes each audio file once (by its sha256) and stores the result through the
`TranscriptStore` it is given. Answers never wait for it, except those of a model without an audio tower,
which hears the transcript instead (`wait`). If Whisper cannot be had, each transcript says why.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from assistant.download import DownloadFailed, download
from assistant.media import SAMPLE_RATE, MediaLoader, has_sound
from domain.errors import AssistantError, ModelLoadError
from domain.i18n import Text, t
from domain.types import Attachment, MediaKind, Transcript, TranscriptStatus

log = logging.getLogger(__name__)

OFF = "none"
TRANSCRIPTION_FAILED = t("whisper.failed")
DOWNLOAD_CHUNK = 1 << 20
# The longest a transcript waits for an answer's first token (see Transcriber.submit).
HOLD_MAX_S = 120.0
# After Whisper failed to load (no network, say), files sent within this many seconds fail at once with the reason.
LOAD_RETRY_S = 300.0
Progress = Callable[[Text | str, float | None], None]


class TranscriptStore(Protocol):
    def save(self, sha256: str, transcript: Transcript) -> bool: ...


def default_whisper_model(cuda: bool) -> str:
    # turbo (809M) is large-v3 quality at a fraction of its decoding cost; base (74M) keeps up on a CPU.
    return "turbo" if cuda else "base"


@dataclass(frozen=True)
class WhisperState:
    message: Text | str  # what the page shows while a transcript is pending


def load_whisper(source: str, download_root: Path, device: str, progress: Progress):
    """openai-whisper's model from a checkpoint file, or by name (downloaded once into `download_root`)."""
    import whisper

    path = Path(source).expanduser()
    if not path.is_file():
        if source not in whisper._MODELS:
            raise ModelLoadError(t("whisper.unknown", source=source, models=", ".join(whisper.available_models())))
        path = _download(source, whisper._MODELS[source], download_root, progress)
    progress(t("progress.loading_whisper", name=path.name if path.name != source else source), None)
    try:
        return whisper.load_model(str(path), device=device)
    except Exception:  # noqa: BLE001 - whatever the file holds, it is not a checkpoint Whisper can load
        log.warning("loading the Whisper checkpoint %s failed", path, exc_info=True)
        raise ModelLoadError(t("whisper.damaged", name=path.name)) from None


def _download(name: str, url: str, root: Path, progress: Progress) -> Path:
    """Whisper's URLs carry the file's SHA-256; a file already there is trusted only if it matches."""
    expected = url.split("/")[-2]
    target = root / Path(url).name
    if target.is_file() and _sha256(target) == expected:
        return target
    root.mkdir(parents=True, exist_ok=True)
    try:
        digest = download(url, target, t("progress.whisper", name=name), progress)
    except DownloadFailed as error:
        raise ModelLoadError(t("whisper.download_failed", name=name, reason=error.reason)) from None
    if digest != expected:
        target.unlink(missing_ok=True)
        raise ModelLoadError(t("whisper.corrupted", name=name))
    return target


def _sha256(path: Path) -> str:
    """In chunks: turbo's weights are 1.6 GB."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(DOWNLOAD_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Transcriber:
    """One worker thread; `submit` never blocks. `label` names the model in stored transcripts."""

    def __init__(
        self,
        store: TranscriptStore,
        media: MediaLoader,
        load: Callable[[Progress], object],
        label: str,
        fp16: bool = False,
        options: dict | None = None,
    ):
        self._store = store
        self._media = media
        self._load = load
        self.label = label
        self._fp16 = fp16
        self._options = dict(options or {})  # for whisper's transcribe(): e.g. a fixed temperature
        self._model = None
        self._load_error: tuple[Text | str, float] | None = None  # (why, when)
        self._jobs: queue.Queue[tuple[str, Path, str, threading.Event | None]] = queue.Queue()
        self._pending: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._use = threading.Lock()  # one caller at a time: Whisper's decoding hangs its key-value cache on the model
        self._state = WhisperState(t("whisper.transcribing"))
        self._thread = threading.Thread(target=self._work, name="transcriber", daemon=True)

    def start(self) -> Transcriber:
        self._thread.start()
        return self

    @property
    def state(self) -> WhisperState:
        return self._state

    def submit(self, attachments: Iterable[Attachment], not_before: threading.Event | None = None) -> None:
        """Queue each audio file that has no transcript yet (a failed one is tried again).

        With `not_before`, Whisper starts once it is set (at most HOLD_MAX_S later): an answer's first token,
        which Whisper computing beside the prefill delays (1.4–1.5× on a 2-core CPU, bench/transcript_overlap.py).
        """
        for attachment in attachments:
            if attachment.kind is not MediaKind.AUDIO and not (attachment.kind is MediaKind.VIDEO and has_sound(attachment.path)):
                continue  # a video is transcribed for its sound track; one without sound gets no transcript
            if attachment.transcript is not None and attachment.transcript.status is TranscriptStatus.DONE:
                continue
            with self._lock:
                if attachment.sha256 in self._pending:
                    continue
                self._pending[attachment.sha256] = threading.Event()
            self._jobs.put((attachment.sha256, attachment.path, attachment.filename, not_before))

    def is_pending(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self._pending

    def wait(self, sha256: str, timeout: float | None = None) -> bool:
        """True once the file's transcript is stored (or was never queued)."""
        with self._lock:
            done = self._pending.get(sha256)
        return done is None or done.wait(timeout)

    def _progress(self, message: Text | str, fraction: float | None) -> None:
        if fraction is None:
            self._state = WhisperState(t("whisper.transcribing.step", step=message))
        else:
            self._state = WhisperState(t("whisper.transcribing.step_done", step=message, done=fraction))
        log.info("%s", message)

    def _work(self) -> None:
        while True:
            sha256, path, filename, not_before = self._jobs.get()
            try:
                if not_before is not None:
                    not_before.wait(HOLD_MAX_S)
                transcript = self._transcribe(path, filename)
                if not self._store.save(sha256, transcript):
                    log.info("the audio %s was deleted before its transcript was ready", filename)
            except Exception:  # the worker must outlive any one file; the log has the traceback
                log.exception("could not store the transcript of %s", filename)
            finally:
                with self._lock:
                    done = self._pending.pop(sha256, None)
                if done is not None:
                    done.set()

    def transcribe_now(self, audio, language: str | None = None, prompt: str | None = None) -> dict:
        """Whisper's whole result for 16 kHz mono samples (text, language, segments), made now on the caller's thread
        (the API's /v1/audio/transcriptions); ModelLoadError when Whisper cannot be had."""
        options = {**self._options, "language": language, "initial_prompt": prompt or None}
        with self._use:
            model = self._ready_model()
            return model.transcribe(audio, fp16=self._fp16, verbose=None, **options)

    def _transcribe(self, path: Path, filename: str) -> Transcript:
        try:
            audio = self._media.audio(path)
            with self._use:
                model = self._ready_model()
                result = model.transcribe(audio, fp16=self._fp16, verbose=None, **self._options)
        except AssistantError as error:
            return Transcript(TranscriptStatus.FAILED, model=self.label, error=error.text)
        except Exception:  # a Whisper failure costs this transcript only, never the chat
            log.exception("transcribing %s failed", filename)
            return Transcript(TranscriptStatus.FAILED, model=self.label, error=TRANSCRIPTION_FAILED)
        return Transcript(
            TranscriptStatus.DONE,
            text=result["text"].strip(),
            language=result.get("language"),
            seconds=round(len(audio) / SAMPLE_RATE, 2),
            model=self.label,
        )

    def _ready_model(self):
        if self._model is None:
            if self._load_error is not None and time.monotonic() - self._load_error[1] < LOAD_RETRY_S:
                raise ModelLoadError(self._load_error[0])
            try:
                self._model = self._load(self._progress)
            except AssistantError as error:
                self._load_error = (error.text, time.monotonic())
                self._state = WhisperState(t("whisper.no_transcript", error=error.text))
                raise
            self._state = WhisperState(t("whisper.transcribing"))
        return self._model

