"""Voice mode's server side: which sessions are in it, what a recording must hold to be sent, and the answer's sound
as the page receives it (in order, each piece once, the end said, a failing voice named)."""

from __future__ import annotations

import json
import shutil
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from tests.media_factory import write_audio
from ui.voice import QUESTION_FILENAME, VoiceOut, VoiceSessions


def test_a_recording_of_noise_is_refused_in_voice_mode_and_nothing_is_stored(
    engine, repository, demo_speech, tmp_path, monkeypatch
):
    from ui.app import ChatHandlers
    from tests.engine_helpers import make_manager

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # where the page's uploads are, so discarded

    handlers = ChatHandlers(make_manager(engine, repository, speech=demo_speech), None, demo=True)
    request = SimpleNamespace(session_hash="s", username=None)
    noise = np.clip(np.random.default_rng(0).normal(0, 0.3, 48_000), -1, 1).astype(np.float32)
    (tmp_path / "upload").mkdir()
    upload = write_audio(tmp_path / "upload" / QUESTION_FILENAME, noise, 16_000)
    handlers.set_voice_mode("on:1", request)
    with pytest.raises(Exception, match="Only noise was heard, no speech, so nothing was sent"):
        list(handlers.respond({"text": "", "files": [str(upload)]}, None, False, request, "", "", "", "", ""))
    assert repository.list_conversations() == [] and not upload.exists()

    # Outside voice mode the same file is a sound like any other: sent, stored and answered.
    handlers.set_voice_mode("off:2", request)
    (tmp_path / "upload").mkdir()
    upload = write_audio(tmp_path / "upload" / QUESTION_FILENAME, noise, 16_000)
    list(handlers.respond({"text": "", "files": [str(upload)]}, None, False, request, "", "", "", "", ""))
    assert len(repository.list_conversations()) == 1


def test_a_spoken_question_in_voice_mode_is_answered_aloud_and_its_sound_kept(engine, repository, demo_speech, speech_wav, tmp_path):
    from ui.app import ChatHandlers
    from tests.engine_helpers import make_manager

    handlers = ChatHandlers(make_manager(engine, repository, speech=demo_speech), None, demo=True)
    request = SimpleNamespace(session_hash="s", username=None)
    handlers.set_voice_mode("on:1", request)
    upload = tmp_path / "upload" / QUESTION_FILENAME
    upload.parent.mkdir()
    shutil.copy(speech_wav, upload)
    updates = list(handlers.respond({"text": "", "files": [str(upload)]}, None, False, request, "", "", "", "", ""))
    sounds = [json.loads(u[-1]) for u in updates if isinstance(u[-1], str)]
    assert sounds and sounds[-1]["done"] and sounds[-1]["error"] is None
    assert len({s["turn"] for s in sounds}) == 1
    pieces = [p for s in sounds for p in s["pieces"]]
    assert [s["from"] for s in sounds] == [sum(len(t["pieces"]) for t in sounds[:i]) for i in range(len(sounds))]
    assert pieces and all(p.startswith("data:audio/mpeg;base64,") for p in pieces)
    [conversation] = repository.list_conversations()
    question, answer = repository.get_messages(conversation.id)
    assert [a.filename for a in question.attachments] == [QUESTION_FILENAME]
    assert answer.speech is not None  # spoken whole, so kept: the bubble shows it
    assert updates[-1][0][-1]["content"][0]["mime_type"] == "audio/mpeg"


def test_the_sound_comes_in_order_each_piece_once_and_a_failing_voice_is_named(demo_speech):
    from assistant.piper_speech import PiperSpeech, Voice
    from domain.errors import SpeechUnavailable

    out = VoiceOut(demo_speech, "demo", threading.Event(), "turn-1")
    assert out.update() is None  # nothing yet
    answer = SimpleNamespace(text="First sentence here. Second one. Third.", status=None, id=1)
    out.speaker.feed(answer.text)
    updates = [u for u in out.to_the_end(SimpleNamespace(), answer) if u is not None]
    received = [json.loads(u) for u in updates]
    assert received[-1]["done"] and sum(len(r["pieces"]) for r in received) == 3 and not out.kept

    def unreachable(code, progress):
        raise SpeechUnavailable(f"The voice {code} could not be downloaded (no network), so answers are not spoken.")

    mute = VoiceOut(PiperSpeech({"x": Voice("en_US-x-low", "en")}, unreachable), "x", threading.Event(), "turn-2")
    mute.speaker.close("Hello there.")
    mute.speaker.wait(10)
    said = json.loads(mute.update())
    assert said["pieces"] == [] and "could not be downloaded (no network)" in said["error"]
    assert mute.update() is None  # said once


def test_voice_mode_is_per_session():
    sessions = VoiceSessions()
    sessions.set_mode("on:1", "a")
    assert sessions.active("a") and not sessions.active("b")
    sessions.set_mode("off:2", "a")
    assert not sessions.active("a")
