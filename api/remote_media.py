"""Fetching an http(s) media URL for the API, only when `--allow-remote-media` is given, and never from this
machine or its networks: every address the name resolves to must be a public one (domain.addresses), and the
connection goes to the address that was checked (no second lookup a rebinding DNS server could answer
differently). The whole exchange (connect, request, headers, body) has one deadline, so a server that trickles
a byte at a time cannot hold a worker longer than that."""

from __future__ import annotations

import http.client
import io
import logging
import socket
import ssl
import time
from urllib.parse import urlsplit

from domain import limits
from domain.addresses import is_public_address
from api.errors import ApiError

log = logging.getLogger(__name__)

class DeadlinePassed(Exception):
    """Raised inside the exchange when limits.REMOTE_MEDIA_DEADLINE_S has passed; not an OSError, so nothing in http.client eats it."""


def fetch(url: str, limit: int, param: str) -> bytes:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(400, "A media URL must be a data: URL, or http(s) with --allow-remote-media.", param, "invalid_url")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
    except OSError:
        raise ApiError(400, f"The media URL's host {parts.hostname} could not be resolved.", param, "invalid_url") from None
    if not addresses or not all(is_public_address(a) for a in addresses):
        raise ApiError(400, "The media URL points at this machine or a private network; that is refused.", param, "invalid_url")
    address = sorted(addresses)[0]
    # Each socket operation waits only for what is left of it.
    deadline = time.monotonic() + limits.REMOTE_MEDIA_DEADLINE_S
    try:
        sock = socket.create_connection((address, port), timeout=_left(deadline))
        try:
            if parts.scheme == "https":
                sock.settimeout(_left(deadline))  # one bound for the whole handshake, however it is split up
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
            connection = http.client.HTTPConnection(parts.hostname, port)
            connection.sock = _DeadlineSocket(sock, deadline)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", path, headers={"User-Agent": "local-assistant"})
            response = connection.getresponse()
            if response.status != 200:
                raise ApiError(400, f"The media URL answered HTTP {response.status}.", param, "invalid_url")
            data = response.read(limit + 1)
        finally:
            sock.close()
    except (DeadlinePassed, TimeoutError):  # every socket wait is given only the time left: a timeout is the deadline
        raise ApiError(
            400, f"The media URL took longer than {limits.REMOTE_MEDIA_DEADLINE_S:g} s to send its file; that is refused.", param, "invalid_url"
        ) from None
    except (OSError, http.client.HTTPException) as error:
        log.info("fetching %s failed: %s", url[:200], error)  # the socket's or TLS library's words are for the log
        raise ApiError(400, "The media URL could not be fetched: the connection or its TLS certificate failed.",
                       param, "invalid_url") from None
    if len(data) > limit:
        raise ApiError(413, f"The media at the URL is larger than {limit // 2**20} MB.", param, "file_too_large")
    return data


def _left(deadline: float) -> float:
    """Seconds until `deadline`; DeadlinePassed when there are none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlinePassed
    return left


class _DeadlineSocket:
    """What http.client needs of a socket (sendall, makefile, close), each call given only the time left.

    A plain socket timeout bounds each read, not their sum: a byte every few seconds never trips it."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline

    def sendall(self, data) -> None:
        self._wait(self._sock.sendall, data)

    def makefile(self, mode: str = "rb", *args, **kwargs):
        return io.BufferedReader(_DeadlineReader(self))

    def recv_into(self, buffer) -> int:
        return self._wait(self._sock.recv_into, buffer)

    def close(self) -> None:
        """Left to fetch: http.client closes its connection as soon as a response says `Connection: close`,
        while the body is still to be read (a real socket stays open until its files are closed too)."""

    def _wait(self, operation, argument):
        self._sock.settimeout(_left(self._deadline))
        return operation(argument)


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket):
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._sock.recv_into(buffer)
