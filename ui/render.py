"""Domain messages and model state as Gradio Chatbot messages and Markdown; pure functions."""

from __future__ import annotations

from collections.abc import Sequence

from assistant.model_host import HostState, Phase
from assistant.types import Message, Role, Status

STOPPED_MARK = "⏹ *Stopped*"
THINKING = "…"
DEMO_NOTICE = (
    "🧪 **Demo model**: tiny and randomly initialised, so its answers are meaningless. "
    "Start with `--model` to chat with a real model."
)


def chat_messages(messages: Sequence[Message]) -> list[dict]:
    return [chat_message(m) for m in messages]


def chat_message(message: Message) -> dict:
    if message.role is Role.USER:
        content: list = [
            {"path": str(a.path), "mime_type": a.mime, "orig_name": a.filename} for a in message.attachments
        ]
        if message.text:
            content.append(message.text)
        return {"role": "user", "content": content}
    return {"role": "assistant", "content": answer_text(message.text, message.status, message.error)}


def answer_text(text: str, status: Status, error: str | None = None) -> str:
    if status is Status.STOPPED:
        return f"{text}\n\n{STOPPED_MARK}" if text else STOPPED_MARK
    if status is Status.ERROR:
        notice = f"⚠️ {error or 'The answer failed.'}"
        return f"{text}\n\n{notice}" if text else notice
    return text or THINKING


def waiting_text(status: str) -> str:
    return f"⏳ Your message is saved; the model is still loading ({status}). The answer starts when it is ready."


def status_markdown(state: HostState, demo: bool) -> str:
    if state.phase is Phase.LOADING:
        percent = f" {state.fraction:.0%}" if state.fraction is not None else ""
        line = f"⏳ **Loading the model**{percent}: {state.message}"
    elif state.phase is Phase.FAILED:
        line = f"⚠️ **The model could not be loaded.** {state.message}"
    else:
        line = f"✅ **Model ready**: {state.message}"
    return f"{line}\n\n{DEMO_NOTICE}" if demo else line
