"""--engine openai in the browser: one app serves the demo model; another, started with --engine openai and
pointed at the first one's /v1, holds a conversation with an image and an audio clip, and Stop works through it."""

from __future__ import annotations


import pytest

from tests.browser_helpers import (
    TIMEOUT_MS,
    VIEWPORT,
    answer_shown,
    expect,
    open_page,
    open_repository,
    start_long_answer,
    start_ready_app,
    wait_for_answer,
)
from tests.helpers import free_port, settled_answer

pytestmark = pytest.mark.browser


def send(page, text: str, file=None) -> None:
    page.locator("#composer textarea").fill(text)
    if file is not None:
        page.set_input_files("#composer input[type=file]", str(file))
        page.wait_for_selector('#composer [aria-label="File thumbnail"]')
    page.locator("#composer textarea").press("Enter")


def test_a_conversation_through_a_remote_engine(browser, start_app, demo_model_dir, png_file, speech_wav, tmp_path):
    from domain.types import MediaKind, Role, Status

    backend = start_ready_app(start_app, demo_model_dir, tmp_path / "backend", "--max-new-tokens", "4000")
    front = start_app(
        "--engine", "openai", "--engine-url", f"{backend.url}/v1", "--model", "demo", "--engine-accepts", "text,image,audio",
        "--whisper-model", "none", "--max-new-tokens", "24", "--data-dir", str(tmp_path / "front"),
    )
    front.wait_for_page()
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, front.url)
    expect(page.locator("#model-status")).to_contain_text(f"demo · remote · {backend.url}/v1")

    send(page, "What is in this picture?", png_file)
    wait_for_answer(page, 1)
    send(page, "Listen to this.", speech_wav)
    wait_for_answer(page, 2)
    send(page, "Thanks!")
    wait_for_answer(page, 3)
    bots = page.locator("#chat .message-row.bot-row")
    shown = [answer_shown(bots.nth(i)) for i in range(3)]
    assert all(shown), shown

    front_repo, back_repo = open_repository(tmp_path / "front"), open_repository(tmp_path / "backend")
    [conversation] = front_repo.list_conversations()
    messages = front_repo.get_messages(conversation.id)
    assert [m.status for m in messages if m.role is Role.ASSISTANT] == [Status.COMPLETE] * 3
    assert [a.kind for m in messages for a in m.attachments] == [MediaKind.IMAGE, MediaKind.AUDIO]
    # The server continued one conversation of its own, with the same answers the page shows.
    [served] = back_repo.list_conversations()
    assert [m.text for m in back_repo.get_messages(served.id) if m.role is Role.ASSISTANT] == [
        m.text for m in messages if m.role is Role.ASSISTANT
    ]

    # Stop: the page stops at once and keeps the partial answer; the server's generation stops too.
    page.locator("#new-chat").click()
    expect(page.locator("#chat .message-row")).to_have_count(0)  # the new chat's (empty) settings are in: now fill
    page.locator("#settings").get_by_text("Settings for this conversation").click()
    page.locator("#max-new-tokens input, #max-new-tokens textarea").fill("4000")
    start_long_answer(page)
    page.locator("#stop").click()
    wait_for_answer(page, 1)
    expect(page.locator("#chat .message-row.bot-row").last).to_contain_text("Stopped")
    stopped = [c for c in front_repo.list_conversations() if c.id != conversation.id][0]
    reply = front_repo.get_messages(stopped.id)[-1]
    assert reply.status is Status.STOPPED and reply.text.strip()
    long_story = next(c for c in back_repo.list_conversations() if c.id != served.id)
    remote = settled_answer(back_repo, long_story.id)
    assert remote.status is Status.STOPPED and len(remote.text) < 4000
    page.close()


def test_a_remote_engine_that_is_down_says_so_on_the_page_and_keeps_the_question(browser, start_app, tmp_path):
    from domain.types import Status

    port = free_port()
    front = start_app("--engine", "openai", "--engine-url", f"http://127.0.0.1:{port}/v1", "--model", "Qwen/Qwen2.5-Omni-7B",
                      "--whisper-model", "none", "--data-dir", str(tmp_path / "front"))
    front.wait_for_page()
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, front.url)
    send(page, "Is anyone there?")
    wait_for_answer(page, 1)
    expect(page.locator("#chat .message-row.bot-row").last).to_contain_text("not reachable")
    [conversation] = open_repository(tmp_path / "front").list_conversations()
    question, answer = open_repository(tmp_path / "front").get_messages(conversation.id)
    assert question.text == "Is anyone there?" and answer.status is Status.ERROR
    page.close()
