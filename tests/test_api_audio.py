"""/v1/audio/speech and /v1/audio/transcriptions with the official `openai` client, over the app's demo voice and demo
Whisper, in this process; and what bad requests get."""

from __future__ import annotations

import io
import wave

import httpx
import openai
import pytest

from assistant.media import decode_audio
from tests.api_helpers import served_api


@pytest.fixture
def client(engine, repository, transcripts, demo_speech, whisper_model, tmp_path):
    from assistant.media import MediaLoader
    from assistant.transcribe import Transcriber
    from tests.engine_helpers import make_manager

    transcriber = Transcriber(transcripts, MediaLoader(), lambda progress: whisper_model, "Whisper demo",
                              options={"temperature": 0.0}).start()
    with served_api(make_manager(engine, repository, transcriber=transcriber, speech=demo_speech), tmp_path) as client:
        yield client


def test_speech_in_each_format_as_openai_clients_ask_for_it(client, tmp_path):
    text = "Hello from the speech route. 你好。"
    wav = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav")
    with wave.open(io.BytesIO(wav.content)) as file:
        assert (file.getframerate(), file.getnchannels(), file.getsampwidth()) == (24_000, 1, 2)
        seconds = file.getnframes() / 24_000
    assert 0.5 < seconds < 10
    assert wav.response.headers["content-type"] == "audio/wav"
    for fmt, mime in (("mp3", "audio/mpeg"), ("opus", "audio/ogg"), ("aac", "audio/aac"), ("flac", "audio/flac")):
        response = client.audio.speech.create(model="tts-1-hd", voice="demo", input=text, response_format=fmt)
        assert response.response.headers["content-type"] == mime
        path = tmp_path / f"speech.{fmt}"
        path.write_bytes(response.content)
        assert abs(len(decode_audio(path)) / 16_000 - seconds) < 0.2
    pcm = client.audio.speech.create(model="demo", voice="demo-zh", input=text, response_format="pcm", speed=2.0)
    assert abs(len(pcm.content) / 2 / 24_000 - seconds / 2) < 0.1  # twice as fast: half as long


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "tts-1", "voice": "nobody", "input": "Hi"}, 400, "voice"),
        ({"model": "tts-1", "voice": "alloy", "input": "Hi", "response_format": "ogg"}, 400, "response_format"),
        ({"model": "tts-1", "voice": "alloy", "input": ""}, 400, "input"),
        ({"model": "tts-1", "voice": "alloy", "input": "x" * 4097}, 400, "input"),
        ({"model": "tts-1", "voice": "alloy", "input": "Hi", "speed": 9}, 400, "speed"),
        ({"model": "elevenlabs", "voice": "alloy", "input": "Hi"}, 404, "model"),
        ({"model": "tts-1", "input": "Hi"}, 400, "voice"),
        ({"model": "tts-1", "voice": "alloy", "input": 5}, 400, "input"),
    ],
)
def test_bad_speech_requests_name_the_parameter(client, body, status, param):
    response = httpx.post(f"{client.base_url}audio/speech", json=body, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and error["message"]


def test_speech_refuses_bodies_that_are_not_json(client):
    response = httpx.post(f"{client.base_url}audio/speech", content=b"input=hi", headers={"content-type": "text/plain"})
    assert response.status_code == 415


@pytest.mark.parametrize("fmt", ["json", "text", "verbose_json", "srt", "vtt"])
def test_transcriptions_in_each_format(client, speech_wav, fmt):
    with open(speech_wav, "rb") as file:
        result = client.audio.transcriptions.create(model="whisper-1", file=file, response_format=fmt)
    if fmt == "json":
        assert isinstance(result.text, str)
    elif fmt == "verbose_json":
        assert result.duration == pytest.approx(decode_audio(speech_wav).size / 16_000, abs=0.05)
        assert result.language and isinstance(result.segments, list)
        assert result.text == "".join(s.text for s in result.segments).strip()
    elif fmt == "vtt":
        assert result.startswith("WEBVTT")
    else:
        assert isinstance(result, str)


def test_a_transcription_with_a_language_and_the_whisper_name(client, speech_wav):
    with open(speech_wav, "rb") as file:
        result = client.audio.transcriptions.create(model="demo", file=file, language="en", response_format="verbose_json")
    assert result.language == "english"


@pytest.mark.parametrize(
    ("data", "fields", "status", "param"),
    [
        (None, {"model": "whisper-1", "language": "klingon"}, 400, "language"),
        (None, {"model": "whisper-1", "response_format": "doc"}, 400, "response_format"),
        (None, {"model": "nope"}, 404, "model"),
        (b"not audio at all", {"model": "whisper-1"}, 400, "file"),
        (b"\x00" * 10, {"model": "whisper-1"}, 400, "file"),
    ],
)
def test_bad_transcription_requests_name_the_parameter(client, speech_wav, data, fields, status, param):
    content = speech_wav.read_bytes() if data is None else data
    response = httpx.post(f"{client.base_url}audio/transcriptions", data=fields,
                          files={"file": ("clip.wav", content, "audio/wav")}, timeout=60)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_silence_and_missing_files_are_refused_with_a_reason(client, tmp_path):
    from tests.media_factory import write_audio
    import numpy as np

    silent = write_audio(tmp_path / "silent.wav", np.zeros(32_000, dtype=np.float32), 16_000)
    response = httpx.post(f"{client.base_url}audio/transcriptions", data={"model": "whisper-1"},
                          files={"file": ("silent.wav", silent.read_bytes(), "audio/wav")}, timeout=60)
    assert response.status_code == 400 and "silent" in response.json()["error"]["message"]
    response = httpx.post(f"{client.base_url}audio/transcriptions", data={"model": "whisper-1"}, files={"x": ("a", b"b")})
    assert response.status_code == 400 and response.json()["error"]["param"] == "file"
    response = httpx.post(f"{client.base_url}audio/transcriptions", json={"model": "whisper-1"})
    assert response.status_code == 415


def test_with_speech_and_transcripts_off_the_routes_say_so(engine, repository, speech_wav, tmp_path):
    from tests.engine_helpers import make_manager

    with served_api(make_manager(engine, repository), tmp_path) as client:
        with pytest.raises(openai.APIStatusError, match="--speech off") as refused:
            client.audio.speech.create(model="tts-1", voice="alloy", input="Hi")
        assert refused.value.status_code == 503
        with open(speech_wav, "rb") as file, pytest.raises(openai.APIStatusError, match="--whisper-model none") as refused:
            client.audio.transcriptions.create(model="whisper-1", file=file)
        assert refused.value.status_code == 503


# --- spoken answers through /v1/chat/completions ----------------------------------------------------------------------


def test_a_chat_answer_with_audio_as_openai_returns_it_and_keeps_it(client, repository):
    import base64

    from assistant.speech import speakable

    response = client.chat.completions.with_raw_response.create(
        model="demo", modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
        messages=[{"role": "user", "content": "Say something aloud"}], max_tokens=24, temperature=0,
    )
    message = response.parse().choices[0].message
    assert message.content and message.audio is not None
    assert message.audio.id.startswith("audio_") and message.audio.expires_at > 0
    assert message.audio.transcript == speakable(message.content)
    with wave.open(io.BytesIO(base64.b64decode(message.audio.data))) as file:
        seconds = file.getnframes() / file.getframerate()
    [_, answer] = repository.get_messages(response.headers["x-conversation-id"])
    assert answer.text == message.content and answer.speech is not None
    assert abs(len(decode_audio(answer.speech.path)) / 16_000 - seconds) < 0.1


def test_a_streamed_answer_is_spoken_sentence_by_sentence_and_kept(client, repository):
    import base64

    from assistant.speech import SentenceBuffer

    stream = client.chat.completions.with_raw_response.create(
        model="demo", modalities=["text", "audio"], audio={"voice": "demo", "format": "pcm16"},
        messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=48, temperature=0, stream=True,
    )
    text, transcripts, pcm = "", [], b""
    for chunk in stream.parse():
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is None:
            continue
        text += delta.content or ""
        if delta.audio is not None:  # the openai client's own type for it
            assert delta.audio.id.startswith("audio_")
            pcm += base64.b64decode(delta.audio.data)
            transcripts.append(delta.audio.transcript)
    buffer = SentenceBuffer()
    assert [t for t in transcripts if t] == buffer.feed(text) + buffer.flush()
    [_, answer] = repository.get_messages(stream.headers["x-conversation-id"])
    assert answer.text == text and answer.speech is not None
    assert abs(len(decode_audio(answer.speech.path)) / 16_000 - len(pcm) / 2 / 24_000) < 0.1


def test_a_voice_that_is_not_ours_is_refused_before_anything_is_stored(client, repository):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="demo", modalities=["text", "audio"], audio={"voice": "nobody", "format": "wav"},
                                       messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.body["param"] == "audio.voice"
    assert repository.list_conversations() == []


def test_a_form_without_a_length_and_an_oversized_speech_body_are_refused(client, speech_wav):
    def chunks():
        yield b"--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--x--\r\n"

    response = httpx.post(f"{client.base_url}audio/transcriptions", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 411 and response.json()["error"]["code"] == "length_required"
    response = httpx.post(f"{client.base_url}audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "x" * 70_000})
    assert response.status_code == 413
