"""HTTP protections for the page: accept only the host names it is served as, and a Content-Security-Policy.

Host checking defeats DNS rebinding (a web page whose own name resolves to 127.0.0.1 would otherwise read
every chat through the visitor's browser). The policy stops the page from loading or sending anything
to other origins: remote images in Markdown, fonts, analytics, exfiltration by fetch.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

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


def allowed_hosts(listen_host: str, extra: Iterable[str] = ()) -> list[str]:
    """Host header values (without port) the app answers: loopback names, the address it listens on, and `extra`."""
    hosts = list(LOOPBACK_NAMES)
    if not _is_wildcard(listen_host):
        hosts.append(listen_host)
    hosts.extend(h.strip() for h in extra if h.strip())
    # Starlette compares the Host header without its port; IPv6 literals arrive in brackets.
    hosts += [f"[{h}]" for h in hosts if ":" in h and not h.startswith("[")]
    return list(dict.fromkeys(hosts))


def is_loopback(host: str) -> bool:
    """Whether an address (or "localhost") is this machine's: 127.0.0.0/8, ::1, or IPv4-mapped ::ffff:127.x."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    mapped = getattr(address, "ipv4_mapped", None)  # how a dual-stack socket shows an IPv4 client
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def middleware(hosts: list[str]) -> list:
    """Starlette middleware for gr.Blocks.launch(app_kwargs={"middleware": ...})."""
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    return [Middleware(TrustedHostMiddleware, allowed_hosts=hosts), Middleware(SecurityHeaders)]


class SecurityHeaders:
    """ASGI middleware adding the policy and a few standard headers to every HTTP response."""

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
