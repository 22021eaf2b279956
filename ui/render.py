"""Domain messages and model state as Gradio Chatbot messages and Markdown; pure functions."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from assistant.model_host import HostState, Phase
from domain.settings import AnswerDetails
from domain.types import Attachment, MediaKind, Message, Role, Status, TranscriptStatus

STOPPED_MARK = "⏹ *Stopped*"
THINKING = "…"
UNANSWERED = "⚠️ This question has not been answered. Press ↻ to ask it again."
EMPTY_ANSWER = "*(The model ended its answer without saying anything.)*"
DEMO_NOTICE = (
    "🧪 **Demo model**: tiny and randomly initialised, so its answers are meaningless. "
    "Start with `--model` to chat with a real model."
)

# ![alt](http://…), ![alt](//…): a remote image would be fetched as soon as the chat is shown, so text
# in a file or an answer could send chat contents anywhere. Shown as a link instead (the page's
# Content-Security-Policy blocks remote images in raw HTML too).
_REMOTE_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?((?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//[^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")


def defuse_remote_images(text: str) -> str:
    return _REMOTE_IMAGE.sub(lambda m: f"[🖼 {m.group(1) or 'image'}]({m.group(2)})", text)


FileUrl = Callable[[str, str], str]  # (sha256, stored file name) -> URL the browser fetches it from


@dataclass(frozen=True)
class AudioNotes:
    """How transcripts show under audio: whether they are made, what the worker is doing, how the model hears audio."""

    enabled: bool = False
    status: str = "Transcribing…"
    as_transcript: bool = False  # the model has no audio tower: it hears the transcript
    speaks: bool = False  # answers can be spoken (🔊 under each)


def transcript_line(attachment: Attachment, notes: AudioNotes) -> str | None:
    transcript = attachment.transcript
    if transcript is None:
        return f"🗣 *{notes.status}*" if notes.enabled else None
    if transcript.status is TranscriptStatus.FAILED:
        return f"🗣 *No transcript*: {transcript.error or 'Whisper could not transcribe it.'}"
    label = "Heard as transcript" if notes.as_transcript else "Transcript"
    facts = " · ".join(x for x in (transcript.language, f"{transcript.seconds:.1f} s" if transcript.seconds else None) if x)
    demo = " — *random demo Whisper: meaningless*" if "random weights" in transcript.model else ""
    text = defuse_remote_images(transcript.text) or "*(nothing heard)*"
    return f"🗣 *{label}*{f' ({facts})' if facts else ''}: {text}{demo}"


def audio_notes(dialogue) -> AudioNotes:
    """From a DialogueManager: its transcriber's state and its model's hearing."""
    transcriber, family = dialogue.transcriber, dialogue.host.family
    return AudioNotes(
        enabled=transcriber is not None,
        status=transcriber.state.message if transcriber is not None else "",
        as_transcript=family is not None and not family.hears(),
        speaks=dialogue.speech is not None,
    )


def chat_messages(
    messages: Sequence[Message], file_url: FileUrl | None = None, notes: AudioNotes = AudioNotes(), answering: bool = False
) -> list[dict]:
    """`answering`: the last message is a question whose answer is on its way; otherwise a question left without
    one (an app stopped before answering it, in a database from before answers were saved with their question, or a
    fork at a question) says so, and offers ↻ (Gradio shows it under a last answer)."""
    chat = [chat_message(m, file_url, notes) for m in messages]
    if messages and messages[-1].role is Role.USER and not answering:
        chat.append({"role": "assistant", "content": UNANSWERED})
    return chat


def chat_message(message: Message, file_url: FileUrl | None = None, notes: AudioNotes = AudioNotes()) -> dict:
    """A stored message for the Chatbot, with its footer: ‹ version › when it has several, and ⑂ fork.

    With `file_url`, attachments are links the browser fetches from the app's checked route (see ui/files.py);
    without, local paths (for tests that never serve them).
    """
    footer = message_footer(message, notes.speaks)
    if message.role is Role.USER:
        content: list = []
        for attachment in message.attachments:
            content.append(_file(attachment, file_url))
            # A video's sound track has a transcript once Whisper heard one (a silent video never gets one).
            heard = attachment.kind is MediaKind.AUDIO or (attachment.kind is MediaKind.VIDEO and attachment.transcript)
            line = transcript_line(attachment, notes) if heard else None
            if line:
                content.append(line)
        text = defuse_remote_images(message.text) + footer
        if text.strip():
            content.append(text.lstrip("\n"))
        return {"role": "user", "content": content}
    text = answer_text(message.text, message.status, message.error) + footer
    if message.speech is not None:
        return {"role": "assistant", "content": [_file(message.speech, file_url), text]}
    return {"role": "assistant", "content": text}


def _file(attachment, file_url: FileUrl | None) -> dict:
    if file_url is None:
        return {"path": str(attachment.path), "mime_type": attachment.mime, "orig_name": attachment.filename}
    url = file_url(attachment.sha256, attachment.path.name)
    return {"file": {"path": url, "url": url, "mime_type": attachment.mime, "orig_name": attachment.filename}}


def message_footer(message: Message, speaks: bool = False) -> str:
    # Links to #msg-ID-VERB: ui/branches.py turns a click on one into an event instead of a navigation.
    # Fork works from any message: the new conversation holds the branch up to and including it.
    parts = []
    if speaks and message.speech is None and message.role is Role.ASSISTANT and message.status in (Status.COMPLETE, Status.STOPPED) and message.text.strip():
        parts.append(f"[{SPEAK_LABEL}](#msg-{message.id}-speak)")
    if message.versions > 1:
        parts.append(f"[‹](#msg-{message.id}-prev) {message.version} / {message.versions} [›](#msg-{message.id}-next)")
    if message.status is not Status.STREAMING:
        parts.append(f"[{FORK_LABEL}](#msg-{message.id}-fork)")
    footer = "\n\n<small>" + " · ".join(parts) + "</small>" if parts else ""
    if message.details is not None and message.details.left_out:
        footer += f"\n\n<small>{LEFT_OUT_LABEL} " + html.escape("; ".join(message.details.left_out)) + "</small>"
    if message.details is not None:
        footer += f"\n\n<details><summary>ⓘ details</summary>\n\n{details_text(message.details)}\n\n</details>"
    return footer


def details_text(details: AnswerDetails) -> str:
    settings = details.settings
    ending = {"finished": "finished", "length": "length limit", "stopped": "stopped", "error": "error"}[details.finish]

    def value(x, unit=""):
        return "default" if x is None else f"{x}{unit}"

    lines = [
        f"**Model** {details.model} · {details.quant}",
        f"**Settings** temperature {value(settings.temperature)} · top-p {value(settings.top_p)} · "
        f"max {value(settings.max_new_tokens)} new tokens · seed {value(settings.seed)}",
        f"**Tokens** {details.prompt_tokens} in the prompt"
        + (f" ({details.cached_tokens} of them kept from the last turn)" if details.cached_tokens else "")
        + f" · {details.answer_tokens} in the answer",
        "**Speed** "
        + (f"first token after {details.first_token_s:.2f} s" if details.first_token_s is not None else "no token")
        + (f" · {details.tokens_per_s:.1f} tokens/s" if details.tokens_per_s is not None else ""),
        f"**Ended** {ending}",
    ]
    if settings.system_prompt:
        prompt = defuse_remote_images(" ".join(settings.system_prompt.split()))
        lines.insert(2, f"**System prompt** “{prompt[:200]}{'…' if len(prompt) > 200 else ''}”")
    return "  \n".join(lines)


FORK_LABEL = "⑂ fork"
SPEAK_LABEL = "🔊 speak"
LEFT_OUT_LABEL = "✂ Too long for the model's context; it did not see:"


def answer_text(text: str, status: Status, error: str | None = None) -> str:
    text = defuse_remote_images(text)
    if status is Status.STOPPED:
        return f"{text}\n\n{STOPPED_MARK}" if text else STOPPED_MARK
    if status is Status.ERROR:
        notice = f"⚠️ {error or 'The answer failed.'}"
        return f"{text}\n\n{notice}" if text else notice
    if status is Status.STREAMING:
        return text or THINKING
    return text if text.strip() else EMPTY_ANSWER


def streaming_text(text: str) -> str:
    return answer_text(text, Status.STREAMING)


def waiting_text(status: str) -> str:
    return f"⏳ Your message is saved; the model is still loading ({status}). The answer starts when it is ready."


def transcript_wait_text(status: str) -> str:
    return f"⏳ This model hears audio as text: waiting for the transcript ({status})."


def queued_text(ahead: int) -> str:
    answers = "answer" if ahead == 1 else "answers"
    return f"⏳ Queued: {ahead} {answers} for other chats before yours. **⏹ Stop** cancels."


def status_markdown(state: HostState, demo: bool) -> str:
    if state.phase is Phase.LOADING:
        percent = f" {state.fraction:.0%}" if state.fraction is not None else ""
        line = f"⏳ **Loading the model**{percent}: {state.message}"
    elif state.phase is Phase.FAILED:
        line = f"⚠️ **The model could not be loaded.** {state.message}"
    else:
        line = f"✅ **Model ready**: {state.message}"
    return f"{line}\n\n{DEMO_NOTICE}" if demo else line
