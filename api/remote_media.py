"""Fetching an http(s) media URL for the API, only when `--allow-remote-media` is given, and never from this
machine or its networks: every address the name resolves to must be a public one (api.addresses), and the connection goes
to the address that was checked (no second lookup a rebinding DNS server could answer differently)."""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urlsplit

from api.addresses import is_public_address
from api.errors import ApiError

TIMEOUT_S = 15


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
    try:
        sock = socket.create_connection((address, port), timeout=TIMEOUT_S)
        if parts.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
        connection = http.client.HTTPConnection(parts.hostname, port, timeout=TIMEOUT_S)
        connection.sock = sock
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path, headers={"User-Agent": "local-assistant"})
        response = connection.getresponse()
        if response.status != 200:
            raise ApiError(400, f"The media URL answered HTTP {response.status}.", param, "invalid_url")
        data = response.read(limit + 1)
        connection.close()
    except (OSError, http.client.HTTPException) as error:
        raise ApiError(400, f"The media URL could not be fetched: {error}.", param, "invalid_url") from None
    if len(data) > limit:
        raise ApiError(413, f"The media at the URL is larger than {limit // 2**20} MB.", param, "file_too_large")
    return data
