"""The page's "API keys" panel: a signed-in user creates keys for the OpenAI-compatible API (each shown once) and
revokes them. Without accounts it only says how to reach the API, which needs no key from this machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from domain.i18n import t
from ui.errors import inform, said, shown_error, shows_errors
from ui.i18n import label


@dataclass
class ApiKeyPanel:
    note: gr.Markdown
    controls: gr.Column
    name: gr.Textbox
    create: gr.Button
    created: gr.Textbox
    keys: gr.Dropdown
    revoke: gr.Button


def build_api_key_panel() -> ApiKeyPanel:
    """Declare the panel (inside a `with gr.Blocks()` block)."""
    with gr.Accordion(label("page.keys.title"), open=False, elem_id="api-keys"):
        note = gr.Markdown(elem_id="api-note")
        with gr.Column(visible=False) as controls:
            with gr.Row(equal_height=True):
                name = gr.Textbox(
                    label=label("page.keys.name"), placeholder=label("page.keys.name_example"), max_lines=1,
                    elem_id="api-key-name", scale=3,
                )  # fmt: skip
                create = gr.Button(label("page.keys.create"), elem_id="api-key-create", scale=1)
            created = gr.Textbox(
                label=label("page.keys.created"), visible=False, interactive=False,
                elem_id="api-key-created", buttons=["copy"],
            )
            with gr.Row(equal_height=True):
                keys = gr.Dropdown(label=label("page.keys.list"), choices=[], elem_id="api-key-list", scale=3)
                revoke = gr.Button(label("page.keys.revoke"), variant="stop", elem_id="api-key-revoke", scale=1)
    return ApiKeyPanel(note, controls, name, create, created, keys, revoke)


class ApiKeyHandlers:
    def __init__(self, keys, user_id_of: Callable[[str | None], int | None]):
        self._keys = keys
        self._user_id_of = user_id_of

    @shows_errors
    def _user(self, request: gr.Request) -> int | None:
        return self._user_id_of(getattr(request, "username", None))

    def show(self, request: gr.Request):
        """(note, controls, key list) for whoever is signed in."""
        base = f"{str(request.request.base_url).rstrip('/')}/v1" if getattr(request, "request", None) else "/v1"
        user = self._user(request)
        if user is None:
            note = said(t("page.keys.note_no_accounts", base=base), request)
            return note, gr.Column(visible=False), gr.Dropdown(choices=[], value=None)
        note = said(t("page.keys.note", base=base), request)
        return note, gr.Column(visible=True), self._choices(user, request)

    def _choices(self, user: int, request, value=None) -> gr.Dropdown:
        choices = [
            (said(t("page.keys.choice", name=k.name, prefix=k.prefix, created=f"{k.created_at:%Y-%m-%d}"), request), k.id)
            for k in self._keys.list(user)
        ]
        return gr.Dropdown(choices=choices, value=value, interactive=True)

    def create(self, name: str, request: gr.Request):
        user = self._user(request)
        if user is None:
            raise shown_error(t("api_key.no_accounts"), request)
        _, key = self._keys.create(user, name)
        return "", gr.Textbox(value=key, visible=True), self._choices(user, request)

    @shows_errors
    def revoke(self, key_id, request: gr.Request):
        user = self._user(request)
        if user is None or key_id is None:
            raise shown_error(t("api_key.choose"), request)
        self._keys.revoke(user, int(key_id))
        inform(t("api_key.revoked"), request)
        return gr.Textbox(value="", visible=False), self._choices(user, request)


def wire(panel: ApiKeyPanel, handlers: ApiKeyHandlers, app: gr.Blocks) -> None:
    app.load(handlers.show, outputs=[panel.note, panel.controls, panel.keys])
    panel.create.click(handlers.create, inputs=[panel.name], outputs=[panel.name, panel.created, panel.keys])
    panel.revoke.click(handlers.revoke, inputs=[panel.keys], outputs=[panel.created, panel.keys])
