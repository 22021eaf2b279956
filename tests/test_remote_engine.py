"""--engine openai: generation by an OpenAI-compatible server. The servers here are another instance of this app
(`python run.py` with the demo model, speaking the API of tests/test_api.py) and `transformers serve` (with the demo
Qwen2.5-VL and Qwen2-Audio checkpoints); plus servers that are down, die mid-answer or answer garbage, which must end
in a clear, saved message (EngineUnavailable, naming no internals) and never lose what was said."""

from __future__ import annotations

import http.server
import json
import logging
import os
import re
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from assistant.model_host import ModelHost
from assistant.prompt import ModelInput
from assistant.remote_engine import OpenAIEngine, family_for_model
from domain.errors import EngineUnavailable
from domain.types import MediaKind, Role, Status
from tests.engine_helpers import make_manager
from tests.helpers import free_port, ready_app, settled_answer, wait_for_http
from tests.media_factory import png


@pytest.fixture(scope="module")
def backend(tmp_path_factory, demo_model_dir):
    folder = tmp_path_factory.mktemp("backend")
    app = ready_app(folder, "--model", str(demo_model_dir), "--data-dir", str(folder / "data"), "--max-new-tokens", "2000")
    yield app, folder / "data"
    app.kill()


def remote_manager(url: str, repository, model: str = "demo", **engine_kwargs):
    family = family_for_model(model, frozenset({MediaKind.IMAGE, MediaKind.AUDIO}))
    engine = OpenAIEngine(url, model, family, **engine_kwargs)
    manager = make_manager(engine, repository)
    return manager, engine


def send(manager, conversation_id, text, uploads=(), stop=None):
    events = list(manager.send(conversation_id, text, list(uploads), stop or threading.Event()))
    return events[0].conversation.id, events[-1].message


def app_context(app) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{app.url}/v1/models") as response:
        return json.load(response)["data"][0]["max_model_len"]


def backend_conversations(data_dir):
    from run import open_storage

    return open_storage(data_dir, None).conversations


def test_family_comes_from_the_served_models_name_or_what_it_is_said_to_take():
    assert family_for_model("Qwen/Qwen2.5-Omni-7B", None).name == "qwen2.5-omni"
    assert family_for_model("google/gemma-4-E4B-it", None).name == "gemma4"
    assert family_for_model("Qwen/Qwen2.5-VL-7B-Instruct", None).accepts == frozenset({MediaKind.IMAGE})
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


class FakeServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def serve(body_lines: list[bytes], close_early: bool):
    """A server that streams these lines for /chat/completions (then hangs up, if close_early) and 404s /models."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(404)
            self.end_headers()

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for line in body_lines:
                self.wfile.write(line)
                self.wfile.flush()
                time.sleep(0.05)
            if close_early:
                self.connection.shutdown(2)

    server = FakeServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def chunk(text: str) -> bytes:
    return f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': text}}]})}\n\n".encode()


@pytest.mark.parametrize(
    "lines, close_early, expected, message",
    [
        ([chunk("Hello "), chunk("there")], True, "Hello there", "closed the connection mid-answer"),
        ([chunk("Partly "), b"data: <html>oops</html>\n\n"], False, "Partly ", "not OpenAI's protocol"),
        ([b"data: {\"error\": {\"message\": \"CUDA out of memory\"}}\n\n"], False, "", "CUDA out of memory"),
    ],
    ids=["dies-mid-stream", "garbage", "error-event"],
)
def test_a_failing_server_ends_the_answer_with_a_clear_error_and_keeps_what_was_said(repository, lines, close_early, expected, message):
    server = serve(lines, close_early)
    try:
        manager, _ = remote_manager(f"http://127.0.0.1:{server.server_address[1]}/v1", repository)
        conversation, answer = send(manager, None, "Hello?")
    finally:
        server.shutdown()
    assert answer.status is Status.ERROR and message in answer.error
    assert answer.text == expected
    assert [m.role for m in repository.get_messages(conversation)] == [Role.USER, Role.ASSISTANT]


@pytest.mark.parametrize("usage", [
    "lots", {"prompt_tokens": "12", "completion_tokens": -3, "prompt_tokens_details": "cached"},
    {"prompt_tokens": 12, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": [5]}},
])
def test_a_server_whose_usage_is_odd_still_gives_the_answer(repository, usage):
    """Token counts that are not whole numbers are ignored, not taken in or failed on."""
    server = serve([chunk("Fine"), chunk(" answer"), f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode(),
                    b"data: [DONE]\n\n"], False)
    try:
        manager, _ = remote_manager(f"http://127.0.0.1:{server.server_address[1]}/v1", repository)
        _, answer = send(manager, None, "Hello?")
    finally:
        server.shutdown()
    assert (answer.status, answer.text) == (Status.COMPLETE, "Fine answer"), answer.error
    assert answer.details.cached_tokens == 0 and answer.details.prompt_tokens > 0 and answer.details.answer_tokens >= 0


def test_a_server_that_is_down_gives_a_clear_message(repository):
    port = free_port()
    manager, engine = remote_manager(f"http://127.0.0.1:{port}/v1", repository)
    host = ModelHost(lambda progress: engine).start()
    host.wait()
    _, answer = send(manager, None, "Anyone there?")
    assert answer.status is Status.ERROR and f"127.0.0.1:{port}" in answer.error and "not reachable" in answer.error
    assert repository.get_messages(answer.conversation_id)[0].text == "Anyone there?"


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


def test_an_api_answer_that_fails_upstream_is_a_502_in_openais_shape(start_app, tmp_path):
    """A generation server that fails (here: --engine openai with its server down) is its fault, not ours: 502."""
    import openai

    front = start_app("--engine", "openai", "--engine-url", f"http://127.0.0.1:{free_port()}/v1", "--model", "some-model",
                      "--whisper-model", "none", "--data-dir", str(tmp_path / "front"))
    front.wait_for_page()
    front.wait_for_log("model ready")
    client = openai.OpenAI(base_url=f"{front.url}/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.InternalServerError) as error:
        client.chat.completions.create(model="some-model", messages=[{"role": "user", "content": "hi"}])
    assert error.value.status_code == 502 and error.value.code == "engine_unavailable" and "not reachable" in error.value.message
    stream = client.chat.completions.create(model="some-model", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError, match="not reachable"):
        list(stream)


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


def finish(reason: str = "stop", usage: dict | None = None) -> bytes:
    event = {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}], **({"usage": usage} if usage else {})}
    return f"data: {json.dumps(event)}\n\n".encode()


def test_a_stream_that_ends_after_its_finish_reason_without_done_is_a_whole_answer(repository):
    """transformers serve ends its stream after the chunk that carries finish_reason, with no `data: [DONE]`."""
    usage = {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
    server = serve([chunk("Whole"), chunk(" answer"), finish("stop", usage)], close_early=True)
    try:
        manager, _ = remote_manager(f"http://127.0.0.1:{server.server_address[1]}/v1", repository)
        _, answer = send(manager, None, "Hello?")
    finally:
        server.shutdown()
    assert (answer.status, answer.text, answer.error) == (Status.COMPLETE, "Whole answer", None)
    assert (answer.details.prompt_tokens, answer.details.answer_tokens) == (12, 2)


class RawServer(socketserver.ThreadingTCPServer):
    """Answers each POST with these exact bytes (then holds the connection `hold_s` before closing it) and each GET
    with a 404: a server that speaks broken HTTP, or HTTP but not OpenAI's protocol."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: bytes, hold_s: float = 0.0):
        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                request_line, length = self.rfile.readline(), 0
                while header := self.rfile.readline().strip():
                    name, _, value = header.partition(b":")
                    length = int(value) if name.lower() == b"content-length" else length
                self.rfile.read(length)
                if request_line.startswith(b"GET"):
                    self.wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                self.wfile.write(answer)
                self.wfile.flush()
                time.sleep(hold_s)

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def http_answer(status: str, content_type: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def sse_answer(*events: bytes) -> bytes:
    """A 200 event stream that ends when the connection closes (no Content-Length, no chunking)."""
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + b"".join(events)


TRACEBACK = b'Traceback (most recent call last):\n  File "/srv/engine.py", line 12\nValueError: secret internals'
FAILURES = {
    # id: (what the server answers, seconds it then holds the line, what the message says, what the log says)
    "not-reachable": (None, 0, "not reachable", "ConnectError"),
    "timeout": (sse_answer(chunk("Slow")), 4, "did not answer in time", "ReadTimeout"),
    "refusal": (http_answer("400 Bad Request", "application/json", json.dumps({"error": {
        "message": "This model's maximum context length is 4096 tokens.\n  (request id 7f3a)", "type": "BadRequestError",
        "code": 400}}).encode()), 0, "HTTP 400): This model's maximum context length is 4096 tokens.", "request id 7f3a"),
    "refusal-fastapi": (http_answer("400 Bad Request", "application/json", b'{"detail": "Server is pinned to \'m\'."}'),
                        0, "HTTP 400): Server is pinned to 'm'.", '{"detail"'),
    "unauthorized": (http_answer("401 Unauthorized", "text/plain", b"Invalid token abc123"), 0, "API key", "abc123"),
    "server-error": (http_answer("500 Internal Server Error", "text/plain", TRACEBACK), 0, "HTTP 500", "secret internals"),
    "not-http": (b"SSH-2.0-OpenSSH_9.2p1\r\n", 0, "failed", "RemoteProtocolError"),
    "cut-chunked": (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + f"{len(chunk('Half')):x}\r\n".encode() + chunk("Half") + b"\r\n5\r\ndata:", 0, "failed",
                    "RemoteProtocolError"),
    "html-page": (http_answer("200 OK", "text/html", b"<html><body>Welcome to nginx!</body></html>"), 0,
                  "not OpenAI's protocol", "Welcome to nginx"),
    "garbage-event": (sse_answer(chunk("Partly "), b"data: <html>oops</html>\n\n"), 0, "not OpenAI's protocol", "oops"),
    "odd-choices": (sse_answer(b'data: {"choices": "all of them"}\n\n'), 0, "not OpenAI's protocol", "all of them"),
    "odd-content": (sse_answer(b'data: {"choices": [{"delta": {"content": 42}}]}\n\n'), 0, "not OpenAI's protocol",
                    '"content": 42'),
    "error-event": (sse_answer(b'data: {"error": {"message": "CUDA out of memory.\\nTried to allocate 2 GiB"}}\n\n'), 0,
                    "failed while answering: CUDA out of memory.", "Tried to allocate"),
    "error-event-text": (sse_answer(b'data: {"error": "RuntimeError: CUDA error: device-side assert triggered"}\n\n'), 0,
                         "failed while answering", "device-side assert"),
    "mid-answer": (sse_answer(chunk("Hello "), chunk("there")), 0, "closed the connection mid-answer", "after 2 events"),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_every_failure_of_the_server_is_engine_unavailable_with_a_sentence_that_names_no_internals(failure, caplog):
    """The API answers EngineUnavailable with a 502: the fault is the server's, not this app's. People get a fixed
    sentence (plus a refusal's own message, meant for clients, on one line); the details go to the log."""
    answer, hold_s, says, logged = FAILURES[failure]
    server = RawServer(answer, hold_s) if answer is not None else None
    url = server.url if server else f"http://127.0.0.1:{free_port()}/v1"
    client = httpx.Client(timeout=httpx.Timeout(1.0, connect=5.0))  # the default waits minutes for a slow server
    engine = OpenAIEngine(url, "some-model", family_for_model("some-model", None), client=client)
    caplog.set_level(logging.WARNING, logger="assistant.remote_engine")
    try:
        with pytest.raises(EngineUnavailable) as raised:
            list(engine.stream(ModelInput([{"role": "user", "content": "Hello?"}]), threading.Event()))
    finally:
        if server:
            server.shutdown()
    message = str(raised.value)
    assert says in message and url in message
    assert not re.search(r"[A-Za-z]+(Error|Exception|Timeout)\b|Traceback|\n|[{}<>]", message), message
    assert logged not in message and logged in caplog.text


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
    assert engine.family.name == family and engine.family.accepts == frozenset({kind})
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
    assert body["max_tokens"] == 1000 - engine.count_tokens(long) < 900  # never past the context
