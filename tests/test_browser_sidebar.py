"""The sidebar in the real page: rename, pin, archive, search (English and Chinese) and delete; 500 conversations."""

from __future__ import annotations

import sqlite3
import time

import pytest

from domain.types import MediaFile, MediaKind, Status
from tests import media_factory as make
from tests.browser_helpers import TIMEOUT_MS, VIEWPORT, expect, open_page, open_repository, start_ready_app

pytestmark = pytest.mark.browser


def add_chat(repository, title: str, *questions: str, files=()):
    conversation = repository.create_conversation(title)
    for i, question in enumerate(questions):
        repository.add_user_message(conversation.id, question, list(files) if i == 0 else [])
        reply = repository.start_assistant_message(conversation.id)
        repository.finish_message(reply.id, f"Reply number {i}.", Status.COMPLETE)
    return conversation


def labels(page) -> list[str]:
    return [" ".join(t.split()) for t in page.locator("#conversation-list label").all_text_contents()]


def search(page, query: str) -> None:
    box = page.locator("#search input")
    box.fill("")
    box.press_sequentially(query)


def test_rename_pin_archive_search_and_delete(browser, start_app, demo_model_dir, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    repository = open_repository(data_dir)
    photo = make.png(tmp_path / "only-here.png", color=(1, 2, 3))
    filler = [f"Filler question {i}" for i in range(15)]
    rome = add_chat(repository, "Trip to Rome", *filler, "What about the Colosseum at night?", *filler)
    add_chat(repository, "北京旅行", "我们今天去北京看长城")
    eggs = add_chat(repository, "Eggs", "How long do I boil an egg?", files=[MediaFile(photo, "egg.png", MediaKind.IMAGE, "image/png")])
    [egg_blob] = repository.get_messages(eggs.id)[0].attachments

    app = start_ready_app(start_app, demo_model_dir, data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)
    expect(page.locator("#conversation-list label")).to_have_count(3)

    # Rename in place: the list and the database follow.
    page.locator("#conversation-list label", has_text="Eggs").click()
    rename = page.locator("#rename input")
    expect(rename).to_have_value("Eggs")
    rename.fill("Breakfast")
    rename.press("Enter")
    expect(page.locator("#conversation-list label", has_text="Breakfast")).to_have_count(1)
    assert repository.get_conversation(eggs.id).title == "Breakfast"

    # Pin: on top, marked.
    page.locator("#conversation-list label", has_text="Trip to Rome").click()
    page.locator("#pin").click()
    expect(page.locator("#conversation-list label").first).to_have_text("📌 Trip to Rome")
    expect(page.locator("#pin")).to_have_text("Unpin")
    assert repository.get_conversation(rome.id).pinned

    # Search any message's text; a result opens its conversation at that message.
    page.locator("#new-chat").click()
    search(page, "colosseum")
    results = page.locator("#search-results label")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("Trip to Rome — What about the Colosseum at night?")
    results.first.click()
    hit = page.locator("#chat .message-row.search-hit")
    expect(hit).to_have_count(1)
    expect(hit).to_contain_text("What about the Colosseum at night?")
    expect(hit).to_be_in_viewport()
    expect(page.locator("#chat .message-row")).to_have_count(2 * 31)
    # Chinese has no spaces: two characters in the middle of a sentence are found.
    search(page, "北京")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("我们今天去北京看长城")
    search(page, "no such words anywhere")
    expect(page.locator("#search-results")).to_contain_text("No message contains that")

    # Archive hides it; "Show archived" brings it back.
    page.locator("#conversation-list label", has_text="Trip to Rome").click()
    page.locator("#archive").click()
    expect(page.locator("#conversation-list label", has_text="Trip to Rome")).to_have_count(0)
    page.locator("#show-archived input").check()
    expect(page.locator("#conversation-list label")).to_have_count(1)
    page.locator("#conversation-list label", has_text="Trip to Rome").click()
    page.locator("#archive").click()  # now "Unarchive"
    expect(page.locator("#conversation-list label")).to_have_count(0)
    page.locator("#show-archived input").uncheck()
    expect(page.locator("#conversation-list label", has_text="Trip to Rome")).to_have_count(1)
    assert not repository.get_conversation(rome.id).archived

    # Delete asks first; Cancel keeps it; confirming removes the chat and the file only it used.
    page.locator("#conversation-list label", has_text="Breakfast").click()
    expect(page.locator("#chat .message-row")).to_have_count(2)
    page.locator("#delete").click()
    page.locator("#cancel-delete").click()
    expect(page.locator("#confirm-delete-row")).to_be_hidden()
    assert egg_blob.path.exists()
    page.locator("#delete").click()
    page.locator("#confirm-delete").click()
    expect(page.locator("#conversation-list label", has_text="Breakfast")).to_have_count(0)
    expect(page.locator("#chat .message-row")).to_have_count(0)
    assert sorted(c.title for c in repository.list_conversations()) == ["Trip to Rome", "北京旅行"]
    assert not egg_blob.path.exists()
    db = sqlite3.connect(data_dir / "conversations.sqlite3")
    assert db.execute("select count(*) from message where conversation_id = ?", (eggs.id,)).fetchone() == (0,)
    page.close()


def test_five_hundred_conversations_load_and_scroll(browser, start_app, demo_model_dir, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    repository = open_repository(data_dir)
    for i in range(500):
        repository.create_conversation(f"Conversation number {i}")
    app = start_ready_app(start_app, demo_model_dir, data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    started = time.monotonic()
    open_page(page, app.url)
    expect(page.locator("#conversation-list label")).to_have_count(500)
    print(f"page with 500 conversations ready in {time.monotonic() - started:.2f} s")
    oldest = page.locator("#conversation-list label", has_text="Conversation number 0").last
    oldest.scroll_into_view_if_needed()
    expect(oldest).to_be_in_viewport()
    assert labels(page)[0] == "Conversation number 499"
    page.close()


def test_the_sidebar_works_without_a_model(browser, start_app, tmp_path):
    """Managing conversations needs no model: here the model cannot be loaded at all."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    repository = open_repository(data_dir)
    add_chat(repository, "Old notes", "remember the milk")
    app = start_app("--model", "no-such-org/no-such-model", "--data-dir", str(data_dir))
    app.wait_for_page()
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url, wait_until="load")
    expect(page.locator("#model-status")).to_contain_text("could not be loaded")
    search(page, "milk")
    page.locator("#search-results label").first.click()
    expect(page.locator("#chat .message-row")).to_have_count(2)
    page.locator("#rename input").fill("Shopping")
    page.locator("#rename input").press("Enter")
    expect(page.locator("#conversation-list label", has_text="Shopping")).to_have_count(1)
    page.close()
