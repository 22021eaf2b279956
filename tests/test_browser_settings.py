"""Per-conversation settings in the real page, and the details under each answer."""

from __future__ import annotations

import pytest

from tests.browser_helpers import TIMEOUT_MS, VIEWPORT, expect, open_page, open_repository, start_ready_app, wait_for_answer

pytestmark = pytest.mark.browser


def test_settings_are_saved_with_the_conversation_and_shown_in_the_details(browser, start_app, demo_model_dir, tmp_path):
    from domain.settings import GenerationSettings

    data_dir = tmp_path / "data"
    app = start_ready_app(start_app, demo_model_dir, data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)

    page.locator("#settings").get_by_text("Settings for this conversation").click()
    page.locator("#system-prompt textarea").fill("Answer like a pirate.")
    page.locator("#temperature input").fill("5")
    page.locator("#composer textarea").fill("Ahoy")
    page.locator("#composer textarea").press("Enter")
    toast = page.locator('[data-testid="toast-text"].error')
    expect(toast).to_contain_text("Temperature: input should be less than or equal to 2")
    page.locator("#temperature input").fill("0")
    page.locator("#seed input").fill("lucky")
    page.locator("#composer textarea").press("Enter")
    expect(toast.last).to_contain_text("Seed: “lucky” is not a whole number")
    assert open_repository(data_dir).list_conversations() == []  # refused before anything was saved
    expect(page.locator("#composer textarea")).to_have_value("Ahoy")

    page.locator("#seed input").fill("")
    page.locator("#max-new-tokens input").fill("5")
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, 1)
    repository = open_repository(data_dir)
    [conversation] = repository.list_conversations()
    expected = GenerationSettings(system_prompt="Answer like a pirate.", temperature=0, max_new_tokens=5)
    assert conversation.settings == expected
    [_, answer] = repository.get_messages(conversation.id)
    assert answer.details.settings == expected and answer.details.finish == "length" and answer.details.answer_tokens == 5

    bubble = page.locator("#chat .message-row.bot-row").last
    details = bubble.locator("details")
    expect(details.locator("summary")).to_have_text("ⓘ details")
    details.locator("summary").click()
    expect(details).to_contain_text("temperature 0.0")
    expect(details).to_contain_text("max 5 new tokens")
    expect(details).to_contain_text("System prompt “Answer like a pirate.”")
    expect(details).to_contain_text("5 in the answer")
    expect(details).to_contain_text("Ended length limit")
    expect(details).to_contain_text("tokens/s")

    # A new chat starts from the defaults; reopening the conversation brings its settings back.
    page.locator("#new-chat").click()
    expect(page.locator("#system-prompt textarea")).to_have_value("")
    expect(page.locator("#max-new-tokens input")).to_have_value("")
    page.locator("#conversation-list label", has_text="Ahoy").click()
    expect(page.locator("#system-prompt textarea")).to_have_value("Answer like a pirate.")
    expect(page.locator("#max-new-tokens input")).to_have_value("5")
    page.close()
