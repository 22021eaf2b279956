"""What the OpenAI API refuses, and how: bad bodies and parameters, a full queue, API keys, a model that did not load."""

from __future__ import annotations

import subprocess
import sys

import openai
import pytest

from tests.helpers import ROOT, data_url, ready_app, stored
from tests.media_factory import png


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
        ({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}, "“video-1.mp4”"),  # read, and not a video
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
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, (400, '`messages[0].content[0].type` must be text, image_url, input_audio, audio_url or video_url.', 'messages[0].content[0].type', None)),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, (400, '`messages[0].content[0]` needs a `url`.', 'messages[0].content[0]', None)),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": 5}}]}]}, (400, '`messages[0].content[0].input_audio` needs base64 `data` and a `format`.', 'messages[0].content[0].input_audio', None)),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}]}]}, (400, '`messages[0].content[0].input_audio.format` must be wav or mp3.', 'messages[0].content[0].input_audio.format', None)),
        ({"model": "m", "messages": [{"role": "system", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}, U]}, (400, 'A system message can hold only text.', 'messages[0].content', None)),
        ({"model": "m", "messages": [U, {"role": "assistant", "content": "x"}]}, (400, "The last message must be the user's.", 'messages', None)),
        ({"model": "m", "messages": [U], "stream_options": 3}, (400, '`stream_options` must be an object.', 'stream_options', None)),
        ({"model": "m", "messages": [U], "stop": ["a"] * 5}, (400, '`stop` must be a string or a list of at most 4 strings.', 'stop', 'invalid_value')),
        ({"model": "m", "messages": [U], "max_completion_tokens": 0}, (400, '`max_completion_tokens`: Input should be greater than or equal to 1.', 'max_completion_tokens', 'invalid_value')),
        ({"model": "m", "messages": [U], "modalities": ["text"], "audio": {"voice": "x"}}, (400, '`audio` asks for a spoken answer, which `modalities` must ask for too: ["text", "audio"].', 'modalities', 'invalid_value')),
        ({"model": "m", "messages": [U], "modalities": ["audio"]}, (400, '`modalities` is not supported here: answers are text, or text and audio.', 'modalities', 'unsupported_parameter')),
        ({"model": "m", "messages": [U], "modalities": ["text", "audio"]}, (400, '`audio` is required with audio in `modalities`: give its `voice` and `format`.', 'audio', 'missing_required_parameter')),
        ({"model": "m", "messages": [U], "modalities": ["text", "audio"], "audio": {"format": "wav"}}, (400, '`audio.voice` is required: the voice to speak the answer in.', 'audio.voice', 'missing_required_parameter')),
        ({"model": "m", "messages": [U], "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "ogg"}}, (400, '`audio.format` must be one of wav, mp3, flac, opus, aac, pcm16.', 'audio.format', 'invalid_value')),
        ({"model": "m", "messages": [U], "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}, "stream": True}, (400, "A streamed spoken answer comes as raw pcm16, as OpenAI's does: set `audio.format` to pcm16.", 'audio.format', 'invalid_value')),
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
