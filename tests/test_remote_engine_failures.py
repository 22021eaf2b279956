"""--engine openai against stand-in servers that are down, die mid-answer, stream oddly or answer garbage."""

from __future__ import annotations

import http.server
import json
import logging
import re
import socketserver
import threading
import time

import httpx
import pytest

from assistant.model_host import ModelHost
from assistant.prompt import ModelInput
from assistant.remote_engine import OpenAIEngine, family_for_model
from domain.errors import EngineUnavailable
from domain.types import Role, Status
from tests.engine_helpers import remote_manager
from tests.helpers import free_port, send


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
    assert answer.status is Status.ERROR and message in str(answer.error)
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
    assert answer.status is Status.ERROR and f"127.0.0.1:{port}" in str(answer.error) and "not reachable" in str(answer.error)
    assert repository.get_messages(answer.conversation_id)[0].text == "Anyone there?"


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
