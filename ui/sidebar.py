"""The sidebar: conversation list (pinned first, archived apart), search over every message, and the open
conversation's rename, pin, archive and delete. Handlers, then the declaration; ui/app.py wires it to the chat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from assistant.dialogue import DialogueManager
from domain.types import ConversationSummary
from domain.i18n import t
from ui.errors import inform, said, shows_errors
from ui.files import chat_view
from ui.i18n import SWITCH_HTML, label

# Scrolls the chat to the message a search result points at, and marks it for a moment.
SCROLL_TO_MESSAGE_JS = """(index) => {
    if (index === null || index === undefined || index < 0) return;
    let tries = 0;
    const go = () => {
        const rows = document.querySelectorAll('#chat .message-row');
        if (rows.length <= index) { if (++tries < 40) setTimeout(go, 50); return; }
        const row = rows[index];
        // The chat scrolls itself to the bottom once it has rendered new messages: scroll after it, too.
        for (const delay of [0, 200, 500, 1000]) setTimeout(() => row.scrollIntoView({block: 'center'}), delay);
        row.classList.add('search-hit');
        row.style.outline = '3px solid var(--color-accent)';
        setTimeout(() => { row.classList.remove('search-hit'); row.style.outline = ''; }, 4000);
    };
    go();
}"""


def title_label(conversation: ConversationSummary) -> str:
    return f"📌 {conversation.title}" if conversation.pinned else conversation.title


@dataclass
class Sidebar:
    """The components, for ui/app.py to wire."""

    new_chat: gr.Button
    search: gr.Textbox
    results: gr.Radio
    conversations: gr.Radio
    show_archived: gr.Checkbox
    actions: gr.Group
    rename: gr.Textbox
    pin: gr.Button
    archive: gr.Button
    delete: gr.Button
    confirm_row: gr.Row
    confirm_delete: gr.Button
    cancel_delete: gr.Button
    scroll_to: gr.Number
    export: gr.Button
    export_all: gr.Button
    import_button: gr.UploadButton
    download: gr.HTML  # an export's one-time download link (ui/exports.py)


class SidebarHandlers:
    """Each handler acts for the signed-in user of its request (`access`), on that user's conversations only."""

    def __init__(self, access: Callable[[gr.Request], DialogueManager]):
        self.access = access

    def conversation_list(self, conversation_id: str | None, archived: bool, request: gr.Request) -> gr.Radio:
        return self.list_for(self.access(request), conversation_id, archived)

    @staticmethod
    def list_for(dialogue: DialogueManager, conversation_id: str | None, archived: bool, interactive: bool = True) -> gr.Radio:
        choices = [(title_label(c), c.id) for c in dialogue.list_conversations(archived=archived)]
        value = conversation_id if conversation_id in {value for _, value in choices} else None
        return gr.Radio(choices=choices, value=value, interactive=interactive)

    @staticmethod
    def actions_for(dialogue: DialogueManager, conversation_id: str | None, request: gr.Request | None = None):
        """(actions group, rename box, pin button, archive button) for the open conversation, hidden for a new chat."""
        if not conversation_id:
            return gr.Group(visible=False), gr.Textbox(value=""), gr.Button(), gr.Button()
        conversation = dialogue.get_conversation(conversation_id)
        return (
            gr.Group(visible=True),
            gr.Textbox(value=conversation.title),
            gr.Button(said(t(PIN[conversation.pinned]), request)),
            gr.Button(said(t(ARCHIVE[conversation.archived]), request)),
        )

    def search(self, query: str, request: gr.Request):
        query = (query or "").strip()
        if not query:
            return gr.Radio(choices=[], value=None, visible=False)
        hits = self.access(request).search(query)
        choices = [(f"{hit.conversation_title} — {hit.snippet}", f"{hit.conversation_id}:{hit.message_id}") for hit in hits]
        key = "page.search.found_one" if len(hits) == 1 else "page.search.found" if hits else "page.search.none"
        return gr.Radio(choices=choices, value=None, visible=True, label=said(t(key, n=len(hits)), request))

    @shows_errors
    def open_result(self, choice: str | None, request: gr.Request):
        """(conversation id, chat, message index to scroll to) for a chosen search result."""
        if not choice:
            return gr.skip(), gr.skip(), -1
        conversation_id, _, message_id = choice.partition(":")
        dialogue = self.access(request)
        messages = dialogue.open_messages(conversation_id)
        index = next((i for i, m in enumerate(messages) if str(m.id) == message_id), -1)
        return conversation_id, chat_view(dialogue, messages, request), index

    # The actions below act on the conversation selected in the list (which changes the moment it is clicked),
    # or else the one shown: a quick click after choosing another conversation must not hit the previous one.

    @shows_errors
    def rename(self, selected: str | None, conversation_id: str | None, title: str, archived: bool, request: gr.Request):
        conversation_id = selected or conversation_id
        if not conversation_id:
            return gr.skip()
        dialogue = self.access(request)
        dialogue.rename(conversation_id, title)
        return self.list_for(dialogue, conversation_id, archived)

    def toggle_pin(self, selected: str | None, conversation_id: str | None, archived: bool, request: gr.Request):
        return self._toggle("pinned", PIN, selected or conversation_id, archived, request)

    def toggle_archive(self, selected: str | None, conversation_id: str | None, archived: bool, request: gr.Request):
        """Archiving moves the conversation out of the list being shown; the chat stays open."""
        return self._toggle("archived", ARCHIVE, selected or conversation_id, archived, request)

    @shows_errors
    def _toggle(self, flag: str, labels: tuple[str, str], conversation_id: str | None, archived: bool, request: gr.Request):
        """Flip a conversation's `flag`; (list, the button labelled for the new state: labels[off], labels[on])."""
        if not conversation_id:
            return gr.skip(), gr.skip()
        dialogue = self.access(request)
        on = not getattr(dialogue.get_conversation(conversation_id), flag)
        (dialogue.set_pinned if flag == "pinned" else dialogue.set_archived)(conversation_id, on)
        return self.list_for(dialogue, conversation_id, archived), gr.Button(said(t(labels[on]), request))

    def ask_delete(self, selected: str | None, conversation_id: str | None):
        return gr.Row(visible=bool(selected or conversation_id))

    @shows_errors
    def delete(self, selected: str | None, conversation_id: str | None, archived: bool, request: gr.Request):
        """(conversation id, chat, list, confirm row, actions group) after deleting the conversation."""
        conversation_id = selected or conversation_id
        dialogue = self.access(request)
        if conversation_id:
            dialogue.delete(conversation_id)
            inform(t("conversation.deleted"), request)
        return None, [], self.list_for(dialogue, None, archived), gr.Row(visible=False), gr.Group(visible=False)


# A toggle's labels: [for the state off, for the state on].
PIN = ("page.sidebar.pin", "page.sidebar.unpin")
ARCHIVE = ("page.sidebar.archive", "page.sidebar.unarchive")


def build_sidebar() -> Sidebar:
    """Declare the sidebar's components (inside a `with gr.Blocks()` block)."""
    with gr.Sidebar(open=True, label=label("page.sidebar.conversations")):
        new_chat = gr.Button(label("page.sidebar.new_chat"), elem_id="new-chat", variant="primary")
        search = gr.Textbox(
            elem_id="search", placeholder=label("page.search.placeholder"), show_label=False, max_lines=1, submit_btn=False
        )
        results = gr.Radio(choices=[], elem_id="search-results", visible=False, label=label("page.search.results"))
        conversations = gr.Radio(label=label("page.sidebar.conversations"), choices=[], elem_id="conversation-list")
        show_archived = gr.Checkbox(label=label("page.sidebar.show_archived"), value=False, elem_id="show-archived")
        with gr.Group(visible=False, elem_id="conversation-actions") as actions:
            rename = gr.Textbox(label=label("page.sidebar.rename"), elem_id="rename", max_lines=1)
            with gr.Row():
                pin = gr.Button(label(PIN[0]), elem_id="pin", size="sm")
                archive = gr.Button(label(ARCHIVE[0]), elem_id="archive", size="sm")
                delete = gr.Button(label("page.sidebar.delete"), elem_id="delete", size="sm", variant="stop")
            export = gr.Button(label("page.sidebar.export"), elem_id="export", size="sm")
        with gr.Row(visible=False, elem_id="confirm-delete-row") as confirm_row:
            gr.Markdown(label("page.sidebar.confirm_delete"))
            confirm_delete = gr.Button(label("page.sidebar.delete_for_good"), elem_id="confirm-delete", variant="stop", size="sm")
            cancel_delete = gr.Button(label("page.sidebar.cancel"), elem_id="cancel-delete", size="sm")
        scroll_to = gr.Number(value=-1, visible=False)
        with gr.Row():
            export_all = gr.Button(label("page.sidebar.export_all"), elem_id="export-all", size="sm")
            import_button = gr.UploadButton(
                label("page.sidebar.import"), file_types=[".zip", ".json"], elem_id="import", size="sm"
            )
        download = gr.HTML(visible=False, elem_id="download")
        gr.HTML(SWITCH_HTML, padding=False)
    return Sidebar(
        new_chat, search, results, conversations, show_archived, actions, rename, pin, archive, delete,
        confirm_row, confirm_delete, cancel_delete, scroll_to, export, export_all, import_button, download,
    )  # fmt: skip
