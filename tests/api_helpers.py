"""The app's API routes served in this process, for tests and benchmarks that hold their own dialogue manager."""

from __future__ import annotations

import contextlib
import threading

from tests.helpers import free_port, wait_until


@contextlib.contextmanager
def served_api(dialogue, tmp_path, timeout: float = 120):
    """ChatApi's and AudioApi's routes as run.py wires them, served by uvicorn on a free loopback port; yields an
    `openai` client for them."""
    import openai
    import uvicorn
    from starlette.applications import Starlette

    from api.audio import AudioApi
    from api.routes import ChatApi, guarded
    from assistant.media import decode_audio

    api = ChatApi(dialogue, dialogue.host, "demo", accounts=lambda: False, user_of_key=lambda key: None,
                  upload_dir=tmp_path / "api-uploads")
    audio = AudioApi(api.owner, guarded, "demo", dialogue.speech, dialogue.transcriber, tmp_path / "api-uploads",
                     decode=decode_audio)
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[*api.routes(), *audio.routes()]), host="127.0.0.1",
                                           port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 20, 0.05, "the API server did not start")
    try:
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{server.config.port}/v1", api_key="none", max_retries=0, timeout=timeout)
    finally:
        server.should_exit = True
        thread.join(10)
