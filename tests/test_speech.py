"""Speech out: sentences from streamed text, Piper's voices (fetched, damaged, unreachable), every output format, and
spoken answers kept with their answer through a restart, an export and an import, and a deletion."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from assistant.audio_encode import MIME, encode
from assistant.media import decode_audio
from assistant.speech import SentenceBuffer, sentences, speakable
from domain.errors import SpeechUnavailable


def test_streamed_text_gives_whole_sentences_in_order_and_never_splits_code():
    answer = "Hello **there**. How are you? 你好。世界很大！Code: ```py\nx = 1. y = 2.\n``` Done. The rest"
    buffer = SentenceBuffer()
    said = [s for ch in answer for s in buffer.feed(ch)]
    assert said == ["Hello there.", "How are you?", "你好。", "世界很大！", "Code: Done."]
    assert buffer.flush() == ["The rest"]
    assert said + ["The rest"] == [speakable(s) for s in sentences(speakable(answer))]


def test_markdown_is_spoken_as_words():
    assert speakable("# Title\n- *one* [a link](http://x.org) <b>bold</b> `code`") == "Title\none a link bold code"


def test_each_sentence_is_spoken_by_the_voice_of_its_language(demo_speech):
    parts = list(demo_speech.speak("Hello there. 你好，世界。Goodbye!", "demo"))
    assert [(p.text, p.voice) for p in parts] == [
        ("Hello there.", "en_US-demo-x_low"), ("你好，世界。", "zh_CN-demo-x_low"), ("Goodbye!", "en_US-demo-x_low")
    ]
    for part in parts:
        assert part.rate == 16_000 and part.samples.dtype == np.float32
        assert 0.1 < part.seconds < 3 and np.abs(part.samples).max() <= 1.0 and np.abs(part.samples).max() > 0.1
    faster = list(demo_speech.speak("Hello there.", "demo", speed=2.0))
    assert len(faster[0].samples) == len(parts[0].samples) // 2


def test_voices_by_name_openai_names_mean_the_default_and_others_are_refused(demo_speech):
    assert demo_speech.voices == ("demo", "demo-zh")
    assert demo_speech.resolve("alloy") == demo_speech.resolve(None) == "demo"
    assert demo_speech.resolve("demo-zh") == "demo-zh"
    with pytest.raises(ValueError):
        demo_speech.resolve("nobody")


@pytest.mark.parametrize("fmt", [f for f in MIME if f != "pcm"])
def test_every_format_decodes_back_to_the_same_sound(fmt, tmp_path):
    tone = (0.5 * np.sin(np.arange(16_000 * 2) / 16_000 * 2 * np.pi * 440)).astype(np.float32)
    path = tmp_path / f"tone.{fmt}"
    path.write_bytes(encode(tone, 16_000, fmt))
    back = decode_audio(path)
    assert abs(len(back) / 16_000 - 2.0) < 0.1
    assert 0.4 < np.abs(back).max() < 0.6


def test_raw_pcm_is_16_bit_at_24_khz():
    data = encode(np.full(16_000, 0.5, dtype=np.float32), 16_000, "pcm")
    samples = np.frombuffer(data, dtype="<i2")
    assert abs(len(samples) - 24_000) < 100 and abs(int(np.median(samples)) - 16383) < 200


@pytest.fixture
def voice_server(tmp_path):
    """An HTTP server holding the demo English voice under the published voices' layout, as Hugging Face does."""
    from assistant.demo_voice import ensure_demo_voice
    from assistant.piper_speech import voice_url

    root = tmp_path / "hub"
    built = ensure_demo_voice("en_US-demo-x_low", tmp_path / "built")
    for suffix in (".onnx", ".onnx.json"):
        target = root / voice_url("", "en_US-demo-x_low", suffix).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(str(built).removesuffix(".onnx") + suffix).read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_voice_is_fetched_once_with_progress_then_speaks(voice_server, tmp_path):
    from assistant.piper_speech import PiperSpeech, Voice, fetch_voice

    folder, seen = tmp_path / "voices", []
    fetches = []

    def files(code, progress):
        fetches.append(code)
        return fetch_voice(code, folder, progress, base_url=voice_server)

    engine = PiperSpeech({"demo": Voice("en_US-demo-x_low", "en")}, files, progress=lambda m, f: seen.append((m, f)))
    assert list(engine.speak("One. Two.", "demo"))
    assert list(engine.speak("Three.", "demo"))
    assert fetches == ["en_US-demo-x_low"]
    assert sorted(p.name for p in folder.iterdir()) == ["en_US-demo-x_low.onnx", "en_US-demo-x_low.onnx.json"]
    assert any("Downloading the voice en_US-demo-x_low" in str(m) and f == 1.0 for m, f in seen)


def test_an_unreachable_voice_says_why_and_leaves_no_partial_file(tmp_path):
    from assistant.piper_speech import PiperSpeech, Voice, fetch_voice
    from tests.helpers import free_port

    folder = tmp_path / "voices"
    engine = PiperSpeech(
        {"lessac": Voice("en_US-lessac-medium", "en")},
        lambda code, progress: fetch_voice(code, folder, progress, base_url=f"http://127.0.0.1:{free_port()}"),
    )
    with pytest.raises(SpeechUnavailable, match="en_US-lessac-medium could not be downloaded .*the text is unaffected"):
        list(engine.speak("Hello.", "lessac"))
    assert not any(folder.glob("*"))


def test_a_damaged_voice_file_is_refused_with_a_reason_and_fetched_again_later(tmp_path):
    from assistant.demo_voice import ensure_demo_voice
    from assistant.piper_speech import PiperSpeech, Voice

    model = ensure_demo_voice("en_US-demo-x_low", tmp_path)
    model.write_bytes(b"not an onnx model")
    engine = PiperSpeech({"demo": Voice("en_US-demo-x_low", "en")}, lambda code, progress: model)
    with pytest.raises(SpeechUnavailable, match="could not be loaded"):
        list(engine.speak("Hello.", "demo"))
    assert not model.exists()  # so the next start fetches it again


# --- spoken answers, kept with the answer ---------------------------------------------------------------------------


def test_a_spoken_answer_is_made_once_kept_through_a_restart_exported_imported_and_deleted(
    engine, demo_speech, tmp_path
):
    from assistant.prompt import build_model_input
    from assistant.media import MediaLoader
    from storage.exchange import export_zip
    from tests.engine_helpers import make_manager
    from tests.helpers import repository_at, send

    repository = repository_at(tmp_path / "one")
    manager = make_manager(engine, repository, speech=demo_speech)
    conversation_id, answer = send(manager, None, "Say something")
    assert answer.text and answer.speech is None
    spoken = manager.speak(answer.id)
    speech = spoken.message.speech
    assert speech is not None and speech.mime == "audio/mpeg" and speech.path.is_file()
    assert spoken.message.attachments == () and spoken.message.text == answer.text
    assert abs(len(decode_audio(speech.path)) / 16_000 - len(spoken.samples) / spoken.rate) < 0.1
    assert manager.speak(answer.id).message.speech == speech  # made once: the second ask reads it back

    # A restart: a new repository on the same files.
    again = repository_at(tmp_path / "one")
    [_, kept] = again.get_messages(conversation_id)
    assert kept.speech == speech
    # The model never hears its own voice: the next prompt holds the answer as text only.
    prompt = build_model_input(again.get_messages(conversation_id), MediaLoader())
    assert prompt.audios == [] and prompt.conversation[-1]["content"] == [{"type": "text", "text": answer.text}]

    # Export, then import into another app's storage.
    archive = tmp_path / "export.zip"
    export_zip(again.export_conversations([conversation_id]), archive)
    other = repository_at(tmp_path / "two")
    summary = make_manager(engine, other, speech=demo_speech).import_archive(archive)
    assert summary.conversations == 1
    [imported_id] = [c.id for c in other.list_conversations()]
    [_, imported] = other.get_messages(imported_id)
    assert imported.speech is not None and imported.speech.sha256 == speech.sha256
    assert imported.speech.path.read_bytes() == speech.path.read_bytes()

    # Deleting the conversation deletes the sound.
    again.delete_conversation(conversation_id)
    assert not speech.path.exists()


def test_only_finished_answers_are_spoken_and_speech_off_says_so(engine, demo_speech, repository):
    from domain.errors import InvalidInput
    from tests.engine_helpers import make_manager
    from tests.helpers import send

    manager = make_manager(engine, repository, speech=demo_speech)
    _, answer = send(manager, None, "Hello")
    question = repository.get_messages(answer.conversation_id)[0]
    with pytest.raises(InvalidInput, match="Only a finished answer"):
        manager.speak(question.id)
    with pytest.raises(SpeechUnavailable, match="--speech off"):
        make_manager(engine, repository).speak(answer.id)


def test_a_streaming_answer_is_spoken_before_it_ends_and_stop_silences_the_rest(demo_speech):
    from assistant.speech import StreamSpeaker
    from tests.helpers import wait_until

    heard = []
    speaker = StreamSpeaker(demo_speech, "demo", heard.append, threading.Event())
    speaker.feed("Hello there. How")
    wait_until(lambda: heard, 10, 0.01, "the first sentence was not spoken before the answer ended")
    assert [p.text for p in heard] == ["Hello there."]
    parts = speaker.finish("Hello there. How are you? 你好。", timeout=10)
    assert [p.text for p in parts] == ["Hello there.", "How are you?", "你好。"] and parts == heard

    stop = threading.Event()
    stopped = StreamSpeaker(demo_speech, "demo", lambda piece: stop.set(), stop)
    assert [p.text for p in stopped.finish("One. Two. Three.", timeout=10)] == ["One."]


def test_a_whole_text_is_spoken_in_sentences_and_run_ons_in_pieces():
    from assistant.speech import MAX_SENTENCE_CHARS, pieces

    said = pieces("**Short.** " + "word " * 100 + "end. 你好。")
    assert said[0] == "Short." and said[-1] == "你好。"
    assert all(len(p) <= MAX_SENTENCE_CHARS for p in said) and len(said) >= 5
    assert " ".join(said[1:-1]).split() == ["word"] * 100 + ["end."]


def test_a_streamed_answer_not_spoken_to_its_end_is_not_kept(engine, demo_speech, repository):
    from api.spoken import keep_streamed
    from assistant.speech import StreamSpeaker
    from tests.engine_helpers import make_manager
    from tests.helpers import send

    manager = make_manager(engine, repository, speech=demo_speech)
    _, answer = send(manager, None, "Hello")
    stop = threading.Event()
    cut = StreamSpeaker(demo_speech, "demo", lambda piece: stop.set(), stop)  # the client left after one piece
    cut.finish("One. Two. Three.", timeout=10)
    keep_streamed(manager, answer, cut)
    assert repository.get_message(answer.id).speech is None
    whole = StreamSpeaker(demo_speech, "demo", lambda piece: None, threading.Event())
    whole.finish("One. Two. Three.", timeout=10)
    keep_streamed(manager, answer, whole)
    assert repository.get_message(answer.id).speech is not None
