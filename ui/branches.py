"""Version arrows, fork and speak links under messages: links (see render.message_footer) that a page script turns
into an event carrying "MESSAGE_ID:VERB:NONCE" in a hidden textbox, since Chatbot messages cannot hold buttons; and
the handler of that event.
"""

from __future__ import annotations

import gradio as gr

from domain.errors import AssistantError
from domain.i18n import t
from ui.errors import inform, shows_errors, warn
from ui.files import chat_view


class MessageLinks:
    """`access(request)`: the request's user's dialogue manager; `sidebar`: ui.sidebar.SidebarHandlers."""

    def __init__(self, access, sidebar):
        self.access = access
        self.sidebar = sidebar

    @shows_errors
    def act(self, action: str, conversation_id: str | None, archived: bool, request: gr.Request):
        """A click on ‹ › (switch version), ⑂ (fork) or 🔊 (speak) under a message: (conversation id, chat, list)."""
        message_id, _, verb = (action or "").partition(":")
        verb = verb.split(":")[0]
        if not message_id.isdigit() or verb not in ("prev", "next", "fork", "speak"):
            return gr.skip(), gr.skip(), gr.skip()
        dialogue = self.access(request)
        if verb == "speak":
            try:
                voice = dialogue.get_conversation(conversation_id).settings.voice if conversation_id else None
                spoken = dialogue.speak(int(message_id), voice)
            except AssistantError as error:  # no voice to be had, or not an answer: the text stays as it was
                warn(t("speech.no_sound", error=error.text), request)
                return gr.skip(), gr.skip(), gr.skip()
            chat = chat_view(dialogue, dialogue.open_messages(spoken.message.conversation_id), request)
            return gr.skip(), chat, gr.skip()
        if verb == "fork":
            conversation_id = dialogue.fork(int(message_id)).id
            inform(t("conversation.forked"), request)
        else:
            conversation_id = dialogue.switch_version(int(message_id), -1 if verb == "prev" else 1)
        chat = chat_view(dialogue, dialogue.open_messages(conversation_id), request)
        return conversation_id, chat, self.sidebar.list_for(dialogue, conversation_id, archived)


# Runs once at page load (Blocks.load js=): one capturing listener for the whole page.
BRANCH_LINKS_JS = """() => {
    if (window.__branchLinks) return;
    window.__branchLinks = true;
    document.addEventListener('click', (event) => {
        const link = event.target.closest && event.target.closest('#chat a[href*="#msg-"]');
        if (!link) return;
        const match = link.getAttribute('href').match(/#msg-(\\d+)-(prev|next|fork|speak)$/);
        if (!match) return;
        event.preventDefault();
        event.stopPropagation();
        const box = document.querySelector('#branch-action textarea, #branch-action input');
        if (match[2] === 'speak') window.__speakAfter = {id: match[1], until: Date.now() + 120000};
        box.value = `${match[1]}:${match[2]}:${Date.now()}`;
        box.dispatchEvent(new Event('input', {bubbles: true}));
    }, true);
    // After 🔊 speak: once the answer's sound is drawn in its bubble, play it (the click was the user's gesture).
    setInterval(() => {
        const want = window.__speakAfter;
        if (!want) return;
        if (Date.now() > want.until) { window.__speakAfter = null; return; }
        const link = document.querySelector(`#chat a[href$="#msg-${want.id}-fork"]`);
        const row = link && link.closest('.message-row');
        const play = row && row.querySelector('button.play-btn, button[aria-label="Play"]');
        if (!play) return;
        window.__speakAfter = null;
        play.click();
    }, 250);
}"""
