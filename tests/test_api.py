"""The OpenAI-compatible API, through the official `openai` client against the app started as a user would
(`python run.py`), with the demo model: text, images, audio in both shapes, streaming with usage, a stateless
multi-turn exchange that continues one stored conversation, stop strings, Stop by closing the stream, and
each error status."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import sys
import threading
import time

import openai
import pytest

from tests.helpers import ROOT, ready_app, settled_answer, wait_until
from tests.media_factory import png, write_tone


def data_url(path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def stored(data_dir, user: str | None = None):
    """The app's conversations as its database holds them (read from this process)."""
    from run import open_storage

    storage = open_storage(data_dir, None)
    conversations, users = storage.conversations, storage.users
    return conversations.for_owner(users.id_of(user))


@pytest.fixture(scope="module")
def api(tmp_path_factory, demo_model_dir):
    """One app (no accounts, so loopback needs no key) and its data dir, for the module."""
    folder = tmp_path_factory.mktemp("api")
    app = ready_app(folder, "--model", str(demo_model_dir), "--data-dir", str(folder / "data"), "--api-queue-limit", "0")
    yield app, folder / "data"
    app.kill()


@pytest.fixture
def client(api):
    app, _ = api
    return openai.OpenAI(base_url=f"{app.url}/v1", api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture
def model(client) -> str:
    return client.models.list().data[0].id


def test_models_lists_the_one_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["demo"]  # the checkpoint folder's name
    assert models[0].owned_by == "local-assistant"


def test_text_answer_is_stored_as_a_conversation_with_usage(client, model, api):
    _, data_dir = api
    response = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hello from a script"}], temperature=0, max_tokens=12
    )
    completion = response.parse()
    answer = completion.choices[0].message.content
    assert answer and completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens > 0 and completion.usage.prompt_tokens > 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    conversation_id = response.headers["x-conversation-id"]
    messages = stored(data_dir).get_messages(conversation_id)
    assert [(m.role.value, m.text) for m in messages] == [("user", "Hello from a script"), ("assistant", answer)]
    assert stored(data_dir).get_conversation(conversation_id).title == "Hello from a script"


def test_image_and_audio_in_both_shapes_reach_the_model_and_are_stored(client, model, api, tmp_path, speech_wav):
    _, data_dir = api
    image = png(tmp_path / "red.png")
    clip = write_tone(tmp_path / "tone.wav", 1.5)
    content = [
        {"type": "text", "text": "What do you see and hear?"},
        {"type": "image_url", "image_url": {"url": data_url(image, "image/png")}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(speech_wav.read_bytes()).decode(), "format": "wav"}},
        {"type": "audio_url", "audio_url": {"url": data_url(clip, "audio/wav")}},
    ]
    response = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=8
    )
    completion = response.parse()
    assert completion.choices[0].message.content
    assert completion.usage.prompt_tokens > 100  # image and audio placeholders were expanded
    question = stored(data_dir).get_messages(response.headers["x-conversation-id"])[0]
    assert [a.kind.value for a in question.attachments] == ["image", "audio", "audio"]
    assert question.attachments[0].path.read_bytes() == image.read_bytes()


def test_streaming_sends_the_stored_answer_in_chunks_with_usage_last(client, model, api):
    _, data_dir = api
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Stream please"}], max_tokens=16, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    latest = stored(data_dir).list_conversations()[0]
    assert stored(data_dir).get_messages(latest.id)[-1].text == text


def test_a_stateless_follow_up_continues_the_stored_conversation(client, model, api):
    _, data_dir = api
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "First question, continued"}]
    first = client.chat.completions.with_raw_response.create(model=model, messages=history, max_tokens=8)
    conversation_id = first.headers["x-conversation-id"]
    history += [{"role": "assistant", "content": first.parse().choices[0].message.content},
                {"role": "user", "content": "And the second?"}]
    second = client.chat.completions.with_raw_response.create(model=model, messages=history, max_tokens=8)
    assert second.headers["x-conversation-id"] == conversation_id
    # It went on from the conversation's KV cache, and says so as OpenAI's usage does.
    assert first.parse().usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < second.parse().usage.prompt_tokens_details.cached_tokens < second.parse().usage.prompt_tokens
    messages = stored(data_dir).get_messages(conversation_id)
    assert [m.role.value for m in messages] == ["user", "assistant", "user", "assistant"]
    assert stored(data_dir).get_conversation(conversation_id).settings.system_prompt == "Be brief."

    # History that was never stored here (another client's) becomes a new conversation holding it.
    foreign = [{"role": "user", "content": "First question, continued"}, {"role": "assistant", "content": "Not what you said"},
               {"role": "user", "content": "Third?"}]
    third = client.chat.completions.with_raw_response.create(model=model, messages=foreign, max_tokens=8)
    other = third.headers["x-conversation-id"]
    assert other != conversation_id
    assert [m.text for m in stored(data_dir).get_messages(other)][:3] == [m["content"] for m in foreign]


def test_a_stop_string_ends_the_answer_before_it(client, model):
    question = [{"role": "user", "content": "Say something long"}]
    whole = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=40)
    text = whole.choices[0].message.content
    assert len(text) > 20
    cut = text[10:14]
    stopped = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=40, stop=[cut])
    assert stopped.choices[0].message.content == text[: text.index(cut)]
    assert stopped.choices[0].finish_reason == "stop"


def test_closing_the_stream_stops_the_answer_and_keeps_what_was_said(client, model, api):
    _, data_dir = api
    stream = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "A long story, please"}], max_tokens=2000, stream=True
    )
    conversation_id = stream.headers["x-conversation-id"]
    received = ""
    for chunk in stream.parse():
        received += chunk.choices[0].delta.content or ""
        if len(received) > 20:
            break
    stream.http_response.close()
    answer = settled_answer(stored(data_dir), conversation_id, timeout=30)
    assert answer.status.value == "stopped"
    assert answer.text.startswith(received) and answer.details.answer_tokens < 2000


def test_bad_requests_get_openai_errors_naming_what_is_wrong(client, model, tmp_path, api):
    _, data_dir = api
    before = len(stored(data_dir).list_conversations())
    cases = [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"temperature": 5}, "temperature"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], **extra)
        assert error.value.status_code == 400 and error.value.param == param, extra
        assert error.value.body["type"] == "invalid_request_error" and param in error.value.message
    broken = tmp_path / "broken.png"
    broken.write_bytes(png(tmp_path / "ok.png").read_bytes()[:80])
    for part, words in [
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}, "base64"),
        ({"type": "image_url", "image_url": {"url": data_url(broken, "image/png")}}, "image"),
        ({"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}}, "--allow-remote-media"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "ogg"}}, "wav or mp3"),
        ({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}, "type"),
    ]:
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": [part]}])
        assert words in error.value.message, (part["type"], error.value.message)
    with pytest.raises(openai.BadRequestError, match="last message"):
        client.chat.completions.create(model=model, messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert error.value.code == "model_not_found"
    huge = "A" * (34 * 1024**2)  # base64 of a 25.5 MB file
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": huge, "format": "wav"}}]}]
        )
    assert error.value.status_code == 413
    assert len(stored(data_dir).list_conversations()) == before  # nothing was stored for any of them


def test_a_full_queue_answers_429_with_retry_after(client, model, api):
    """The app runs with --api-queue-limit 0: while one answer is being written, another request is refused."""
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Keep talking"}], max_tokens=2000, stream=True
    )
    next(chunk for chunk in stream if chunk.choices[0].delta.content)  # the answer holds the model now
    with pytest.raises(openai.RateLimitError) as error:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "me too"}])
    assert error.value.response.headers["retry-after"].isdigit()
    stream.close()


def test_with_accounts_every_request_needs_a_valid_key(tmp_path, demo_model_dir):
    data_dir = tmp_path / "data"

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, str(ROOT / "run.py"), *args, "--data-dir", str(data_dir)],
                              capture_output=True, text=True, input="a-long-password\n", check=True, cwd=ROOT)
        return done.stdout

    cli("adduser", "alice", "--password-stdin")
    key = cli("apikey", "create", "--user", "alice", "--name", "editor").splitlines()[-1]
    assert key.startswith("sk-la-")
    app = ready_app(tmp_path / "app", "--model", str(demo_model_dir), "--data-dir", str(data_dir))
    try:
        for bad in ("not-needed", "sk-la-wrong"):
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=f"{app.url}/v1", api_key=bad, max_retries=0).models.list()
        client = openai.OpenAI(base_url=f"{app.url}/v1", api_key=key, max_retries=0, timeout=120)
        response = client.chat.completions.with_raw_response.create(
            model="demo", messages=[{"role": "user", "content": "for alice"}], max_tokens=4
        )
        conversation_id = response.headers["x-conversation-id"]
        assert stored(data_dir, "alice").get_conversation(conversation_id).title == "for alice"
        listed = cli("apikey", "list", "--user", "alice")
        assert "editor" in listed and key not in listed and "used 2" in listed  # the key itself is never shown again
        cli("apikey", "revoke", "--user", "alice", "--id", listed.split("\t")[0])
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    finally:
        app.kill()


def test_remote_media_is_never_fetched_from_this_machine_or_private_networks():
    from api.errors import ApiError
    from api.remote_media import fetch

    with pytest.raises(ApiError) as error:
        fetch("ftp://example.com/x.png", 1000, "messages[0].content[0]")
    assert error.value.status == 400
    # IPv6 forms that carry 127.0.0.1 or a private IPv4 address inside (tests/test_addresses.py has them all).
    for url in ("http://127.0.0.1:9/x.png", "http://localhost/x.png", "http://10.1.2.3/x.png", "http://[::1]/x.png",
                "http://169.254.169.254/latest/meta-data", "http://[::127.0.0.1]:9/x.png", "http://[64:ff9b::7f00:1]/x.png",
                "http://[2002:7f00:1::]/x.png", "http://[64:ff9b::a00:1]/x.png", "http://[::ffff:10.0.0.1]/x.png"):
        with pytest.raises(ApiError) as error:
            fetch(url, 1000, "messages[0].content[0]")
        assert error.value.status == 400 and "private network; that is refused" in error.value.message, url


PUBLIC_STAND_IN = "93.184.215.14"


def serve_public_name(monkeypatch, name: str, server_address) -> list[tuple[str, int]]:
    """Make `name` resolve to a public address (nothing public is reachable here) and hand connections to that
    address to the local server at `server_address`; returns the addresses fetch connected to."""
    import socket

    from api import remote_media

    connected: list[tuple[str, int]] = []
    real_connect, real_resolve = socket.create_connection, socket.getaddrinfo

    def connect(address, timeout=None):
        connected.append(address)
        assert address[0] == PUBLIC_STAND_IN  # only ever the address that was checked
        return real_connect(server_address, timeout=timeout)

    def resolve(host, port, *args, **kwargs):
        if host == name:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_STAND_IN, port))]
        return real_resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(remote_media.socket, "getaddrinfo", resolve)
    monkeypatch.setattr(remote_media.socket, "create_connection", connect)
    return connected


def test_remote_media_from_a_public_address_is_fetched_from_the_address_that_was_checked(monkeypatch, png_file):
    """The fetch itself, over a real HTTP exchange, with a local server standing in for a public one."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from api import remote_media
    from api.errors import ApiError

    image = png_file.read_bytes()

    class Media(BaseHTTPRequestHandler):
        def do_GET(self):
            served.append((self.headers["Host"], self.path))  # before answering: the client returns once it has read
            body = {"/cat.png": image, "/big.bin": b"x" * 5000}.get(self.path.split("?")[0])
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    served: list[tuple[str, str]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Media)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connected = serve_public_name(monkeypatch, "media.example", server.server_address)
    try:
        assert remote_media.fetch("http://media.example/cat.png?size=1", 10_000, "p") == image
        assert served[-1] == ("media.example", "/cat.png?size=1") and connected[-1] == (PUBLIC_STAND_IN, 80)
        with pytest.raises(ApiError) as missing:
            remote_media.fetch("http://media.example/gone.png", 10_000, "p")
        assert missing.value.status == 400 and "HTTP 404" in str(missing.value)
        with pytest.raises(ApiError) as large:
            remote_media.fetch("http://media.example/big.bin", 1000, "p")
        assert large.value.status == 413
    finally:
        server.shutdown()


@pytest.mark.parametrize("trickled", ["headers", "body"])
def test_remote_media_that_trickles_in_is_refused_at_the_deadline(monkeypatch, trickled):
    """A server sending a byte at a time, each well within any read timeout, is cut off when the whole fetch's
    deadline passes (with a clear error), not when it has finished."""
    import socketserver

    from api import remote_media
    from api.errors import ApiError

    body = b"x" * 200
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nX-Padding: {'p' * 100}\r\n\r\n".encode()

    class Trickle(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.recv(65536)
            if trickled == "body":
                self.request.sendall(head)
            for byte in (head if trickled == "headers" else b"") + body:
                time.sleep(0.1)
                try:
                    self.request.sendall(bytes([byte]))
                except OSError:
                    return  # the client hung up: what the test wants

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    serve_public_name(monkeypatch, "slow.example", server.server_address)
    monkeypatch.setattr(remote_media, "DEADLINE_S", 1.5, raising=False)
    started = time.monotonic()
    try:
        with pytest.raises(ApiError) as slow:
            remote_media.fetch("http://slow.example/cat.png", 10_000, "messages[0].content[1]")
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 3  # the whole answer would take 20-30 s
    assert slow.value.status == 400 and "took longer than 1.5 s" in slow.value.message
    assert slow.value.param == "messages[0].content[1]"


def test_a_model_that_failed_to_load_is_a_503_saying_why(start_app, demo_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(demo_model_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    app = start_app("--model", str(broken), "--data-dir", str(tmp_path / "data"), "--whisper-model", "none")
    app.wait_for_page()
    app.wait_for_log("ERROR")
    client = openai.OpenAI(base_url=f"{app.url}/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.InternalServerError) as error:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "hi"}])
    assert error.value.status_code == 503 and error.value.code == "model_not_loaded"
    assert "damaged" in error.value.message and "--demo" in error.value.message  # as the page says it
    assert "Safetensor" not in error.value.message and "Safetensor" in app.output()  # the details are in the log


def test_without_accounts_only_this_machine_may_use_the_api(tmp_path):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from api.routes import ChatApi

    api = ChatApi(None, None, "demo", accounts=lambda: False, user_of_key=lambda key: None, upload_dir=tmp_path)
    for client_address, status in ((("192.168.1.20", 5000), 401), (("::ffff:127.0.0.1", 5000), 200)):
        api.host = type("Host", (), {"engine": None})()
        with TestClient(Starlette(routes=api.routes()), client=client_address) as client:
            response = client.get("/v1/models")
        assert response.status_code == status, client_address
        if status == 401:
            assert response.json()["error"]["code"] == "invalid_api_key"


def test_history_never_stored_here_brings_its_files_into_a_new_conversation(client, model, api, tmp_path):
    """The history's files are checked as a turn's are (once), and stored with the kind and type their bytes show."""
    _, data_dir = api
    picture = png(tmp_path / "earlier.png", color=(10, 200, 30))
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Earlier picture"},
                                     {"type": "image_url", "image_url": {"url": data_url(picture, "image/jpeg")}}]},
        {"role": "assistant", "content": "A green square."},
        {"role": "user", "content": "And now?"},
    ]  # fmt: skip
    response = client.chat.completions.with_raw_response.create(model=model, messages=history, max_tokens=8)
    messages = stored(data_dir).get_messages(response.headers["x-conversation-id"])
    assert [m.text for m in messages][:3] == ["Earlier picture", "A green square.", "And now?"]
    [attachment] = messages[0].attachments
    assert (attachment.kind.value, attachment.mime) == ("image", "image/png")
    assert attachment.path.read_bytes() == picture.read_bytes()


# --- the API in this process, on a dialogue manager the test holds: concurrency, crashes, faults of the machine ---


@contextlib.contextmanager
def served(dialogue, tmp_path):
    """ChatApi's routes served by uvicorn on a free loopback port, in a thread; yields an `openai` client for it."""
    import uvicorn
    from starlette.applications import Starlette

    from api.routes import ChatApi
    from tests.helpers import free_port

    api = ChatApi(dialogue, dialogue.host, "demo", accounts=lambda: False, user_of_key=lambda key: None,
                  upload_dir=tmp_path / "api-uploads")
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=api.routes()), host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 20, 0.05, "the API server did not start")
    assert server.started, "the API server did not start"
    try:
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{server.config.port}/v1", api_key="none", max_retries=0, timeout=120)
    finally:
        server.should_exit = True
        thread.join(10)


def tree(repository, conversation_id):
    """Every message of a conversation, on every branch."""
    [exported] = repository.export_conversations([conversation_id])
    return exported.messages


def test_clients_continuing_one_conversation_at_once_each_make_a_branch_of_it(engine, repository, tmp_path):
    """Four clients send [u0, a0, u_i] at the same moment: each question hangs under a0 in the one conversation, and
    each answer is made from its own branch, never with another client's question in its context."""
    from assistant.dialogue import DialogueManager
    from assistant.media import MediaLoader
    from assistant.turn_queue import TurnQueue
    from tests.engine_helpers import RecordingEngine, ready_host

    recording = RecordingEngine(engine, max_new_tokens=6)
    dialogue = DialogueManager(repository, ready_host(recording), MediaLoader(), TurnQueue())
    with served(dialogue, tmp_path) as client:
        first = client.chat.completions.with_raw_response.create(
            model="demo", messages=[{"role": "user", "content": "Where shall we start?"}], max_tokens=6
        )
        conversation_id = first.headers["x-conversation-id"]
        history = [{"role": "user", "content": "Where shall we start?"},
                   {"role": "assistant", "content": first.parse().choices[0].message.content}]
        questions = [f"Client {name} asks about {name}s" for name in ("apple", "boat", "cloud", "drum")]
        start = threading.Barrier(len(questions))
        answers: dict[str, tuple[str, str]] = {}

        def ask(question: str) -> None:
            start.wait()
            response = client.chat.completions.with_raw_response.create(
                model="demo", messages=[*history, {"role": "user", "content": question}], max_tokens=6
            )
            answers[question] = (response.headers["x-conversation-id"], response.parse().choices[0].message.content)

        clients = [threading.Thread(target=ask, args=(q,)) for q in questions]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(120)
    assert sorted(answers) == sorted(questions)
    assert {conversation for conversation, _ in answers.values()} == {conversation_id}
    assert [c.id for c in repository.list_conversations()] == [conversation_id]  # no copies
    messages = tree(repository, conversation_id)
    first_answer = next(m for m in messages if m.role.value == "assistant")
    for question in questions:
        [asked] = [m for m in messages if m.text == question]
        [answer] = [m for m in messages if m.parent_id == asked.id]
        assert asked.parent_id == first_answer.id
        assert (answer.status.value, answer.text) == ("complete", answers[question][1])
    prompts = [engine.processor.tokenizer.decode(p["input_ids"][0]) for p in recording.prepared[1:]]
    assert len(prompts) == len(questions)
    for prompt in prompts:
        assert sum(q in prompt for q in questions) == 1, prompt  # its own question only


def test_a_follow_up_after_a_crash_continues_the_conversation_whose_interrupted_answer_it_extends(engine, repository, tmp_path):
    """The app was killed while answering; the client had received more of the answer than was saved. Its follow-up
    continues that conversation (no copy with the partial answer taken for complete), and the answer keeps the
    longer text the client holds, still marked as interrupted."""
    from assistant.dialogue import DialogueManager
    from assistant.media import MediaLoader
    from assistant.turn_queue import TurnQueue
    from storage.database import open_database, sqlite_url
    from storage.instances import INTERRUPTED, Instances
    from tests.engine_helpers import RecordingEngine, ready_host

    conversation = repository.create_conversation("Tell me a story")
    repository.add_user_message(conversation.id, "Tell me a story", [])
    killed = repository.start_assistant_message(conversation.id)
    repository.update_message_text(killed.id, "Once upon a")  # the last save before the kill
    Instances(open_database(sqlite_url(tmp_path / "db.sqlite3")), "restarted:1").mark_interrupted(startup=True)
    received = "Once upon a time there was a fox called Ruby."

    recording = RecordingEngine(engine, max_new_tokens=6)
    dialogue = DialogueManager(repository, ready_host(recording), MediaLoader(), TurnQueue())
    with served(dialogue, tmp_path) as client:
        response = client.chat.completions.with_raw_response.create(model="demo", max_tokens=6, messages=[
            {"role": "user", "content": "Tell me a story"}, {"role": "assistant", "content": received},
            {"role": "user", "content": "What was the fox called?"}])
    assert response.headers["x-conversation-id"] == conversation.id
    assert len(repository.list_conversations()) == 1
    story, answer, question, reply = repository.get_messages(conversation.id)
    assert (answer.id, answer.text, answer.status.value, answer.error) == (killed.id, received, "error", INTERRUPTED)
    assert question.text == "What was the fox called?" and reply.status.value == "complete"
    assert "fox called Ruby" in engine.processor.tokenizer.decode(recording.prepared[-1]["input_ids"][0])


def test_faults_of_the_machine_are_503_with_retry_after_and_a_generation_servers_a_502(engine, tmp_path, monkeypatch, png_file):
    import sqlite3

    import storage.database
    from assistant.dialogue import DialogueManager
    from assistant.media import MediaLoader
    from assistant.turn_queue import TurnQueue
    from domain.errors import EngineUnavailable
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository
    from tests.engine_helpers import RecordingEngine, ready_host

    monkeypatch.setattr(storage.database, "BUSY_TIMEOUT_S", 0.5, raising=False)
    repository = ConversationRepository(open_database(sqlite_url(tmp_path / "db.sqlite3")), BlobStore(tmp_path / "files"))

    class ServerDown(RecordingEngine):
        down = False

        def prepare(self, model_input):
            if self.down:
                raise EngineUnavailable("The generation server did not answer; check that it is running.")
            return super().prepare(model_input)

    engine = ServerDown(engine, max_new_tokens=4)
    dialogue = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    question = [{"role": "user", "content": "Hello?"}]
    with served(dialogue, tmp_path) as client:
        # Another program holds the database's lock.
        other_program = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
        other_program.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(openai.APIStatusError) as busy:
                client.chat.completions.create(model="demo", messages=question)
        finally:
            other_program.execute("ROLLBACK")
        assert busy.value.status_code == 503 and busy.value.response.headers["retry-after"].isdigit()
        assert busy.value.body["type"] == "server_error" and busy.value.code == "service_unavailable"
        assert "database is busy" in busy.value.message

        # The disk is full when the question's image is written.
        import storage.blobs

        class NoSpace:
            @staticmethod
            def copyfileobj(source, target, length=0):
                raise OSError(28, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(storage.blobs, "shutil", NoSpace)
            with pytest.raises(openai.APIStatusError) as full:
                client.chat.completions.create(model="demo", messages=[{"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": data_url(png_file, "image/png")}}]}])
        assert full.value.status_code == 503 and full.value.response.headers["retry-after"].isdigit()
        assert "disk is full" in full.value.message

        # The generation server fails: its fault, not ours.
        engine.down = True
        with pytest.raises(openai.APIStatusError) as remote:
            client.chat.completions.create(model="demo", messages=question)
        assert remote.value.status_code == 502 and remote.value.code == "engine_unavailable"
        assert "generation server" in remote.value.message
        stream = client.chat.completions.create(model="demo", messages=question, stream=True)
        with pytest.raises(openai.APIError) as streamed:
            list(stream)
        assert streamed.value.code == "engine_unavailable"
        engine.down = False
        assert client.chat.completions.create(model="demo", messages=question, max_tokens=4).choices[0].message.content


def test_a_deeply_nested_body_is_a_clear_refusal(client):
    """json.loads raised RecursionError for [[[[…]]]] a few million deep: a 500 instead of a 400."""
    import httpx

    for body in (b"[" * 5_000_000, b'{"model": "demo", "messages": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"):
        response = httpx.post(f"{client.base_url}chat/completions", content=body,
                              headers={"Content-Type": "application/json"}, timeout=60)  # fmt: skip
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_json"


def test_a_parameter_of_the_wrong_type_is_a_400(client):
    import httpx

    for body in ({"modalities": 5}, {"modalities": "text"}, {"stream_options": 3}):
        response = httpx.post(f"{client.base_url}chat/completions", json={"model": "demo", "messages": [{"role": "user", "content": "hi"}], **body}, timeout=60)
        assert response.status_code == 400, (body, response.text)


def test_each_streamed_event_is_one_line_for_any_reader():
    """JSON leaves U+2028, U+0085 and a few control characters unescaped; str.splitlines() (httpx's iter_lines) breaks
    lines there, so a reader lost the text of any chunk holding one (the random demo model writes them)."""
    import json

    from api.routes import _sse

    text = "a\u2028b\u2029c\x85d\x1ce\x0bf\x0cg — ünïcode ✓\nnewline"
    event = _sse({"choices": [{"delta": {"content": text}}]})
    assert event.endswith("\n\n") and len(event[:-2].splitlines()) == 1
    assert json.loads(event[len("data: "):])["choices"][0]["delta"]["content"] == text


U = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
    ([], (400, 'The request body must be a JSON object.', None, None)),
        ({"messages": [U]}, (400, '`model` is required.', 'model', 'missing_required_parameter')),
        ({"model": "m", "messages": []}, (400, '`messages` must be a non-empty list.', 'messages', 'missing_required_parameter')),
        ({"model": "m", "messages": [5]}, (400, '`messages[0]` must be an object.', 'messages[0]', None)),
        ({"model": "m", "messages": [{"role": "tool"}]}, (400, '`messages[0].role` is not supported here: tools and function calling.', 'messages[0].role', 'unsupported_parameter')),
        ({"model": "m", "messages": [{"role": "bot"}]}, (400, '`messages[0].role` must be system, developer, user or assistant.', 'messages[0].role', None)),
        ({"model": "m", "messages": [{"role": "user", "content": "x", "tool_calls": [1]}]}, (400, '`messages[0].tool_calls` is not supported here: tools and function calling.', 'messages[0].tool_calls', 'unsupported_parameter')),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, (400, '`messages[0].content` must be a string or a list of parts.', 'messages[0].content', None)),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, (400, '`messages[0].content[0].type` must be text, image_url, input_audio or audio_url.', 'messages[0].content[0].type', None)),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, (400, '`messages[0].content[0]` needs a `url`.', 'messages[0].content[0]', None)),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": 5}}]}]}, (400, '`messages[0].content[0].input_audio` needs base64 `data` and a `format`.', 'messages[0].content[0].input_audio', None)),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}]}]}, (400, '`messages[0].content[0].input_audio.format` must be wav or mp3.', 'messages[0].content[0].input_audio.format', None)),
        ({"model": "m", "messages": [{"role": "system", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}, U]}, (400, 'A system message can hold only text.', 'messages[0].content', None)),
        ({"model": "m", "messages": [U, {"role": "assistant", "content": "x"}]}, (400, "The last message must be the user's.", 'messages', None)),
        ({"model": "m", "messages": [U], "stream_options": 3}, (400, '`stream_options` must be an object.', 'stream_options', None)),
        ({"model": "m", "messages": [U], "stop": ["a"] * 5}, (400, '`stop` must be a string or a list of at most 4 strings.', 'stop', 'invalid_value')),
        ({"model": "m", "messages": [U], "max_completion_tokens": 0}, (400, '`max_completion_tokens`: Input should be greater than or equal to 1.', 'max_completion_tokens', 'invalid_value')),
        ({"model": "m", "messages": [U], "modalities": ["text"], "audio": {"voice": "x"}}, (400, '`modalities` is not supported here: answers are text.', 'modalities', 'unsupported_parameter')),
        ({"model": "m", "messages": [U], "top_logprobs": 3}, (400, '`top_logprobs` is not supported here: log probabilities.', 'top_logprobs', 'unsupported_parameter')),
        ({"model": "m", "messages": [U], "presence_penalty": 1}, (400, '`presence_penalty` is not supported here: no repetition penalties.', 'presence_penalty', 'unsupported_parameter')),
    ],
)
def test_a_bad_request_body_is_refused_naming_the_parameter(body, refusal):
    """Checked without a server: (status, message, param, code) of the first fault, as OpenAI's clients show it."""
    from api.errors import ApiError
    from api.request import parse

    with pytest.raises(ApiError) as error:
        parse(body, None)
    assert (error.value.status, error.value.message, error.value.param, error.value.code) == refusal
