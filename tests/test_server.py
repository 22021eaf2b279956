"""The served app as other programs and web pages see it: Host checking, security headers, upload limits.

One `python run.py` process for the module; no model answers are needed.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from domain import limits
from tests.helpers import AppProcess, upload


@pytest.fixture(scope="module")
def app(demo_model_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("server-data")
    stale = data_dir / "uploads" / "0123abcd" / "left-in-a-composer.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    process = AppProcess(
        ["--model", str(demo_model_dir), "--data-dir", str(data_dir), "--allowed-hosts", "my-box.lan, other.lan"],
        data_dir.parent / "server.log",
    )
    try:
        process.wait_for_page()
        process.data_dir = data_dir
        yield process
    finally:
        process.kill()


def get(app, path: str, host: str | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host or f"127.0.0.1:{app.port}")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "[::2]:{port}"])
@pytest.mark.parametrize("path", ["/", "/gradio_api/info", "/config"])
def test_a_foreign_host_header_is_refused(app, host, path):
    """DNS rebinding: a page on evil.example, resolved to 127.0.0.1, must not read the app."""
    status, _, body = get(app, path, host.format(port=app.port))
    assert status == 400 and b"Invalid host header" in body


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "localhost", "[::1]:{port}", "my-box.lan:{port}", "other.lan"])
def test_the_names_it_is_served_as_are_accepted(app, host):
    status, _, _ = get(app, "/", host.format(port=app.port))
    assert status == 200


def test_the_page_forbids_loading_anything_from_elsewhere(app):
    status, headers, _ = get(app, "/")
    assert status == 200
    policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["img-src"] == "'self' data: blob:"
    assert policy["connect-src"] == "'self'"
    assert headers["x-content-type-options"] == "nosniff"


def test_analytics_are_off(app):
    status, _, body = get(app, "/config")
    assert status == 200
    assert json.loads(body)["analytics_enabled"] is False


def uploaded_files(app) -> list[Path]:
    return [p for p in (app.data_dir / "uploads").rglob("*") if p.is_file()]


def test_uploads_left_by_an_earlier_run_are_deleted_at_startup(app):
    assert not (app.data_dir / "uploads" / "0123abcd").exists()
    assert "deleted 1 upload(s) an earlier run left unsent" in app.output()


def test_an_upload_over_the_limit_of_its_kind_is_refused_as_it_arrives(app):
    before = uploaded_files(app)
    status, body = upload(app, "huge.wav", limits.MAX_FILE_BYTES + (1 << 20))
    assert status == 413 and "“huge.wav” is larger than 25 MB".encode() in body
    assert uploaded_files(app) == before  # nothing of it is kept
    status, body = upload(app, "fine.wav", 1000)
    assert status == 200 and json.loads(body)[0].endswith("fine.wav")
    status, body = upload(app, "phone.mp4", limits.MAX_FILE_BYTES + (1 << 20))  # a video has a limit of its own
    assert status == 200 and json.loads(body)[0].endswith("phone.mp4")
