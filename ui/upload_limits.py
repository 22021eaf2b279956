"""Each file the page uploads held to the limit of its kind as it arrives: a video (by name or declared type) may be
limits.MAX_VIDEO_BYTES, any other file limits.MAX_FILE_BYTES (domain.limits.max_file_bytes).

Gradio's own check (`max_file_size`) knows one limit for every file, so the page is mounted with the largest and this
ASGI middleware counts each file's bytes in the multipart body on its way to Gradio. When one passes its limit, Gradio
is handed a part header no parser takes instead of the rest, so Gradio's own error path deletes what it wrote, and
the browser is answered a 413 naming the file. Knows nothing of models or storage.
"""

from __future__ import annotations

from collections.abc import Callable

from domain import limits
from domain.i18n import say, t
from ui.i18n import language_of

UPLOAD_PATH = "/gradio_api/upload"
# A header line longer than python-multipart (4 KB) and Gradio (8 KB) allow: either parser refuses it.
_UNPARSABLE = b"X" * (64 * 1024)


class UploadLimits:
    """`limit_for(file name, declared content type)` -> the most bytes that file may be."""

    def __init__(self, app, limit_for: Callable[[str, str], int] = limits.max_file_bytes):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(UPLOAD_PATH):
            return await self.app(scope, receive, send)
        watch = _Watch.of(scope, self.limit_for)
        if watch is None:  # not multipart: Gradio refuses it
            return await self.app(scope, receive, send)

        async def checked_receive():
            if watch.refusal is not None:
                raise RuntimeError("the upload was refused; its body is not read further")
            message = await receive()
            if message["type"] == "http.request" and watch.feed(message.get("body", b"")):
                return {"type": "http.request", "body": b"\r\n--" + watch.boundary + b"\r\n" + _UNPARSABLE, "more_body": True}
            return message

        async def checked_send(message):
            if watch.refusal is None:
                await send(message)  # once refused, Gradio's answer to the spoilt body is dropped

        try:
            await self.app(scope, checked_receive, checked_send)
        except Exception:
            if watch.refusal is None:
                raise
        if watch.refusal is not None:
            from starlette.requests import Request
            from starlette.responses import PlainTextResponse

            # The page's language: its switch's cookie, else the browser's, as every other sentence of the page.
            language = language_of(Request(scope))
            await PlainTextResponse(say(watch.refusal, language), status_code=413)(scope, receive, send)


class _Watch:
    """The multipart body as it passes: each file part's name, declared type and bytes so far."""

    def __init__(self, boundary: bytes, limit_for: Callable[[str, str], int]):
        from python_multipart.multipart import MultipartParser

        self.boundary = boundary
        self.limit_for = limit_for
        self.refusal = None
        self._headers: dict[bytes, bytes] = {}
        self._field = self._value = b""
        self._name, self._limit, self._size = "", None, 0
        callbacks = {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._add("_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
        }
        self._parser = MultipartParser(boundary, callbacks)
        self._broken = False

    @classmethod
    def of(cls, scope, limit_for) -> _Watch | None:
        from python_multipart.multipart import parse_options_header

        kind, options = parse_options_header(_header(scope, b"content-type") or "")
        boundary = options.get(b"boundary")
        return cls(boundary, limit_for) if kind == b"multipart/form-data" and boundary else None

    def feed(self, chunk: bytes) -> bool:
        """Whether this chunk takes a file past its limit (`refusal` then says which)."""
        if self._broken or not chunk:
            return False
        try:
            self._parser.write(chunk)
        except Exception:  # noqa: BLE001 - a malformed body: Gradio's parser refuses it in its own words
            self._broken = True
        return self.refusal is not None

    def _add(self, name: str, data: bytes) -> None:
        setattr(self, name, (getattr(self, name) + data)[:1024])

    def _begin(self) -> None:
        self._headers, self._name, self._limit, self._size = {}, "", None, 0

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._headers.get(b"content-disposition", b"").decode("latin-1"))
        if b"filename" in options:  # a file; other parts are Gradio's few form fields
            self._name = options[b"filename"].decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
            self._limit = self.limit_for(self._name, self._headers.get(b"content-type", b"").decode("latin-1"))

    def _data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._limit is not None and self._size > self._limit and self.refusal is None:
            video_mb, file_mb = (self.limit_for("", kind) // 2**20 for kind in ("video/mp4", ""))
            self.refusal = t("video.ui.upload_too_big", name=self._name[:100], mb=self._limit // 2**20, video_mb=video_mb, file_mb=file_mb)

def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None
