"""The page's one endpoint for scripts (gradio_client): `/chat`, a message (text, images, audio) in, the answer's
text and its conversation's id out. It goes through the same DialogueManager.send as the page (validation,
storage, the queue), as the signed-in user; every other event of the page is an internal step, hidden from the
API listing so that clients see only this one.

No `from __future__ import annotations` here: gr.api reads the endpoint's parameter and return types from its
signature at run time, and string annotations would leave the returns untyped. Knows nothing of the page's layout.
"""

import threading
from collections.abc import Callable
from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData

from assistant.dialogue import DialogueManager, ReplyFinished
from domain.i18n import t
from domain.types import Status
from ui.errors import shown_error, shows_errors
from ui.uploads import discard_uploads, upload_folder

API_NAME = "chat"


class ScriptApi:
    def __init__(self, access: Callable[[gr.Request], DialogueManager]):
        self.access = access

    def chat(
        self,
        message: str = "",
        files: list[FileData] | None = None,
        conversation_id: str | None = None,
        request: gr.Request = None,
    ) -> tuple[str, str]:
        """Send a message, with images or audio if the model takes them, and wait for the whole answer.

        Args:
            message: the text of the message (may be empty when files are attached)
            files: images or audio files, each as gradio_client.handle_file(path or URL)
            conversation_id: the id an earlier call returned, to continue that conversation; none starts a new one
        Returns:
            the answer's text, and the conversation's id
        """
        try:
            reply = self._answer(message or "", _uploaded_paths(files or []), conversation_id or None, request)
        finally:
            # Stored as blobs by now, or refused: either way no longer needed (a refused one is sent again).
            discard_uploads([file["path"] for file in files or [] if isinstance(file, dict) and "path" in file])
        if reply is None or reply.status is Status.ERROR:
            raise shown_error((reply and reply.error) or t("answer.failed.plain"), request)
        return reply.text, reply.conversation_id

    @shows_errors  # refused input, an unknown conversation, one being answered already
    def _answer(self, text: str, paths: list[tuple[Path, str]], conversation_id: str | None, request: gr.Request):
        dialogue = self.access(request)
        # A script has no Stop button; the answer ends by itself, within the model's token limit.
        events = dialogue.send(conversation_id, text, paths, threading.Event())
        try:
            # Refused before anything is saved (InvalidInput), else every outcome ends in ReplyFinished.
            return next((event.message for event in events if isinstance(event, ReplyFinished)), None)
        finally:
            events.close()


def _uploaded_paths(files: list) -> list[tuple[Path, str]]:
    """(path, name) of each file gradio_client uploaded; anything else (a bare path on the server) is refused."""
    root = upload_folder()
    paths = []
    for file in files:
        path = Path(file["path"]).resolve() if isinstance(file, dict) and isinstance(file.get("path"), str) else None
        if path is None or not path.is_relative_to(root):
            raise gr.Error(str(t("script.handle_file")), print_exception=False)  # for a script's author: English
        paths.append((path, file.get("orig_name") or path.name))
    return paths


def declare(api: ScriptApi) -> None:
    """Inside the page's `with gr.Blocks()`: add the endpoint."""
    gr.api(api.chat, api_name=API_NAME, concurrency_limit=16)


def hide_internal_events(app: gr.Blocks) -> None:
    """At the end of the page's `with gr.Blocks()`: every event but the scripts' endpoint leaves the API listing,
    and gradio_client refuses to call it. (The page still runs them; each handler checks its user all the same.)"""
    for fn in app.fns.values():
        if fn.api_name != API_NAME:
            fn.api_visibility = "private"
