"""HTTP protections for everything the app serves: the host names it answers to, the origins it takes requests
from, and the headers that keep a page or a file from loading or running anything foreign.

- Host checking defeats DNS rebinding (a web page whose own name resolves to 127.0.0.1 would otherwise read every
  chat through the visitor's browser).
- The same-origin policy: a request that a browser sends on behalf of another site (another origin's `Origin`, or
  `Sec-Fetch-Site: cross-site`/`same-site` on anything but a top-level navigation) is refused before it reaches a
  route, so no other site can make the visitor's browser post a message, upload a file, run the model or read an
  attachment. Requests with neither header come from programs, not browsers, and are judged by Host and key alone.
  CORS is granted only to the origins the operator lists (--allowed-origins).
- The page's Content-Security-Policy stops it from loading or sending anything to other origins; stored files are
  served under `sandbox`, so nothing in one can run as the app.

Knows nothing of models, storage or Gradio's components.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
API_PREFIX = "/v1/"
LINKABLE = ("/", "/signin")  # what another site may link to

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        # Gradio's page boots from inline scripts and styles, and compiles the `js=` of events with
        # new Function(); nothing comes from elsewhere.
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "media-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)
# For stored files (attachments, exports): opened on their own, they are an opaque origin that runs nothing.
FILE_POLICY = "sandbox"


def allowed_hosts(listen_host: str, extra: Iterable[str] = ()) -> list[str]:
    """Host header values (without port) the app answers: loopback names, the address it listens on, and `extra`."""
    hosts = list(LOOPBACK_NAMES)
    if not _is_wildcard(listen_host):
        hosts.append(listen_host)
    hosts.extend(h.strip() for h in extra if h.strip())
    # The Host header carries IPv6 literals in brackets.
    hosts += [f"[{h}]" for h in hosts if ":" in h and not h.startswith("[")]
    return list(dict.fromkeys(h.lower() for h in hosts))


def parse_origins(values: Iterable[str]) -> list[str]:
    """--allowed-origins: each `scheme://host[:port]`, normalised; ValueError naming the first that is not one."""
    origins = []
    for value in (v.strip() for v in values):
        if not value:
            continue
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"{value!r} is not an origin: write it as scheme://host[:port], e.g. https://chat.example.org")
        origins.append(_origin(parts.scheme, parts.hostname, parts.port))
    return origins


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def middleware(hosts: list[str], origins: list[str], inner: Iterable = ()) -> list:
    """The parent app's middleware, outermost first: headers on every answer (refusals included), then the Host and
    origin checks, then CORS for the listed origins, then `inner` (sign-in: ui/sessions.py)."""
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware

    stack = [
        Middleware(SecurityHeaders),
        Middleware(HostGuard, hosts=hosts),
        Middleware(OriginGuard, origins=origins),
        # Present even with no origins listed: a parent that configures CORS makes Gradio add none of its own.
        Middleware(CORSMiddleware, allow_origins=origins, allow_credentials=True, allow_methods=["*"], allow_headers=["*"]),
    ]
    return [*stack, *inner]


def refusal(scope, status: int, message: str, code: str):
    """A refusal: OpenAI's error shape for the API, plain text for the page and files."""
    from starlette.responses import JSONResponse, PlainTextResponse

    if scope.get("path", "").startswith(API_PREFIX):
        kind = {400: "invalid_request_error", 403: "permission_error"}.get(status, "invalid_request_error")
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return JSONResponse(body, status_code=status)
    return PlainTextResponse(message, status_code=status)


class HostGuard:
    """Answer only requests whose Host header is one of `hosts` (compared without its port)."""

    def __init__(self, app, hosts: list[str]):
        self.app = app
        self.hosts = {h.lower() for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = _header(scope, b"host") or ""
        name = _without_port(host)
        if name.lower() in self.hosts:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        shown = name[:100]
        message = (
            f"Invalid host header: this app does not answer to the name {shown!r}. If you reach it by that name, "
            f"start it with --allowed-hosts {shown} (a name reachable from other machines also needs accounts)."
        )
        await refusal(scope, 400, message, "invalid_host")(scope, receive, send)


class OriginGuard:
    """Refuse what a browser sends on behalf of another site (see the module docstring); `origins` are exempt."""

    def __init__(self, app, origins: list[str]):
        self.app = app
        self.origins = set(origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or self.allows(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        origin = _header(scope, b"origin")
        message = (
            f"Requests from another web site ({origin[:100]}) are refused." if origin
            else "Requests that another web site makes your browser send are refused."
        ) + " Open the app itself, or start it with --allowed-origins naming the site you trust."
        await refusal(scope, 403, message, "cross_origin")(scope, receive, send)

    def allows(self, scope) -> bool:
        origin = _header(scope, b"origin")
        if origin is not None:
            return origin in self.origins or _same_origin(origin, _header(scope, b"host") or "")
        site = _header(scope, b"sec-fetch-site")
        if site in (None, "same-origin", "none"):
            return True  # a program, the page itself, or the person typing the address
        # Another site may link to the page (a top-level GET navigation to it), and nothing else: not to /logout,
        # which Gradio does on a GET, nor to a file.
        navigation = _header(scope, b"sec-fetch-mode") == "navigate" and _header(scope, b"sec-fetch-dest") == "document"
        return scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and navigation and scope["path"] in LINKABLE


class SecurityHeaders:
    """ASGI middleware adding the policy and a few standard headers to every HTTP response that has none of its own."""

    HEADERS = [
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.HEADERS if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _without_port(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin(scheme: str, hostname: str, port: int | None) -> str:
    default = 443 if scheme == "https" else 80
    name = f"[{hostname}]" if ":" in hostname else hostname
    return f"{scheme}://{name.lower()}" + (f":{port}" if port and port != default else "")


def _same_origin(origin: str, host: str) -> bool:
    """Whether `Origin` names the host and port the request was sent to (the scheme may differ behind a proxy)."""
    try:
        source = urlsplit(origin)
        target = urlsplit(f"//{host}")
        if source.scheme not in ("http", "https") or not source.hostname or not target.hostname:
            return False
        default = 443 if source.scheme == "https" else 80
        return source.hostname == target.hostname and (source.port or default) == (target.port or default)
    except ValueError:  # a malformed port or bracket
        return False

