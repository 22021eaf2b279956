"""Attachments served to the page through a route that checks who is asking: a signed-in user gets only files
their own messages link, and anything else is 404, as if it did not exist.

Chat messages point at these files by absolute URL, which Gradio hands the browser as is (no copy into
its cache, no hashing per update).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from assistant.dialogue import DialogueManager

ROUTE = "/attachments/{name}"
_NAME = re.compile(r"^([0-9a-f]{64})(\.[A-Za-z0-9]{1,8})?$")


def current_user(request) -> str | None:
    """The user Gradio signed in on this browser, from its session cookie (None without login)."""
    app = request.app
    cookie_id = getattr(app, "cookie_id", None)
    if cookie_id is None:
        return None
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(f"access-token-unsecure-{cookie_id}")
    return getattr(app, "tokens", {}).get(token)


def attachment_route(dialogue: DialogueManager, owner_of: Callable[[str | None], int | None]):
    """A Starlette route for gr.Blocks.launch(app_kwargs={"routes": [...]})."""
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Route

    async def attachment(request):
        match = _NAME.match(request.path_params["name"])
        path = None
        if match:
            path = dialogue.for_owner(owner_of(current_user(request))).attachment_path(match[1])
        if path is None or not path.is_file():
            return PlainTextResponse("Not found", status_code=404)
        return FileResponse(path, headers={"Cache-Control": "private, max-age=31536000, immutable"})

    return Route(ROUTE, attachment, methods=["GET", "HEAD"])


def file_url_maker(request) -> Callable[[str, str], str] | None:
    """(sha256, file name on disk) -> absolute URL of the attachment route, for this request's origin."""
    base = getattr(request, "base_url", None) if hasattr(request, "request") else None
    if base is None:
        return None
    root = str(base).rstrip("/")
    return lambda sha256, name: f"{root}{ROUTE.format(name=name)}"


def chat_view(dialogue, messages, request, answering: bool = False) -> list[dict]:
    """Messages as this request's browser shows them: files by URL, transcripts under audio. `answering`: the last
    one is a question being answered now."""
    from ui import render

    return render.chat_messages(messages, file_url_maker(request), render.audio_notes(dialogue), answering)
