"""What the composer offers to attach: the kinds the loaded model takes (audio also as a transcript), and the
microphone where it takes audio. A video chosen or dropped on a page whose model takes none is refused on the page,
before it is uploaded, in a sentence naming the model: Gradio's own refusal of a file type names no model. Knows
nothing of storage or of how models run.
"""

from __future__ import annotations

import gradio as gr

from domain import limits
from domain.errors import InvalidInput
from domain.i18n import t
from domain.types import MediaKind
from ui.errors import shows_errors

KINDS = (MediaKind.IMAGE, MediaKind.AUDIO, MediaKind.VIDEO)


def offers(accepted) -> tuple[list[str], list[str]]:
    """(sources, file types) for a model that takes `accepted`; the placeholder saying them is keyed by the types."""
    sources = ["upload", "microphone"] if MediaKind.AUDIO in accepted else ["upload"]
    file_types = [kind.value for kind in KINDS if kind in accepted]
    return sources, file_types


class VideoRefusal:
    """The refusal of a video for a model that takes none, said as the dialogue manager says it of a sent one."""

    def __init__(self, dialogue):
        self.dialogue = dialogue

    @shows_errors
    def refuse(self, chosen: str) -> None:
        family = self.dialogue.host.family
        name = (chosen or "").rpartition("|")[0][: limits.MAX_FILENAME_CHARS] or "video"
        if family is not None:
            raise InvalidInput(t("video.not_accepted", name=name, model=family.title, accepts=family.describe_accepts()))


def refuse_videos(app: gr.Blocks, dialogue) -> None:
    """Inside the page's Blocks, where the model takes no video: the page script and the event it reports through."""
    chosen = gr.Textbox(visible="hidden", elem_id="refused-video")
    chosen.change(VideoRefusal(dialogue).refuse, inputs=[chosen], show_progress="hidden")
    app.load(None, js=REFUSAL_JS.replace("SUFFIXES", "|".join(s.lstrip(".") for s in limits.VIDEO_SUFFIXES)))


# Runs once at page load: capturing listeners see a chosen or dropped file before Gradio's own do, and stop them for
# a video (by its type, or by its name where the browser gives none), reporting "NAME|NONCE" in the hidden textbox.
REFUSAL_JS = """() => {
    if (window.__videoRefusal) return;
    window.__videoRefusal = true;
    const named = /\\.(SUFFIXES)$/i;
    const video = (file) => file.type ? file.type.startsWith('video/') : named.test(file.name);
    const refuse = (event, files) => {
        const found = Array.from(files || []).find(video);
        if (!found) return;
        event.preventDefault();
        event.stopImmediatePropagation();
        if (event.type === 'change') event.target.value = '';
        const box = document.querySelector('#refused-video textarea, #refused-video input');
        box.value = `${found.name}|${Date.now()}`;
        box.dispatchEvent(new Event('input', {bubbles: true}));
    };
    document.addEventListener('change', (event) => {
        if (event.target.matches && event.target.matches('#composer input[type=file]')) refuse(event, event.target.files);
    }, true);
    document.addEventListener('drop', (event) => {
        if (event.target.closest && event.target.closest('#composer')) refuse(event, event.dataTransfer && event.dataTransfer.files);
    }, true);
}"""
