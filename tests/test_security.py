"""The served app as a hostile web site, a stale session and a password guesser see it: same-origin policy, CORS,
files served inert, sign-in limits and sessions that end with their user. Real `python run.py` processes."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import urllib.parse
import uuid
from pathlib import Path

import pytest

from tests.helpers import ROOT, AppProcess

API_BODY = {"model": "demo", "messages": [{"role": "user", "content": "from another site"}], "max_tokens": 2}


def request(app, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    """(status, lower-cased headers with every Set-Cookie, body) of one raw request, Host and all under our control."""
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
    try:
        headers = {"Host": f"127.0.0.1:{app.port}", **(headers or {})}
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        listed = {}
        for name, value in response.getheaders():
            listed.setdefault(name.lower(), []).append(value)
        return response.status, {k: "\n".join(v) for k, v in listed.items()}, response.read()
    finally:
        connection.close()


def cli(data_dir: Path, *args: str, password: str | None = None) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args, "--data-dir", str(data_dir)],
        input=(password + "\n") if password else None, text=True, cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip


def repository(data_dir: Path):
    from cli.data import open_storage

    return open_storage(data_dir, None).conversations


def conversations_in(data_dir: Path) -> int:
    import sqlite3

    with sqlite3.connect(data_dir / "conversations.sqlite3") as db:
        return db.execute("select count(*) from conversation").fetchone()[0]


def start(demo_model_dir, folder: Path, *args: str) -> AppProcess:
    data_dir = folder / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    process = AppProcess(["--model", str(demo_model_dir), "--data-dir", str(data_dir), *args], folder / "app.log")
    process.data_dir = data_dir
    process.wait_for_page()
    return process


@pytest.fixture(scope="module")
def app(demo_model_dir, tmp_path_factory):
    """No accounts, on loopback; reachable as my-box.lan too; one trusted web origin."""
    process = start(
        demo_model_dir, tmp_path_factory.mktemp("open"),
        "--allowed-hosts", "my-box.lan", "--allowed-origins", "https://trusted.example",
    )  # fmt: skip
    process.wait_for_log("model ready")
    yield process
    process.kill()


# --- the same-origin policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Origin": "http://127.0.0.1:1"},  # another port of this machine: another origin
        {"Origin": "http://localhost"},
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},  # a form or beacon that sent no Origin
        {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},  # another port of localhost is the same site
    ],
)
def test_another_site_cannot_make_a_browser_use_the_api(app, headers):
    before = conversations_in(app.data_dir)
    for content_type in ("application/json", "text/plain"):
        status, _, body = request(app, "POST", "/v1/chat/completions", {**headers, "Content-Type": content_type},
                                  json.dumps(API_BODY).encode())  # fmt: skip
        error = json.loads(body)["error"]
        assert status == 403 and error["code"] == "cross_origin" and error["type"] == "permission_error"
        assert "--allowed-origins" in error["message"]
    assert conversations_in(app.data_dir) == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
def test_the_api_takes_only_json_bodies(app, content_type):
    """What a web page may send anywhere without a CORS preflight is refused even from this machine."""
    before = conversations_in(app.data_dir)
    headers = {"Content-Type": content_type} if content_type else {}
    status, _, body = request(app, "POST", "/v1/chat/completions", headers, json.dumps(API_BODY).encode())
    assert status == 415 and json.loads(body)["error"]["code"] == "unsupported_media_type"
    assert conversations_in(app.data_dir) == before


def test_the_page_itself_and_programs_still_reach_the_api(app):
    for headers in ({}, {"Origin": f"http://127.0.0.1:{app.port}", "Sec-Fetch-Site": "same-origin"},
                    {"Origin": f"http://my-box.lan:{app.port}", "Host": f"my-box.lan:{app.port}"},
                    {"Origin": "https://trusted.example"}):  # fmt: skip
        status, _, body = request(app, "POST", "/v1/chat/completions", {**headers, "Content-Type": "application/json; charset=utf-8"},
                                  json.dumps(API_BODY).encode())  # fmt: skip
        assert status == 200, body


def test_another_site_cannot_upload_files(app):
    uploads = app.data_dir / "uploads"
    before = sorted(p for p in uploads.rglob("*") if p.is_file())
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'
            f"Content-Type: image/png\r\n\r\n{'x' * 5000}\r\n--{boundary}--\r\n").encode()  # fmt: skip
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}):
        headers = {**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, _, _ = request(app, "POST", "/gradio_api/upload", headers, body)
        assert status == 403
    assert sorted(p for p in uploads.rglob("*") if p.is_file()) == before
    status, _, _ = request(app, "POST", "/gradio_api/upload", {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                                "Origin": f"http://127.0.0.1:{app.port}"}, body)  # fmt: skip
    assert status == 200  # the page's own upload


def test_a_link_from_another_site_still_opens_the_page(app):
    status, _, _ = request(app, "GET", "/", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
    assert status == 200
    status, _, _ = request(app, "GET", "/config", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"})
    assert status == 403  # but another site cannot load the app's resources into its own page


@pytest.mark.parametrize("path", ["/gradio_api/upload", "/v1/chat/completions", "/gradio_api/queue/join"])
def test_cors_is_granted_to_the_listed_origins_only(app, path):
    """Gradio's own CORS middleware answered any site reaching the app by a non-localhost name with credentialed CORS."""
    for host in (f"my-box.lan:{app.port}", f"127.0.0.1:{app.port}"):
        preflight = {"Host": host, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        _, headers, _ = request(app, "OPTIONS", path, {**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in headers and "access-control-allow-credentials" not in headers
        _, headers, _ = request(app, "GET", "/gradio_api/info", {"Host": host, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in headers
        status, headers, _ = request(app, "OPTIONS", path, {**preflight, "Origin": "https://trusted.example"})
        assert status == 200 and headers["access-control-allow-origin"] == "https://trusted.example"


def test_a_foreign_host_gets_an_api_error_naming_the_option(app):
    """Open WebUI in Docker calls the host as host.docker.internal: it must be told what to change."""
    status, headers, body = request(app, "GET", "/v1/models", {"Host": "host.docker.internal:7860"})
    error = json.loads(body)["error"]
    assert status == 400 and headers["content-type"] == "application/json"
    assert error["code"] == "invalid_host" and "--allowed-hosts host.docker.internal" in error["message"]
    status, _, body = request(app, "GET", "/", {"Host": "host.docker.internal:7860"})
    assert status == 400 and body.startswith(b"Invalid host header")


# --- stored files are never active content -------------------------------------------------------------------


def test_stored_files_are_served_inert(app, png_file, tmp_path):
    """An older import could store any bytes as text/html: served, they must not run as the app's page."""
    from domain.types import MediaFile, MediaKind

    page = tmp_path / "evil.html"
    page.write_text("<script>fetch('/gradio_api/user').then(r => r.text()).then(alert)</script>")
    svg = tmp_path / "evil.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>')
    files = [
        MediaFile(png_file, "car.png", MediaKind.IMAGE, "image/png"),
        MediaFile(page, "evil.html", MediaKind.IMAGE, "text/html"),
        MediaFile(svg, "evil.svg", MediaKind.IMAGE, "image/svg+xml"),
    ]
    message = repository(app.data_dir).add_user_message(None, "planted", files)
    served = {}
    for attachment in message.attachments:
        status, headers, body = request(app, "GET", f"/attachments/{attachment.path.name}")
        assert status == 200 and body == attachment.path.read_bytes()
        assert headers["content-security-policy"] == "sandbox" and headers["x-content-type-options"] == "nosniff"
        served[attachment.filename] = (headers["content-type"], headers["content-disposition"].split(";")[0])
    assert served == {
        "car.png": ("image/png", "inline"),
        "evil.html": ("application/octet-stream", "attachment"),
        "evil.svg": ("application/octet-stream", "attachment"),
    }


def test_a_video_is_served_as_one_and_in_byte_ranges_for_seeking(app, tmp_path):
    from domain.types import MediaFile, MediaKind

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(bytes(range(256)) * 40)  # storage takes the kind it is told
    [stored] = repository(app.data_dir).add_user_message(None, "clip", [MediaFile(clip, "clip.mp4", MediaKind.VIDEO, "video/mp4")]).attachments
    status, headers, body = request(app, "GET", f"/attachments/{stored.path.name}")
    assert status == 200 and headers["content-type"] == "video/mp4" and headers["accept-ranges"] == "bytes"
    assert headers["content-disposition"].startswith("inline") and headers["content-security-policy"] == "sandbox"
    status, headers, body = request(app, "GET", f"/attachments/{stored.path.name}", {"Range": "bytes=100-199"})
    assert status == 206 and body == clip.read_bytes()[100:200] and headers["content-range"] == "bytes 100-199/10240"


# --- accounts: sessions and sign-in limits -------------------------------------------------------------------


def sign_in(app, name: str, password: str, address_headers: dict | None = None) -> tuple[int, dict, dict]:
    """(status, headers, cookies) of a sign-in through Gradio's own login route."""
    body = urllib.parse.urlencode({"username": name, "password": password}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **(address_headers or {})}
    status, headers, _ = request(app, "POST", "/login", headers, body)
    cookies = {}
    for line in headers.get("set-cookie", "").splitlines():
        pair = line.split(";", 1)[0]
        cookies[pair.split("=", 1)[0]] = pair.split("=", 1)[1]
    return status, headers, cookies


def user_of(app, cookies: dict) -> str | None:
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    status, _, body = request(app, "GET", "/gradio_api/user", {"Cookie": cookie})
    assert status == 200
    return json.loads(body)


@pytest.fixture
def accounts_app(demo_model_dir, tmp_path):
    folder = tmp_path / "accounts"
    (folder / "data").mkdir(parents=True)
    for name in ("alice", "bob", "carol"):
        cli(folder / "data", "adduser", name, "--password-stdin", password=f"{name}'s password")
    process = start(demo_model_dir, folder)
    yield process
    process.kill()


def test_sessions_end_when_their_user_is_deleted_or_changes_password(accounts_app, png_file):
    app = accounts_app
    sessions = {}
    for name in ("alice", "bob", "carol"):
        status, headers, cookies = sign_in(app, name, f"{name}'s password")
        assert status == 200
        # Other sites' requests must not carry the session: Gradio's own cookie said SameSite=None.
        assert all("samesite=lax" in line.lower() for line in headers["set-cookie"].splitlines())
        assert user_of(app, cookies) == name
        sessions[name] = cookies

    cli(app.data_dir, "deluser", "carol")
    cli(app.data_dir, "passwd", "bob", "--password-stdin", password="bob's new password")
    assert user_of(app, sessions["carol"]) is None
    assert user_of(app, sessions["bob"]) is None
    assert user_of(app, sessions["alice"]) == "alice"
    status, _, _ = request(app, "POST", "/gradio_api/queue/join", {"Cookie": "; ".join(f"{k}={v}" for k, v in sessions["carol"].items()),
                                                                    "Content-Type": "application/json"}, b"{}")  # fmt: skip
    assert status == 401
    assert sign_in(app, "bob", "bob's new password")[0] == 200

    # With accounts, a file nobody owns (as carol's stale session used to store them) is served to nobody.
    from domain.types import MediaFile, MediaKind

    [stray] = repository(app.data_dir).add_user_message(None, "owner-less", [MediaFile(png_file, "x.png", MediaKind.IMAGE, "image/png")]).attachments
    for cookies in ({}, sessions["carol"]):
        status, _, _ = request(app, "GET", f"/attachments/{stray.path.name}", {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
        assert status == 404


def test_password_guessing_is_limited_per_user_and_per_address(accounts_app):
    from domain.limits import FAILURES_PER_ADDRESS, FAILURES_PER_USER

    app = accounts_app
    for _ in range(FAILURES_PER_USER):
        assert sign_in(app, "alice", "guess")[0] == 400
    status, headers, _ = sign_in(app, "alice", "alice's password")  # even the right one, now
    assert status == 429 and 0 < int(headers["retry-after"]) <= 15 * 60
    assert sign_in(app, "bob", "bob's password")[0] == 200  # another account is not held up

    # One address guessing across many names.
    tried = FAILURES_PER_USER + 1
    names = iter(f"nobody{i}" for i in range(100))
    while tried < FAILURES_PER_ADDRESS + 1:
        assert sign_in(app, next(names), "guess")[0] == 400
        tried += 1
    status, headers, _ = sign_in(app, "carol", "carol's password")
    assert status == 429 and int(headers["retry-after"]) > 0


def test_passwords_are_checked_off_the_event_loop():
    """Argon2 takes ~50 ms: checked on the event loop, every other request waited behind each sign-in."""
    import asyncio

    from ui.sessions import Sessions

    threads = []

    class Users:
        def verify(self, name, password):
            threads.append(threading.current_thread())
            return password == "right"

    async def check():
        sessions = Sessions(Users())
        return await sessions.authenticate("alice", "right"), await sessions.authenticate("alice", "wrong")

    results = []
    loop_thread = threading.Thread(target=lambda: results.append(asyncio.run(check())))  # a loop of its own
    loop_thread.start()
    loop_thread.join()
    assert results == [(True, False)]
    assert len(threads) == 2 and all(t is not loop_thread for t in threads)


def test_the_failure_window_slides():
    from ui.sessions import FailureLimit

    now = [0.0]
    limit = FailureLimit(3, window_s=60, clock=lambda: now[0])
    for t in (0, 10, 20):
        now[0] = t
        limit.fail("alice")
    assert limit.wait_s("alice") == pytest.approx(40)
    now[0] = 61
    assert limit.wait_s("alice") == 0  # the first failure has left the window
    limit.fail("alice")
    assert limit.wait_s("alice") == pytest.approx(9)
    limit.clear("alice")
    assert limit.wait_s("alice") == 0


def test_with_accounts_a_name_that_is_no_user_is_not_signed_in(tmp_path):
    from domain.errors import NotSignedIn
    from cli.data import open_storage
    from ui.sessions import Sessions

    users = open_storage(tmp_path, None).users
    sessions = Sessions(users)
    assert sessions.owner_of(None) is None  # no accounts: the one local person
    users.add("alice", "alice's password")
    assert sessions.owner_of("alice") == users.id_of("alice")
    for name in (None, "", "carol"):
        with pytest.raises(NotSignedIn):
            sessions.owner_of(name)


def test_guesses_sent_all_at_once_are_limited_too(accounts_app):
    """The limit was checked before each password and counted after it: 200 guesses at once had 104 checked."""
    from concurrent.futures import ThreadPoolExecutor

    from domain.limits import FAILURES_PER_USER

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(lambda i: sign_in(accounts_app, "alice", f"guess {i}")[0], range(40)))
    assert statuses.count(400) == FAILURES_PER_USER and statuses.count(429) == 40 - FAILURES_PER_USER
    assert sign_in(accounts_app, "bob", "bob's password")[0] == 200  # a right password, once allowed, is taken


def test_another_site_can_link_to_the_page_but_not_sign_anyone_out(accounts_app):
    _, _, cookies = sign_in(accounts_app, "alice", "alice's password")
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    navigation = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    for path in ("/logout", "/logout?all_session=true", "/gradio_api/file=x", "/v1/models"):
        assert request(accounts_app, "GET", path, {**cookie, **navigation})[0] == 403, path
    assert user_of(accounts_app, cookies) == "alice"  # still signed in
    assert request(accounts_app, "GET", "/signin", navigation)[0] == 200


def test_a_malformed_sign_in_is_a_400(accounts_app):
    for content_type, body in (("multipart/form-data", b"--x\r\n"), ("multipart/form-data; boundary=x", b"garbage")):
        status, _, answer = request(accounts_app, "POST", "/login", {"Content-Type": content_type}, body)
        assert status == 400, answer


def test_an_ipv6_guesser_counts_as_its_whole_64():
    from ui.sessions import _address_key

    assert _address_key("2001:db8:1:2::1") == _address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert _address_key("2001:db8:1:3::1") != _address_key("2001:db8:1:2::1")
    assert _address_key("::ffff:192.0.2.7") == _address_key("192.0.2.7") == "192.0.2.7"
