"""Sign-in: who a request is, whether its session is still valid, and how often a password may be guessed.

Gradio's login keeps sessions in memory (`tokens`: cookie value -> user name) and knows nothing of users deleted or
passwords changed since, least of all by `python run.py deluser`/`passwd` in another process. So each session is
bound, when it is made, to the user's current `session_key` (storage/users.py), and every request whose cookie no
longer matches has its session ended before Gradio or a route sees it. Failed sign-ins are counted per user name
and per client address; past the limits, attempts are refused with 429 and Retry-After without checking the
password, and the password is checked in a worker thread, off the event loop. Knows nothing of models or pages.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from domain.errors import NotSignedIn
from domain.i18n import Text, say, t
from domain.limits import (
    FAILURE_WINDOW_S,
    FAILURES_PER_ADDRESS,
    FAILURES_PER_USER,
    MAX_LOGIN_BODY,
    MAX_LOGIN_NAME_CHARS,
    MAX_TRACKED,
    VERIFY_THREADS,
)
from ui.i18n import language_of

LOGIN_PATHS = ("/login", "/login/")
LOGIN_NOTE = f"After {FAILURES_PER_USER} wrong passwords an account waits up to {FAILURE_WINDOW_S // 60} minutes before its next try."
SIGNED_OUT = t("session.signed_out")

class FailureLimit:
    """Failed attempts per key (a user name, an address) in a sliding window."""

    def __init__(self, limit: int, window_s: float = FAILURE_WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_s(self, key: str) -> float:
        """Seconds until `key` may try again (0: now)."""
        failures = self._recent(key)
        return 0.0 if len(failures) < self.limit else failures[0] + self.window_s - self._clock()

    def fail(self, key: str) -> None:
        failures = self._recent(key)
        failures.append(self._clock())
        self._failures[key] = failures
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def undo(self, key: str) -> None:
        """Take back the latest failure of `key` (one counted ahead of its outcome that turned out not to be one)."""
        failures = self._failures.get(key)
        if failures:
            failures.pop()

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= self._clock() - self.window_s:
            failures.popleft()
        return failures


class Sessions:
    """The signed-in user of a request. `users` is storage.users.UserRepository (any, id_of, session_key, verify)."""

    def __init__(self, users, clock: Callable[[], float] = time.monotonic):
        self._users = users
        self._gradio = None
        self._bound: dict[str, str] = {}  # session token -> the user's session_key when it signed in
        self.per_user = FailureLimit(FAILURES_PER_USER, clock=clock)
        self.per_address = FailureLimit(FAILURES_PER_ADDRESS, clock=clock)
        self._verifying = None

    def bind(self, gradio_app) -> None:
        """Gradio's app, which holds the sessions and names the cookies (see gradio_sessions)."""
        self._gradio = gradio_app

    def middleware(self) -> list:
        from starlette.middleware import Middleware

        return [Middleware(SessionGuard, sessions=self), Middleware(LoginGuard, sessions=self)]

    def required(self) -> bool:
        """Whether the page asks for a sign-in (it does when the app started with accounts)."""
        return getattr(self._gradio, "auth", None) is not None

    # --- who is asking -----------------------------------------------------------------------------------------

    def owner_of(self, name: str | None) -> int | None:
        """The user id of a signed-in name (Gradio's `request.username`); None while the app has no accounts.
        NotSignedIn when it has accounts and the name is missing or no longer a user."""
        if not self._users.any():
            return None
        owner = self._users.id_of(name)
        if owner is None:
            raise NotSignedIn(SIGNED_OUT)
        return owner

    def owner(self, request) -> int | None:
        """As owner_of, for a Starlette request to one of the app's own routes (attachments, exports)."""
        return self.owner_of(self.user(request))

    def user(self, request) -> str | None:
        """The user name of the request's session cookie, if that session is valid."""
        tokens, carried = gradio_sessions(self._gradio, request.cookies)
        for token in carried:
            name = tokens.get(token)
            if name is not None and self._still_valid(token, name):
                return name
        return None

    # --- sessions ----------------------------------------------------------------------------------------------

    def has_session(self, cookies: dict[str, str]) -> bool:
        """Whether these cookies name a session Gradio holds (no database read: SessionGuard has checked it)."""
        tokens, carried = gradio_sessions(self._gradio, cookies)
        return any(token in tokens for token in carried)

    def end_stale(self, cookies: dict[str, str]) -> None:
        """End the sessions of these cookies that belong to a deleted user or predate a password change."""
        tokens, carried = gradio_sessions(self._gradio, cookies)
        for token in carried:
            name = tokens.get(token)
            if name is not None and not self._still_valid(token, name):
                tokens.pop(token, None)
                self._bound.pop(token, None)

    def signed_in(self, cookies: dict[str, str]) -> None:
        """After Gradio accepted a sign-in: bind the new session to the user's current key."""
        tokens, carried = gradio_sessions(self._gradio, cookies)
        for token in carried:
            name = tokens.get(token)
            if name is not None:
                self._bound[token] = self._users.session_key(name)
        for token in [t for t in self._bound if t not in tokens]:  # signed out since
            del self._bound[token]

    def _still_valid(self, token: str, name: str) -> bool:
        key = self._bound.get(token)
        return key is not None and key == self._users.session_key(name)

    # --- signing in ----------------------------------------------------------------------------------------------

    async def authenticate(self, name: str, password: str) -> bool:
        """Gradio's `auth`: the password checked in a worker thread, so the event loop goes on serving meanwhile."""
        import anyio

        if self._verifying is None:
            self._verifying = anyio.CapacityLimiter(VERIFY_THREADS)
        return await anyio.to_thread.run_sync(self._users.verify, name, password, limiter=self._verifying)

    def attempt(self, name: str, address: str) -> tuple[Text, int] | None:
        """A sign-in is about to be tried: (why, seconds to wait) if it must not be, else None, and it is counted as
        failed already, so that attempts sent all at once cannot all pass the check while the first are verified.
        `settled` takes the count back when it was not a failure."""
        address = _address_key(address)
        user_wait, address_wait = self.per_user.wait_s(name), self.per_address.wait_s(address)
        if user_wait <= 0 and address_wait <= 0:
            self.per_user.fail(name)
            self.per_address.fail(address)
            return None
        wait = max(user_wait, address_wait)
        key = "signin.too_many.account" if user_wait > 0 else "signin.too_many.address"
        return t(key, wait=_duration(wait)), max(1, round(wait))

    def settled(self, name: str, address: str, outcome: str) -> None:
        """`outcome`: "accepted", "refused" (a wrong password: it stays counted) or "unchecked" (the request failed
        before the password was looked at)."""
        address = _address_key(address)
        if outcome == "accepted":
            # The account's count goes; the address keeps its other guesses (one that knows its own password must not
            # reset them), only this attempt is taken back.
            self.per_user.clear(name)
            self.per_address.undo(address)
        elif outcome == "unchecked":
            self.per_user.undo(name)
            self.per_address.undo(address)


def gradio_sessions(gradio_app, cookies: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(Gradio's sessions, the session tokens `cookies` carry): the one place that knows how Gradio's login keeps
    them, which is private to Gradio (tests/test_sessions.py fails when an upgrade changes it). The sessions are its
    app's own `tokens` dict (token -> user name: popping a token ends that session); the cookies are named
    `access-token-<cookie_id>` and, for plain HTTP, `access-token-unsecure-<cookie_id>`. Before `bind`: none."""
    tokens = getattr(gradio_app, "tokens", None)
    cookie_id = getattr(gradio_app, "cookie_id", None)
    if tokens is None or cookie_id is None:
        return {}, []
    names = (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}")
    return tokens, [cookies[name] for name in names if cookies.get(name)]


def _address_key(address: str) -> str:
    """Who is guessing: an IPv4 address, or an IPv6 address's /64 (one household or host holds a whole /64)."""
    import ipaddress

    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(parsed, "ipv4_mapped", None)
    if mapped is not None:
        return str(mapped)
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _duration(seconds: float) -> Text:
    minutes = round(seconds / 60)
    if minutes > 1:
        return t("duration.minutes", n=minutes)
    return t("signin.a_minute") if minutes == 1 else t("duration.seconds", n=max(1, round(seconds)))


def _said(text: Text, scope) -> str:
    """The sentence in the language of the request `scope` belongs to (its cookie, else its Accept-Language)."""
    from starlette.requests import Request

    return say(text, language_of(Request(scope)))


def cookies_of(scope) -> dict[str, str]:
    from starlette.requests import cookie_parser

    for key, value in scope.get("headers", []):
        if key == b"cookie":
            return cookie_parser(value.decode("latin-1"))
    return {}


class SessionGuard:
    """Before anything else sees a request, end its session if that session is no longer valid."""

    def __init__(self, app, sessions: Sessions):
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            cookies = cookies_of(scope)
            if cookies and self.sessions.has_session(cookies):
                import anyio

                # A database read: in a worker thread, so a slow or unreachable database holds this request only.
                await anyio.to_thread.run_sync(self.sessions.end_stale, cookies)
        await self.app(scope, receive, send)


class LoginGuard:
    """Gradio's POST /login, limited: refused with 429 past the failure limits; each outcome counted; the session
    cookie made SameSite=Lax (Gradio sets SameSite=None, which lets other sites' requests carry it)."""

    def __init__(self, app, sessions: Sessions):
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in LOGIN_PATHS:
            return await self.app(scope, receive, send)
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        body = await _read_body(receive, MAX_LOGIN_BODY)
        if body is None:
            return await JSONResponse({"detail": _said(t("signin.too_large"), scope)}, status_code=413)(scope, receive, send)
        replay = _replay(body)
        try:
            form = await Request(scope, replay()).form()
        except Exception:  # noqa: BLE001 - a multipart body without a boundary, a broken encoding…
            return await JSONResponse({"detail": _said(t("signin.malformed"), scope)}, status_code=400)(scope, receive, send)
        name = str(form.get("username") or "").strip()[:MAX_LOGIN_NAME_CHARS]
        address = scope["client"][0] if scope.get("client") else "unknown"
        refused = self.sessions.attempt(name, address)
        if refused is not None:
            why, wait = refused
            response = JSONResponse({"detail": _said(why, scope)}, status_code=429, headers={"Retry-After": str(wait)})
            return await response(scope, receive, send)
        status = 0
        cookies: dict[str, str] = {}

        async def send_lax(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = []
                for key, value in message.get("headers", []):
                    if key.lower() == b"set-cookie":
                        text = value.decode("latin-1")
                        pair = text.split(";", 1)[0]
                        cookies[pair.split("=", 1)[0].strip()] = pair.split("=", 1)[-1].strip()
                        value = _lax(text).encode("latin-1")
                    headers.append((key, value))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, replay(), send_lax)
        finally:
            if status == 200:
                self.sessions.signed_in(cookies)
            outcome = "accepted" if status == 200 else "refused" if status in (400, 401) else "unchecked"
            self.sessions.settled(name, address, outcome)


def _lax(cookie: str) -> str:
    parts = [p.strip() for p in cookie.split(";")]
    kept = [p for p in parts if not p.lower().startswith("samesite")]
    return "; ".join([*kept, "SameSite=lax"])


async def _read_body(receive, limit: int) -> bytes | None:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            break
    return bytes(body)


def _replay(body: bytes):
    """A fresh `receive` each call that hands over `body` once, as the server would have."""

    def make():
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return receive

    return make
