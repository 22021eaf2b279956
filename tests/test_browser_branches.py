"""Branches in the real page: regenerate and switch between answers, edit a question and switch branches, fork."""

from __future__ import annotations

import pytest

from tests.browser_helpers import (
    TIMEOUT_MS,
    VIEWPORT,
    answer_shown,
    expect,
    open_page,
    open_repository,
    start_ready_app,
    wait_for_answer,
)

pytestmark = pytest.mark.browser

RECORD_BOT_BUBBLE_COUNTS = """() => {
    window.__botBubbles = [];
    const chat = document.querySelector('#chat');
    new MutationObserver(() => window.__botBubbles.push(chat.querySelectorAll('[data-testid="bot"]').length))
        .observe(chat, {subtree: true, childList: true});
}"""


def send(page, text: str, bot_rows: int) -> None:
    page.locator("#composer textarea").fill(text)
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, bot_rows)


def click_link(page, row, label: str) -> None:
    row.locator("a", has_text=label).click()


def test_regenerate_edit_switch_and_fork(browser, start_app, demo_model_dir, tmp_path):
    data_dir = tmp_path / "data"
    app = start_ready_app(start_app, demo_model_dir, data_dir, "--max-new-tokens", "12")
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)
    send(page, "First question", 1)
    send(page, "Second question", 2)
    bots = page.locator("#chat .message-row.bot-row")
    users = page.locator("#chat .message-row.user-row")
    first_answer = answer_shown(bots.nth(1))

    # Regenerate: a second version of the last answer; the arrows switch between them.
    page.locator("#chat").hover()
    page.evaluate(RECORD_BOT_BUBBLE_COUNTS)
    page.locator('#chat button[aria-label="Retry"]').click()
    # Until the new version is shown: before the retry starts, the page already looks like a finished turn.
    expect(bots.nth(1)).to_contain_text("2 / 2")
    wait_for_answer(page, 2)
    assert max(page.evaluate("window.__botBubbles")) == 2  # the new answer streams in place of the old one
    repository = open_repository(data_dir)
    [conversation] = repository.list_conversations()
    path = repository.get_messages(conversation.id)
    assert [m.text for m in path[:3]] == ["First question", path[1].text, "Second question"]
    assert (path[3].version, path[3].versions) == (2, 2)
    assert answer_shown(bots.nth(1)) == " ".join(path[3].text.split())
    click_link(page, bots.nth(1), "‹")
    expect(bots.nth(1)).to_contain_text("1 / 2")
    assert answer_shown(bots.nth(1)) == first_answer
    assert repository.get_messages(conversation.id)[3].version == 1
    click_link(page, bots.nth(1), "›")
    expect(bots.nth(1)).to_contain_text("2 / 2")

    # Edit the first question: the conversation continues from the new version, the old branch stays.
    users.first.hover()
    page.locator('#chat button[aria-label="Edit"]').first.click()  # only questions have Edit
    editor = page.locator("#chat textarea")
    editor.fill("First question, rephrased")
    page.locator('#chat button[aria-label="Submit"]').click()
    wait_for_answer(page, 1)
    expect(users).to_have_count(1)
    expect(users.first).to_contain_text("First question, rephrased")
    expect(users.first).to_contain_text("2 / 2")
    click_link(page, users.first, "‹")
    expect(users).to_have_count(2)  # back on the old branch, down to its latest answer
    expect(users.first).to_contain_text("1 / 2")
    expect(users.nth(1)).to_contain_text("Second question")
    path = repository.get_messages(conversation.id)
    assert [m.text for m in path if m.role.value == "user"] == ["First question", "Second question"]

    # Fork from the first answer: a new conversation holding the path up to it, opened at once.
    click_link(page, bots.first, "⑂ fork")
    expect(page.locator("#conversation-list label", has_text="First question (fork)")).to_have_count(1)
    expect(page.locator("#chat .message-row")).to_have_count(2)
    fork = next(c for c in repository.list_conversations() if c.title.endswith("(fork)"))
    forked = repository.get_messages(fork.id)
    assert [m.text for m in forked] == [path[0].text, path[1].text]
    send(page, "Only in the fork", 2)
    assert [m.text for m in repository.get_messages(fork.id)][2] == "Only in the fork"
    assert "Only in the fork" not in [m.text for m in repository.get_messages(conversation.id)]

    # Fork from a question: the new conversation ends with it unanswered, says so, and ↻ asks it.
    click_link(page, users.last, "⑂ fork")
    expect(page.locator("#conversation-list label", has_text="(fork) (fork)")).to_have_count(1)
    expect(bots.last).to_contain_text("This question has not been answered. Press ↻ to ask it again.")
    page.locator("#chat").hover()
    page.locator('#chat button[aria-label="Retry"]').click()
    expect(bots.last).not_to_contain_text("has not been answered")
    wait_for_answer(page, 2)
    second_fork = next(c for c in repository.list_conversations() if c.title.endswith("(fork) (fork)"))
    asked = repository.get_messages(second_fork.id)
    assert [m.text for m in asked][:3] == [path[0].text, path[1].text, "Only in the fork"]
    assert asked[-1].role.value == "assistant" and asked[-1].status.value == "complete"
    assert answer_shown(bots.last) == " ".join(asked[-1].text.split())

    # 🔊 under an answer: its sound is made once, kept with it, shown in its bubble and played at once.
    click_link(page, bots.last, "🔊 speak")
    expect(bots.last.locator('button[aria-label="Pause"]')).to_have_count(1)  # playing
    spoken = repository.get_messages(second_fork.id)[-1]
    assert spoken.speech is not None and spoken.speech.mime == "audio/mpeg"
    expect(bots.last.get_by_text("🔊 speak")).to_have_count(0)
    page.reload(wait_until="load")
    page.locator("#conversation-list label", has_text="(fork) (fork)").click()
    expect(bots.last.locator('button[aria-label="Play"]')).to_have_count(1)  # kept: there after a reload
    page.close()
