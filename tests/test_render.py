"""How messages are shown: pure functions of the stored message."""

from __future__ import annotations

from domain.types import Message, Role, Status
from ui import render


def answer(text: str, status: Status = Status.COMPLETE, error: str | None = None) -> Message:
    return Message(id=1, conversation_id="c", role=Role.ASSISTANT, text=text, status=status, error=error)


def shown(message: Message) -> str:
    """What the chat shows, without the footer of links under it."""
    return render.chat_message(message)["content"].removesuffix(render.message_footer(message))


def test_a_complete_but_empty_answer_says_so_instead_of_thinking_forever():
    for text in ("", "  \n"):
        assert shown(answer(text)) == str(render.EMPTY_ANSWER) != render.THINKING
    assert render.streaming_text("") == render.THINKING


def test_stopped_and_failed_answers_keep_their_text():
    assert shown(answer("Half", Status.STOPPED)) == f"Half\n\n{render.STOPPED_MARK}"
    assert shown(answer("", Status.ERROR, "boom")) == "⚠️ boom"


def test_remote_markdown_images_become_links():
    leak = "see ![x](http://127.0.0.1:7999/leak?secret=abc) and ![](//evil.example/p.png \"t\") and ![ok](data:image/png;base64,AA)"
    text = shown(answer(leak))
    assert "![" not in text.replace("![ok](data:", "")
    assert "[🖼 x](http://127.0.0.1:7999/leak?secret=abc)" in text
    assert "[🖼 image](//evil.example/p.png)" in text
    user = Message(id=2, conversation_id="c", role=Role.USER, text=leak, status=Status.COMPLETE)
    assert "![x](http" not in render.chat_message(user)["content"][-1]


def test_queued_text_counts_answers_ahead():
    assert "1 answer for other chats" in render.queued_text(1)
    assert "3 answers" in render.queued_text(3)


def test_footers_link_versions_and_forks():
    from dataclasses import replace

    second_of_three = replace(answer("hi"), id=7, version=2, versions=3)
    assert render.message_footer(second_of_three) == (
        "\n\n<small>[‹](#msg-7-prev) 2 / 3 [›](#msg-7-next) · [⑂ fork](#msg-7-fork)</small>"
    )
    question = Message(id=3, conversation_id="c", role=Role.USER, text="q", status=Status.COMPLETE)
    assert render.message_footer(question) == "\n\n<small>[⑂ fork](#msg-3-fork)</small>"
    assert render.message_footer(replace(question, versions=2)) == (
        "\n\n<small>[‹](#msg-3-prev) 1 / 2 [›](#msg-3-next) · [⑂ fork](#msg-3-fork)</small>"
    )
    assert render.message_footer(replace(answer(""), status=Status.STREAMING)) == ""


def test_details_say_how_much_of_the_prompt_the_kept_cache_held():
    from domain.settings import AnswerDetails, GenerationSettings
    from ui.render import details_text

    def details(cached: int) -> str:
        return details_text(AnswerDetails(model="demo", quant="none", settings=GenerationSettings(), prompt_tokens=1257,
                                          cached_tokens=cached, answer_tokens=32))

    assert "1257 in the prompt (1216 of them kept from the last turn) · 32 in the answer" in details(1216)
    assert "1257 in the prompt · 32 in the answer" in details(0)


def test_a_video_shows_as_a_player_with_its_sound_tracks_transcript_under_it():
    from pathlib import Path

    from domain.types import Attachment, MediaKind, Transcript, TranscriptStatus

    transcript = Transcript(TranscriptStatus.DONE, "a red car drives by", "en", 2.0, "whisper")
    clip = Attachment("a" * 64, MediaKind.VIDEO, "video/mp4", "clip.mp4", 10, Path("/files/aa/clip.mp4"), transcript)
    question = Message(id=2, conversation_id="c", role=Role.USER, text="What happens?", status=Status.COMPLETE, attachments=(clip,))
    content = render.chat_message(question, lambda sha256, name: f"http://app/attachments/{name}")["content"]
    assert content[0] == {"file": {"path": "http://app/attachments/clip.mp4", "url": "http://app/attachments/clip.mp4",
                                   "mime_type": "video/mp4", "orig_name": "clip.mp4"}}  # Gradio's chat plays video/*
    assert content[1].startswith("🗣 *Transcript* (en · 2.0 s): a red car drives by")
