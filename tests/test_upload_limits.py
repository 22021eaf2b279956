"""The page's uploads held to the limit of their kind as they arrive (ui/upload_limits.py), through Gradio's real
upload route, with small limits: a video may be larger than other files; a file past its limit leaves nothing."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from domain import limits
from tests.loops import run_coroutine

FILE_LIMIT, VIDEO_LIMIT = 3000, 20_000


def small_limits(name: str, content_type: str = "") -> int:
    return VIDEO_LIMIT if limits.max_file_bytes(name, content_type) == limits.MAX_VIDEO_BYTES else FILE_LIMIT


@pytest.fixture
def server(tmp_path, monkeypatch):
    import gradio as gr

    from ui.server import build_server_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    with gr.Blocks() as blocks:
        gr.MultimodalTextbox()
    parent, _ = build_server_app(blocks, routes=[], middleware=[], auth=None, max_file_size=VIDEO_LIMIT, file_limit=small_limits)
    return parent, tmp_path / "uploads"


def post(app, files: list[tuple[str, str, int]], chunk: int = 1000, headers: tuple = ()) -> tuple[int, bytes]:
    """POST (name, content type, size) files to the upload route in `chunk`-byte messages, as a browser streams them
    (with `headers` besides its own)."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, content_type, size in files:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n").encode() + b"\1" * size + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    scope = {
        "type": "http", "method": "POST", "path": "/gradio_api/upload", "raw_path": b"/gradio_api/upload",
        "root_path": "", "scheme": "http", "query_string": b"", "http_version": "1.1",
        "server": ("127.0.0.1", 7860), "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"127.0.0.1:7860"), (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
                    (b"content-length", str(len(body)).encode()), *headers],
    }
    sent: list[dict] = []

    async def receive():
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        await asyncio.sleep(3600)  # nothing more comes: the client waits for an answer

    async def send(message):
        sent.append(message)

    run_coroutine(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def kept(folder) -> list:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_a_video_may_be_larger_than_other_files(server):
    app, folder = server
    status, body = post(app, [("clip.mp4", "video/mp4", FILE_LIMIT * 3), ("photo.png", "image/png", 100)])
    assert status == 200, body
    assert [path.rsplit("/", 1)[-1] for path in json.loads(body)] == ["clip.mp4", "photo.png"]
    status, body = post(app, [("phone clip", "video/quicktime", FILE_LIMIT * 3)])  # by its declared type
    assert status == 200, body


@pytest.mark.parametrize(
    "files, named",
    [
        ([("photo.png", "image/png", FILE_LIMIT + 1)], "photo.png"),
        ([("clip.mp4", "video/mp4", 500), ("voice.wav", "audio/wav", FILE_LIMIT * 2)], "voice.wav"),
        ([("clip.mkv", "application/octet-stream", VIDEO_LIMIT + 1)], "clip.mkv"),
    ],
)
def test_a_file_past_its_limit_is_refused_as_it_arrives_and_nothing_is_kept(server, files, named):
    app, folder = server
    status, body = post(app, files)
    assert status == 413
    assert f"“{named}” is larger than".encode() in body
    assert kept(folder) == []


def test_the_refusal_is_in_the_pages_language_its_switch_first(server):
    app, _ = server
    files = [("photo.png", "image/png", FILE_LIMIT + 1)]
    status, body = post(app, files, headers=((b"accept-language", b"zh-CN,zh;q=0.9"),))
    assert status == 413 and "“photo.png”大于".encode() in body
    chosen = ((b"accept-language", b"zh-CN"), (b"cookie", b"assistant-lang=en"))
    assert "“photo.png” is larger than".encode() in post(app, files, headers=chosen)[1]
    chosen = ((b"accept-language", b"en-GB"), (b"cookie", b"assistant-lang=zh-CN"))
    assert "“photo.png”大于".encode() in post(app, files, headers=chosen)[1]


def test_the_limit_for_a_name_or_type():
    assert limits.max_file_bytes("Clip.MOV") == limits.max_file_bytes("x", "video/webm") == limits.MAX_VIDEO_BYTES
    assert limits.max_file_bytes("photo.png", "image/png") == limits.max_file_bytes("clip.mp4.txt") == limits.MAX_FILE_BYTES
