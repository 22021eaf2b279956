"""What people see when the model, Whisper or a checkpoint fails: a fixed sentence saying what happened and what to
do, never an exception's type or text (which can name files, devices and code); the details go to the log."""

from __future__ import annotations

import logging
import re
import threading

import pytest

from assistant.engine import GENERATION_FAILED, TransformersEngine
from assistant.model_host import MODEL_LOAD_FAILED, ModelHost
from assistant.transcribe import TRANSCRIPTION_FAILED, Transcriber, load_whisper
from domain.errors import GenerationError, ModelLoadError
from domain.types import Attachment, MediaKind, Transcript, TranscriptStatus

# An exception type's name, or the words of the planted internal failures below.
INTERNALS = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b|/secret/|operand|planted", re.I)


def test_a_generation_failure_says_what_to_do_and_logs_why(engine, caplog):
    from assistant.prompt import ModelInput

    broken = TransformersEngine(engine.model, engine.processor, engine.info, engine.family, max_new_tokens=4,
                                generation_kwargs={"num_beams": 0})  # transformers refuses this with a ValueError
    model_input = ModelInput(conversation=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    with caplog.at_level(logging.ERROR), pytest.raises(GenerationError) as failure:
        list(broken.stream(model_input, threading.Event()))
    assert str(failure.value) == str(GENERATION_FAILED) and not INTERNALS.search(str(failure.value))
    assert "ValueError" in caplog.text  # the details are kept for whoever reads the log


def test_a_load_failure_says_what_to_do_and_logs_why(caplog):
    def load(progress):
        raise RuntimeError("planted: /secret/path/model.safetensors is truncated")

    with caplog.at_level(logging.ERROR):
        host = ModelHost(load).start()
        assert host.wait(10)
    assert host.state.message == MODEL_LOAD_FAILED and not INTERNALS.search(str(host.state.message))
    assert "/secret/path" in caplog.text


def test_a_whisper_failure_is_a_sentence_and_never_reaches_the_prompt(speech_wav, transcripts, tmp_path, caplog):
    from assistant.media import MediaLoader
    from assistant.prompt import transcript_text

    class BrokenWhisper:
        def transcribe(self, *args, **kwargs):
            raise RuntimeError("planted: CUDA error at /secret/whisper/decoding.py")

    transcriber = Transcriber(transcripts, MediaLoader(), lambda progress: BrokenWhisper(), "Whisper base")
    with caplog.at_level(logging.ERROR):
        transcript = transcriber._transcribe(speech_wav, "q.wav")
    assert transcript.status is TranscriptStatus.FAILED and transcript.error == TRANSCRIPTION_FAILED
    assert "/secret/whisper" in caplog.text

    attachment = Attachment("0" * 64, MediaKind.AUDIO, "audio/wav", "q.wav", 1, speech_wav,
                            Transcript(TranscriptStatus.FAILED, error="Whisper base could not be downloaded (no network)"))
    said = transcript_text(attachment)
    assert "could not be transcribed" in said and "download" not in said and "network" not in said


def test_a_damaged_whisper_checkpoint_is_a_sentence(tmp_path, caplog):
    damaged = tmp_path / "whisper.pt"
    damaged.write_bytes(b"planted garbage, not a checkpoint")
    with caplog.at_level(logging.WARNING), pytest.raises(ModelLoadError) as failure:
        load_whisper(str(damaged), tmp_path, "cpu", lambda *_: None)
    assert "could not be loaded" in str(failure.value) and not INTERNALS.search(str(failure.value))
    assert "UnpicklingError" in caplog.text or "Error" in caplog.text


def test_a_damaged_image_is_named_without_the_decoders_words(tmp_path, caplog):
    from assistant.media import load_image
    from domain.errors import InvalidInput
    from tests import media_factory as make

    damaged = make.truncated(tmp_path / "cut.png", make.noisy_image(tmp_path / "whole.png"))
    with caplog.at_level(logging.INFO), pytest.raises(InvalidInput) as refusal:
        load_image(damaged, "cut.png")
    assert str(refusal.value) == "“cut.png” is damaged or incomplete and cannot be read as an image."
    assert "truncated" in caplog.text  # Pillow's own words, for whoever reads the log
