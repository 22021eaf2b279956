"""Domain messages and model state as Gradio Chatbot messages and Markdown; pure functions."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from assistant.model_host import HostState, Phase
from domain.i18n import ENGLISH, Text, say, t
from domain.settings import AnswerDetails
from domain.types import Attachment, MediaKind, Message, Role, Status, TranscriptStatus

# Sentences by key (domain/locales/page.*.json), said in the reader's language; str() of one is the English.
STOPPED_MARK = t("page.chat.stopped")
THINKING = "…"
UNANSWERED = t("page.chat.unanswered")
EMPTY_ANSWER = t("page.chat.empty_answer")
DEMO_NOTICE = t("page.status.demo")
ANSWER_FAILED = t("answer.failed.plain")

# ![alt](http://…), ![alt](//…): a remote image would be fetched as soon as the chat is shown, so text
# in a file or an answer could send chat contents anywhere. Shown as a link instead (the page's
# Content-Security-Policy blocks remote images in raw HTML too).
_REMOTE_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?((?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//[^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")


def defuse_remote_images(text: str) -> str:
    return _REMOTE_IMAGE.sub(lambda m: f"[🖼 {m.group(1) or 'image'}]({m.group(2)})", text)


FileUrl = Callable[[str, str], str]  # (sha256, stored file name) -> URL the browser fetches it from
HEARD = (MediaKind.AUDIO, MediaKind.VIDEO)  # files whose transcript may come to show under them


@dataclass(frozen=True)
class AudioNotes:
    """How transcripts show under audio: whether they are made, what the worker is doing, how the model hears audio."""

    enabled: bool = False
    status: Text | str = t("whisper.transcribing")  # the transcriber's state, said in the reader's language
    as_transcript: bool = False  # the model has no audio tower: it hears the transcript
    speaks: bool = False  # answers can be spoken (🔊 under each)


def transcript_line(attachment: Attachment, notes: AudioNotes, language: str = ENGLISH) -> str | None:
    transcript = attachment.transcript
    if transcript is None:
        return f"🗣 *{say(notes.status, language)}*" if notes.enabled else None
    if transcript.status is TranscriptStatus.FAILED:
        return say(t("page.transcript.failed", error=transcript.error or t("page.transcript.not_transcribed")), language)
    label = say(t("page.transcript.heard_as" if notes.as_transcript else "page.transcript.label"), language)
    seconds = say(t("page.transcript.seconds", s=transcript.seconds), language) if transcript.seconds else None
    facts = " · ".join(x for x in (transcript.language, seconds) if x)
    demo = say(t("page.transcript.demo"), language) if "random weights" in transcript.model else ""
    text = defuse_remote_images(transcript.text) or say(t("page.transcript.nothing"), language)
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
    messages: Sequence[Message],
    file_url: FileUrl | None = None,
    notes: AudioNotes = AudioNotes(),
    answering: bool = False,
    language: str = ENGLISH,
) -> list[dict]:
    """`answering`: the last message is a question whose answer is on its way; otherwise a question left without
    one (an app stopped before answering it, in a database from before answers were saved with their question, or a
    fork at a question) says so, and offers ↻ (Gradio shows it under a last answer)."""
    chat = [chat_message(m, file_url, notes, language) for m in messages]
    if messages and messages[-1].role is Role.USER and not answering:
        chat.append({"role": "assistant", "content": say(UNANSWERED, language)})
    return chat


def chat_message(
    message: Message, file_url: FileUrl | None = None, notes: AudioNotes = AudioNotes(), language: str = ENGLISH
) -> dict:
    """A stored message for the Chatbot, with its footer: ‹ version › when it has several, and ⑂ fork.

    With `file_url`, attachments are links the browser fetches from the app's checked route (see ui/files.py);
    without, local paths (for tests that never serve them).
    """
    footer = message_footer(message, notes.speaks, language)
    if message.role is Role.USER:
        content: list = []
        for attachment in message.attachments:
            content.append(_file(attachment, file_url))
            # A video's sound track has a transcript once Whisper heard one (a silent video never gets one).
            heard = attachment.kind is MediaKind.AUDIO or (attachment.kind is MediaKind.VIDEO and attachment.transcript)
            line = transcript_line(attachment, notes, language) if heard else None
            if line:
                content.append(line)
        text = defuse_remote_images(message.text) + footer
        if text.strip():
            content.append(text.lstrip("\n"))
        return {"role": "user", "content": content}
    text = answer_text(message.text, message.status, message.error, language) + footer
    if message.speech is not None:
        return {"role": "assistant", "content": [_file(message.speech, file_url), text]}
    return {"role": "assistant", "content": text}


def _file(attachment, file_url: FileUrl | None) -> dict:
    if file_url is None:
        return {"path": str(attachment.path), "mime_type": attachment.mime, "orig_name": attachment.filename}
    url = file_url(attachment.sha256, attachment.path.name)
    return {"file": {"path": url, "url": url, "mime_type": attachment.mime, "orig_name": attachment.filename}}


def message_footer(message: Message, speaks: bool = False, language: str = ENGLISH) -> str:
    # Links to #msg-ID-VERB: ui/branches.py turns a click on one into an event instead of a navigation.
    # Fork works from any message: the new conversation holds the branch up to and including it.
    parts = []
    if speaks and message.speech is None and message.role is Role.ASSISTANT and message.status in (Status.COMPLETE, Status.STOPPED) and message.text.strip():
        parts.append(f"[{say(SPEAK_LABEL, language)}](#msg-{message.id}-speak)")
    if message.versions > 1:
        parts.append(f"[‹](#msg-{message.id}-prev) {message.version} / {message.versions} [›](#msg-{message.id}-next)")
    if message.status is not Status.STREAMING:
        parts.append(f"[{say(FORK_LABEL, language)}](#msg-{message.id}-fork)")
    footer = "\n\n<small>" + " · ".join(parts) + "</small>" if parts else ""
    if message.details is not None and message.details.left_out:
        items = html.escape(say(LIST_SEPARATOR, language).join(say(item, language) for item in message.details.left_out))
        footer += f"\n\n<small>{say(t(LEFT_OUT, items=items), language)}</small>"
    if message.details is not None:
        summary = say(t("page.details.summary"), language)
        footer += f"\n\n<details><summary>{summary}</summary>\n\n{details_text(message.details, language)}\n\n</details>"
    return footer


def details_text(details: AnswerDetails, language: str = ENGLISH) -> str:
    settings = details.settings

    def said(key: str, **params) -> str:
        return say(t(f"page.details.{key}", **params), language)

    def value(x, unit=""):
        return said("default") if x is None else f"{x}{unit}"

    cached = said("cached", n=details.cached_tokens) if details.cached_tokens else ""
    first = said("first_token", s=details.first_token_s) if details.first_token_s is not None else said("no_token")
    speed = said("speed", rate=details.tokens_per_s) if details.tokens_per_s is not None else ""
    lines = [
        said("model", model=details.model, quant=details.quant),
        said("settings", temperature=value(settings.temperature), top_p=value(settings.top_p),
             max_new_tokens=value(settings.max_new_tokens), seed=value(settings.seed)),  # fmt: skip
        said("tokens", prompt=details.prompt_tokens, cached=cached, answer=details.answer_tokens),
        said("speed_line", first=first, speed=speed),
        said("ended", ending=said(f"ending.{details.finish}")),
    ]
    if settings.system_prompt:
        prompt = defuse_remote_images(" ".join(settings.system_prompt.split()))
        lines.insert(2, said("system_prompt", prompt=f"{prompt[:200]}{'…' if len(prompt) > 200 else ''}"))
    return "  \n".join(lines)


FORK_LABEL = t("page.chat.fork")
SPEAK_LABEL = t("page.chat.speak")
LEFT_OUT = "page.chat.left_out"
LIST_SEPARATOR = t("page.chat.list_separator")


def answer_text(text: str, status: Status, error: str | None = None, language: str = ENGLISH) -> str:
    text = defuse_remote_images(text)
    if status is Status.STOPPED:
        mark = say(STOPPED_MARK, language)
        return f"{text}\n\n{mark}" if text else mark
    if status is Status.ERROR:
        notice = f"⚠️ {say(error or ANSWER_FAILED, language)}"
        return f"{text}\n\n{notice}" if text else notice
    if status is Status.STREAMING:
        return text or THINKING
    return text if text.strip() else say(EMPTY_ANSWER, language)


def streaming_text(text: str) -> str:
    return answer_text(text, Status.STREAMING)


def waiting_text(status: str, language: str = ENGLISH) -> str:
    return say(t("page.wait.model", status=status), language)


def transcript_wait_text(status: str, language: str = ENGLISH) -> str:
    return say(t("page.wait.transcript", status=status), language)


def queued_text(ahead: int, language: str = ENGLISH) -> str:
    return say(t("page.wait.queued_one" if ahead == 1 else "page.wait.queued", n=ahead), language)


def status_markdown(state: HostState, demo: bool, language: str = ENGLISH) -> str:
    if state.phase is Phase.LOADING:
        percent = f" {state.fraction:.0%}" if state.fraction is not None else ""
        line = say(t("page.status.loading", percent=percent, message=state.message), language)
    elif state.phase is Phase.FAILED:
        line = say(t("page.status.failed", message=state.message), language)
    else:
        line = say(t("page.status.ready", message=state.message), language)
    return f"{line}\n\n{say(DEMO_NOTICE, language)}" if demo else line
