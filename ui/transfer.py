"""Export and import from the page (the zip format itself is storage.exchange's): a zip of one conversation or of all, and importing one (ours, ChatGPT's,
Open WebUI's). The page's upload limit applies; bigger archives go through `python run.py import FILE`.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import gradio as gr

from assistant.dialogue import DialogueManager
from storage.exchange import export_zip, safe_name
from domain.errors import InvalidInput
from domain.i18n import t
from ui.errors import inform, language_of_request, said, shows_errors
from ui.exports import ExportStore, export_url
from ui.uploads import discard_uploads, upload_folder


class TransferHandlers:
    """Act for the request's signed-in user (`access`, and `owner` for whom an export is kept): their conversations only."""

    def __init__(
        self,
        access: Callable[[gr.Request], DialogueManager],
        exports: ExportStore,
        owner: Callable[[gr.Request], int | None],
    ):
        self.access = access
        self.exports = exports
        self.owner = owner

    @shows_errors
    def export(self, selected: str | None, conversation_id: str | None, request: gr.Request):
        """A one-time download link for the selected (else open) conversation, or with neither, for all of the user's."""
        conversation_id = selected or conversation_id
        conversations = self.access(request).export([conversation_id] if conversation_id else None)
        if not conversations:
            raise InvalidInput(t("export.nothing"))
        title = conversations[0].title if conversation_id else said(t("page.export.all_name"), request)
        name = f"{safe_name(title, 60)} {datetime.now():%Y-%m-%d %H%M}.zip"
        # Served by the export route to this user only, once: never through Gradio's cache, open to any session.
        token = self.exports.add(self.owner(request), name, lambda path: export_zip(conversations, path))
        link = f'<a href="{html.escape(export_url(request, token))}" download>⬇ {html.escape(name)}</a>'
        return gr.HTML(f"{link}<br><small>{html.escape(said(t('page.export.link_note'), request))}</small>", visible=True)

    def export_all(self, request: gr.Request):
        return self.export(None, None, request)

    @shows_errors
    def import_file(self, upload: str | None, request: gr.Request):
        """Import an uploaded export; a summary (what came over, what did not) or the reason it was refused."""
        if not upload:
            return gr.skip()
        try:
            # Read from the uploaded file, not into memory; its files wait in the upload folder (swept at start).
            summary = self.access(request).import_archive(Path(upload), scratch=upload_folder() / "imports")
        finally:
            discard_uploads([upload])
        inform(summary.sentence(language_of_request(request)), request)
        return gr.skip()
