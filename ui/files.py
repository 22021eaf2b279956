"""Attachments served to the page through a route that checks who is asking: a signed-in user gets only files
their own messages link, and anything else is 404, as if it did not exist. A file is served as the image, audio or
video its validation found it to be (with byte ranges: a browser seeks in a video by asking for them), or else only as a download, and always under a sandbox policy, so no stored file
can run as the app.

Chat messages point at these files by absolute URL, which Gradio hands the browser as is (no copy into
its cache, no hashing per update).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from assistant.dialogue import DialogueManager
from domain.errors import NotSignedIn
from domain.types import MediaKind, StoredFile
from ui.security import FILE_POLICY

ROUTE = "/attachments/{name}"
_NAME = re.compile(r"^([0-9a-f]{64})(\.[A-Za-z0-9]{1,8})?$")


# Served as what validation found them to be (Pillow's raster formats, FFmpeg's audio and video); anything else, e.g. an
# older import's "text/html" or "image/svg+xml", which can hold script, only as an opaque download.
_MEDIA_TYPE = re.compile(r"^(image|audio|video)/[a-z0-9.+-]{1,80}$")
_DOWNLOAD = "application/octet-stream"


def served_type(kind: MediaKind, mime: str) -> tuple[str, str]:
    """(Content-Type, Content-Disposition type) for a stored file."""
    mime = (mime or "").lower()
    inert = _MEDIA_TYPE.match(mime) and mime.startswith(kind.value + "/") and "svg" not in mime and "xml" not in mime
    return (mime, "inline") if inert else (_DOWNLOAD, "attachment")


def attachment_route(dialogue: DialogueManager, owner: Callable[[object], int | None]):
    """A Starlette route for the server's routes; `owner(request)` is the signed-in user's id (None without accounts),
    raising NotSignedIn when the app has accounts and the request has no valid session."""
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Route

    def lookup(request, sha256: str) -> StoredFile | None:
        try:
            return dialogue.for_owner(owner(request)).attachment_file(sha256)
        except NotSignedIn:
            return None

    async def attachment(request):
        import anyio

        match = _NAME.match(request.path_params["name"])
        # Database reads: in a worker thread, never on the event loop every other request waits on.
        stored = await anyio.to_thread.run_sync(lookup, request, match[1]) if match else None
        if stored is None or not stored.path.is_file():
            return PlainTextResponse("Not found", status_code=404)
        media_type, disposition = served_type(stored.kind, stored.mime)
        suffix = stored.path.suffix if disposition == "inline" else ".bin"
        headers = {
            "Cache-Control": "private, max-age=31536000, immutable",
            "Content-Security-Policy": FILE_POLICY,
            "Content-Disposition": f'{disposition}; filename="{match[1]}{suffix}"',
            "X-Content-Type-Options": "nosniff",
        }
        return FileResponse(stored.path, media_type=media_type, headers=headers)

    return Route(ROUTE, attachment, methods=["GET", "HEAD"])


def app_root(request) -> str | None:
    """The app's URL as this Gradio request reached it, without the last slash (None outside a request)."""
    base = getattr(request, "base_url", None) if hasattr(request, "request") else None
    return str(base).rstrip("/") if base is not None else None


def file_url_maker(request) -> Callable[[str, str], str] | None:
    """(sha256, file name on disk) -> absolute URL of the attachment route, for this request's origin."""
    root = app_root(request)
    if root is None:
        return None
    return lambda sha256, name: f"{root}{ROUTE.format(name=name)}"


def chat_view(dialogue, messages, request, answering: bool = False) -> list[dict]:
    """Messages as this request's browser shows them: files by URL, transcripts under audio. `answering`: the last
    one is a question being answered now."""
    from ui import render
    from ui.i18n import language_of

    notes = render.audio_notes(dialogue)
    return render.chat_messages(messages, file_url_maker(request), notes, answering, language_of(request))
