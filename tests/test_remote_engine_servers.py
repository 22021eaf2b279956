"""--engine openai through working servers (this app's own API, `transformers serve`), and the remote engine's contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from assistant.prompt import ModelInput
from assistant.remote_engine import OpenAIEngine, family_for_model
from domain.types import MediaKind, Role, Status
from tests.engine_helpers import make_manager, remote_manager
from tests.helpers import free_port, ready_app, send, settled_answer, wait_for_http
from tests.media_factory import png


@pytest.fixture(scope="module")
def backend(tmp_path_factory, demo_model_dir):
    folder = tmp_path_factory.mktemp("backend")
    app = ready_app(folder, "--model", str(demo_model_dir), "--data-dir", str(folder / "data"), "--max-new-tokens", "2000")
    yield app, folder / "data"
    app.kill()


def app_context(app) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{app.url}/v1/models") as response:
        return json.load(response)["data"][0]["max_model_len"]


def backend_conversations(data_dir):
    from cli.data import open_storage

    return open_storage(data_dir, None).conversations


def test_family_comes_from_the_served_models_name_or_what_it_is_said_to_take():
    assert family_for_model("Qwen/Qwen2.5-Omni-7B", None).name == "qwen2.5-omni"
    assert family_for_model("google/gemma-4-E4B-it", None).name == "gemma4"
    assert family_for_model("Qwen/Qwen2.5-VL-7B-Instruct", None).accepts == frozenset({MediaKind.IMAGE, MediaKind.VIDEO})
    assert family_for_model("my-llama", None).accepts == frozenset()
    assert family_for_model("my-llama", frozenset({MediaKind.IMAGE})).sees()


@pytest.mark.parametrize("audio_part", ["input_audio", "audio_url"])
def test_a_conversation_with_an_image_and_audio_through_a_remote_server(backend, repository, tmp_path, speech_wav, audio_part):
    app, data_dir = backend
    manager, engine = remote_manager(f"{app.url}/v1", repository, audio_part=audio_part, max_new_tokens=24)
    # The context length the server announces (this app's /v1/models says max_model_len, as vLLM's does).
    assert engine.info.quant == "remote" and engine.context_tokens == app_context(app)
    image = png(tmp_path / "red.png")
    conversation, first = send(manager, None, "What is in the picture?", [(image, "red.png")])
    _, second = send(manager, conversation, "And what did I say?", [(speech_wav, "question.wav")])
    _, third = send(manager, conversation, "Thanks.")
    for answer in (first, second, third):
        assert answer.status is Status.COMPLETE and answer.text.strip(), answer.error
        assert answer.details.answer_tokens > 0 and answer.details.prompt_tokens > 0
    # The server got the same image and clip bytes each turn, so it continued one stored conversation.
    served = backend_conversations(data_dir)
    matching = [c for c in served.list_conversations() if c.title == "What is in the picture?"]
    messages = served.get_messages(matching[-1].id)
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT] * 3
    assert [m.text for m in messages if m.role is Role.ASSISTANT] == [first.text, second.text, third.text]
    assert [a.kind for a in messages[2].attachments] == [MediaKind.AUDIO]
    assert len({a.sha256 for m in messages for a in m.attachments}) == 2
    # Its KV cache held the earlier turns, and the usage it sent back said how much, which the answers keep.
    assert first.details.cached_tokens == 0 and 0 < third.details.cached_tokens < third.details.prompt_tokens


def test_stop_closes_the_stream_and_the_server_stops_too(backend, repository):
    app, data_dir = backend
    manager, _ = remote_manager(f"{app.url}/v1", repository)
    stop = threading.Event()
    events = manager.send(None, "A very long story about the remote server", [], stop)
    text = ""
    for event in events:
        text = getattr(event, "text", text)
        if len(text) > 30:
            stop.set()
    answer = event.message
    assert answer.status is Status.STOPPED and answer.text.startswith(text[:30])
    served = backend_conversations(data_dir)
    conversation = next(c for c in served.list_conversations() if c.title.startswith("A very long story"))
    remote = settled_answer(served, conversation.id)
    assert remote.status is Status.STOPPED  # closing the connection reached the server's generation
    assert remote.details.answer_tokens < 2000


def test_the_conversations_settings_reach_the_server(backend, repository):
    from domain.settings import GenerationSettings

    app, data_dir = backend
    manager, _ = remote_manager(f"{app.url}/v1", repository)
    settings = GenerationSettings(system_prompt="Be terse.", temperature=0.7, top_p=0.9, max_new_tokens=7, seed=11)
    events = list(manager.send(None, "Settings travel?", [], threading.Event(), settings))
    assert events[-1].message.status is Status.COMPLETE
    served = backend_conversations(data_dir)
    conversation = next(c for c in served.list_conversations() if c.title == "Settings travel?")
    assert served.get_conversation(conversation.id).settings == settings
    assert served.get_messages(conversation.id)[-1].details.answer_tokens <= 7


def test_a_remote_model_that_cannot_hear_gets_the_transcript_which_the_server_receives(backend, repository, transcripts, whisper_model, speech_wav):
    from assistant.demo_whisper import DEMO_WHISPER_OPTIONS
    from assistant.media import MediaLoader
    from assistant.transcribe import Transcriber

    app, data_dir = backend
    family = family_for_model("demo", frozenset({MediaKind.IMAGE}))  # the server is told: text and images only
    engine = OpenAIEngine(f"{app.url}/v1", "demo", family, max_new_tokens=8)
    transcriber = Transcriber(transcripts, MediaLoader(), lambda progress: whisper_model, "demo Whisper (random weights)",
                              options=DEMO_WHISPER_OPTIONS).start()
    manager = make_manager(engine, repository, transcriber)
    conversation, answer = send(manager, None, "What did I ask?", [(speech_wav, "question.wav")])
    assert answer.status is Status.COMPLETE, answer.error
    [attachment] = repository.get_messages(conversation)[0].attachments
    assert attachment.transcript.text.strip()
    served = backend_conversations(data_dir)
    [question] = [m for c in served.list_conversations() for m in served.get_messages(c.id)[:1] if "What did I ask?" in m.text]
    assert question.attachments == ()  # no audio went to the server, only its transcript
    assert f"[Audio “question.wav”, transcribed: {attachment.transcript.text}]" in question.text


def test_a_queue_with_several_slots_runs_that_many_turns_at_once():
    from assistant.turn_queue import TurnQueue

    queue = TurnQueue(slots=2)
    first, second, third = queue.join(), queue.join(), queue.join()
    assert first.wait(0) and second.wait(0) and not third.wait(0)
    assert (first.place, second.place, third.place) == (0, 0, 1)
    second.release()
    assert third.wait(1) and third.place == 0


TRANSFORMERS_SERVE_START_S = 60


class TransformersServe:
    """`transformers serve` (transformers' own OpenAI-compatible server) as a child process on a free loopback port,
    serving one checkpoint named by its path (its /v1/models lists only models in the Hub cache)."""

    def __init__(self, model_dir: Path, log_path: Path):
        self.model = str(model_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "transformers.cli.transformers", "serve", self.model,
             "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )

    def wait(self) -> None:
        """Until /health answers; fails with the server's output when it exits or takes too long."""
        wait_for_http(self.proc, f"http://127.0.0.1:{self.port}/health", TRANSFORMERS_SERVE_START_S, self.output, "transformers serve")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def transformers_serve(tmp_path):
    """model folder -> a started `transformers serve` for it, stopped after the test."""
    started: list[TransformersServe] = []

    def start(model_dir: Path) -> TransformersServe:
        started.append(TransformersServe(model_dir, tmp_path / f"serve-{len(started)}.log"))
        started[-1].wait()
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("family, kind", [("qwen2.5-vl", MediaKind.IMAGE), ("qwen2-audio", MediaKind.AUDIO)])
def test_a_conversation_through_transformers_serve(family, kind, transformers_serve, family_model_dir, repository,
                                                   tmp_path, speech_wav):
    """transformers serve ends each stream after its finish_reason chunk, without `data: [DONE]`."""
    server = transformers_serve(family_model_dir(family))
    engine = OpenAIEngine(server.url, server.model, family_for_model(server.model, None), max_new_tokens=8)
    assert engine.family.name == family and kind in engine.family.accepts
    manager = make_manager(engine, repository)
    media = (png(tmp_path / "red.png"), "red.png") if kind is MediaKind.IMAGE else (speech_wav, "question.wav")
    conversation, with_media = send(manager, None, "What is this?", [media])
    _, follow_up = send(manager, conversation, "Say it again.")
    _, without_media = send(manager, None, "What is this?")
    for answer in (with_media, follow_up, without_media):
        assert answer.status is Status.COMPLETE, (answer.error, server.output())
        assert answer.details.answer_tokens > 0
    # The counts are the server's (its usage): the picture or the clip became tokens of the model's prompt.
    assert with_media.details.prompt_tokens > without_media.details.prompt_tokens
    assert [a.kind for a in repository.get_messages(conversation)[0].attachments] == [kind]


def test_the_remote_engine_and_the_dialogue_manager_load_no_torch():
    """They know the in-process engine only by its contract, so a front end for a remote server never loads torch."""
    from tests.helpers import ROOT

    code = ("import sys, assistant.remote_engine, assistant.dialogue, assistant.model_host; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stderr


def test_the_remote_engine_keeps_the_engine_contract_and_its_shared_answer_length_rules():
    from assistant.engine_contract import Engine
    from domain.settings import GenerationSettings

    client = httpx.Client(timeout=httpx.Timeout(1.0, connect=1.0))  # nobody listens: the context is as told
    engine = OpenAIEngine(f"http://127.0.0.1:{free_port()}/v1", "some-model", family_for_model("some-model", None),
                          max_new_tokens=100, max_context=1000, client=client)
    assert isinstance(engine, Engine) and not hasattr(engine, "reuse")
    engine.forget("a conversation", ["0" * 64])  # the server keeps its own cache: nothing here to drop
    assert engine.answer_budget(GenerationSettings()) == 100
    assert engine.answer_budget(GenerationSettings(max_new_tokens=900)) == 500  # at most half the context
    long = ModelInput([{"role": "user", "content": "x" * 2700}])
    body = engine.request_body(long, GenerationSettings(max_new_tokens=900))
    assert body["max_tokens"] == 1000 - engine.prepare_prompt(long) < 900  # never past the context


def test_a_video_goes_to_a_server_whose_model_takes_it_as_a_video_url_mp4_and_to_no_other():
    import base64
    import io

    import av
    import numpy as np

    from assistant.video import VideoClip
    from domain.errors import InvalidInput
    from domain.settings import GenerationSettings

    frames = np.zeros((4, 48, 64, 3), np.uint8)
    frames[:, 10:30, 20:40] = (220, 20, 20)
    sound = (0.3 * np.sin(np.arange(32_000) / 8)).astype(np.float32)
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    model_input = ModelInput(conversation, videos=[VideoClip(frames, 2.0, 2.0, sound)])
    client = httpx.Client(timeout=httpx.Timeout(1.0, connect=1.0))  # nobody listens: only the body is made
    url = f"http://127.0.0.1:{free_port()}/v1"

    def body_for(model: str, accepts=None) -> dict:
        engine = OpenAIEngine(url, model, family_for_model(model, accepts), max_context=32_000, client=client)
        text_only = ModelInput([{"role": "user", "content": "What happens?"}])
        assert engine.prepare_prompt(model_input) > engine.prepare_prompt(text_only) + 4 * 100  # frames cost tokens
        return engine.request_body(model_input, GenerationSettings())

    parts = body_for("Qwen/Qwen2.5-Omni-7B", frozenset({MediaKind.IMAGE, MediaKind.AUDIO, MediaKind.VIDEO}))["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["video_url", "text"]
    data_url = parts[0]["video_url"]["url"]
    assert data_url.startswith("data:video/mp4;base64,")
    with av.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "video"]  # a model that hears gets the sound too
        assert sum(1 for _ in container.decode(video=0)) == 4
    again = body_for("Qwen/Qwen2.5-Omni-7B", frozenset({MediaKind.IMAGE, MediaKind.AUDIO, MediaKind.VIDEO}))
    assert again["messages"][0]["content"][0]["video_url"]["url"] == data_url  # the same bytes each turn

    with pytest.raises(InvalidInput, match="my-llama"):  # should a turn slip past the dialogue manager's check
        body_for("my-llama")


def test_a_spoken_video_through_a_remote_server_that_takes_video(backend, repository, speech_video):
    app, data_dir = backend
    every = frozenset({MediaKind.IMAGE, MediaKind.AUDIO, MediaKind.VIDEO})
    manager, _ = remote_manager(f"{app.url}/v1", repository, accepts=every, max_new_tokens=16)
    conversation, first = send(manager, None, "What happens in the video?", [(speech_video, "question.mp4")])
    _, second = send(manager, conversation, "Thanks.")
    for answer in (first, second):
        assert answer.status is Status.COMPLETE and answer.text.strip(), answer.error
    assert first.details.prompt_tokens > 100  # the frames and the sound track were counted
    # The server stored the video it was sent as one, and got the same bytes again on the second turn.
    served = backend_conversations(data_dir)
    [stored] = [c for c in served.list_conversations() if c.title == "What happens in the video?"]
    messages = served.get_messages(stored.id)
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT] * 2
    assert [(a.kind, a.mime) for a in messages[0].attachments] == [(MediaKind.VIDEO, "video/mp4")]
