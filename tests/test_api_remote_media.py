"""Media the OpenAI API fetches by URL: never from this machine or a private network, from the address checked, in time."""

from __future__ import annotations

import threading
import time

import pytest


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
    from domain import limits
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
    monkeypatch.setattr(limits, "REMOTE_MEDIA_DEADLINE_S", 1.5)
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
