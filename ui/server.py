"""Serve the page and the app's own routes: Gradio mounted in a parent app whose middleware sets the HTTP policy.

Gradio's own `launch()` puts its CORS middleware outside everything an app can add, and that middleware answers any
site with credentialed CORS when the page is reached by a name other than localhost. Mounted in a parent that
configures CORS itself, Gradio adds none (documented in `gr.mount_gradio_app`), so the policy in ui/security.py is
the only one. Knows nothing of models or storage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


def build_server_app(
    blocks,
    *,
    routes: Sequence,
    middleware: Sequence,
    auth: Callable | None,
    max_file_size: int | None = None,
    file_limit: Callable[[str, str], int] | None = None,
):
    """The ASGI app: `routes` (the API, attachments, exports) before the page, all behind `middleware`. Uploads are
    refused as they arrive past `max_file_size`, and with `file_limit(name, content type)` past each file's own
    (ui/upload_limits.py; `max_file_size` is then the largest). The page is in the language of whoever asks
    (ui/i18n.py).

    Returns (parent app, Gradio's app); the latter holds the sign-in sessions (`tokens`, `cookie_id`)."""
    import gradio as gr
    from fastapi import FastAPI
    from starlette.middleware import Middleware

    from ui.i18n import PageLanguage, page_i18n
    from ui.upload_limits import UploadLimits

    limited = [Middleware(UploadLimits, limit_for=file_limit)] if file_limit else []
    stack = [*middleware, *limited, Middleware(PageLanguage)]
    parent = FastAPI(middleware=stack, routes=list(routes), docs_url=None, redoc_url=None, openapi_url=None)
    gr.mount_gradio_app(
        parent,
        blocks,
        path="",
        auth=auth,
        max_file_size=max_file_size,
        show_error=False,
        footer_links=[],
        ssr_mode=False,
        i18n=page_i18n(),
    )
    return parent, parent.routes[-1].app


def serve(app, host: str, port: int) -> None:
    """Listen until interrupted, saying where, as `launch()` does."""
    import uvicorn

    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets)
        if server.started:
            print(f"* Running on local URL:  http://{shown}:{port}", flush=True)

    server.startup = startup
    server.run()
