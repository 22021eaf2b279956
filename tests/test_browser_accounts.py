"""Two users on one server: each signs in and sees, searches, exports and downloads only their own."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.browser_helpers import TIMEOUT_MS, VIEWPORT, expect, sign_in, start_ready_app, try_sign_in, wait_for_answer
from tests.helpers import ROOT, add_user, urllib_status

pytestmark = pytest.mark.browser


def fetch(context, url: str) -> int:
    """The status of GET url with this browser's cookies (its session), outside the page."""
    return context.request.get(url).status


def test_each_user_sees_only_their_own(browser, start_app, demo_model_dir, png_file, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "alice", "alice's password")
    add_user(data_dir, "bob", "bob's password")
    app = start_ready_app(start_app, demo_model_dir, data_dir)

    alice_context, alice = sign_in(browser, app.url, "alice", "alice's password")
    alice.locator("#composer textarea").fill("Alice's secret garden")
    alice.set_input_files("#composer input[type=file]", str(png_file))
    alice.wait_for_selector('#composer [aria-label="File thumbnail"]')
    alice.locator("#composer textarea").press("Enter")
    wait_for_answer(alice, 1)
    image = alice.locator('#chat .message-row.user-row img[src*="/attachments/"]')
    expect(image).to_have_count(1)
    image_url = image.get_attribute("src")
    assert fetch(alice_context, image_url) == 200

    bob_context, bob = sign_in(browser, app.url, "bob", "bob's password")
    expect(bob.locator("#conversation-list label")).to_have_count(0)
    bob.locator("#search input").press_sequentially("secret garden")
    expect(bob.locator("#search-results")).to_contain_text("No message contains that")
    assert fetch(bob_context, image_url) == 404  # Alice's file, by its URL
    assert urllib_status(image_url) == 404  # nobody signed in
    bob.locator("#export-all").click()
    expect(bob.locator('[data-testid="toast-text"].error')).to_contain_text("no conversation to export")

    from cli.data import open_storage

    storage = open_storage(data_dir, None)
    repository, users = storage.conversations, storage.users
    assert [c.title for c in repository.for_owner(users.id_of("alice")).list_conversations()] == ["Alice's secret garden"]
    assert repository.for_owner(users.id_of("bob")).list_conversations() == []
    alice_context.close()
    bob_context.close()


def signin_page(browser, start_app, demo_model_dir, tmp_path):
    """The sign-in page of an app whose one user is alice (its model not waited for)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "alice", "alice's password")
    app = start_app("--model", str(demo_model_dir), "--data-dir", str(data_dir))
    app.wait_for_page()
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url, wait_until="load")
    return page


def test_a_wrong_password_is_refused(browser, start_app, demo_model_dir, tmp_path):
    page = signin_page(browser, start_app, demo_model_dir, tmp_path)
    try_sign_in(page, "alice", "not her password")
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    expect(page.locator("#composer")).to_have_count(0)
    page.close()


def test_a_user_creates_an_api_key_in_the_page_uses_it_and_revokes_it(browser, start_app, demo_model_dir, tmp_path):
    import openai

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "alice", "alice's password")
    app = start_ready_app(start_app, demo_model_dir, data_dir)
    context, page = sign_in(browser, app.url, "alice", "alice's password")
    page.locator("#api-keys").get_by_text("API keys").click()
    expect(page.locator("#api-note")).to_contain_text(f"{app.url}/v1")
    page.locator("#api-key-name input").fill("my editor")
    page.locator("#api-key-create").click()
    created = page.locator("#api-key-created input, #api-key-created textarea")
    expect(created).to_have_value(re.compile(r"^sk-la-"))
    key = created.input_value()
    client = openai.OpenAI(base_url=f"{app.url}/v1", api_key=key, max_retries=0, timeout=60)
    answer = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "from my editor"}], max_tokens=4)
    assert answer.choices[0].message.content

    page.locator("#api-key-list input").click()
    page.get_by_role("option", name=re.compile("my editor")).click()
    page.locator("#api-key-revoke").click()
    expect(page.locator('[data-testid="toast-text"]')).to_contain_text("revoked")
    expect(created).to_be_hidden()
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    # The exchange is alice's conversation, in her sidebar after a reload.
    page.reload(wait_until="load")
    expect(page.locator("#conversation-list")).to_contain_text("from my editor")
    context.close()


def test_repeated_wrong_passwords_are_paused_and_the_page_says_for_how_long(browser, start_app, demo_model_dir, tmp_path):
    from ui.sessions import FAILURES_PER_USER

    page = signin_page(browser, start_app, demo_model_dir, tmp_path)
    for attempt in range(FAILURES_PER_USER + 1):
        with page.expect_response(lambda response: response.url.endswith("/login")) as answer:
            try_sign_in(page, "alice", f"guess {attempt}")
        assert answer.value.status == (400 if attempt < FAILURES_PER_USER else 429)
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"^Too many failed sign-ins for this account: try again in \d+ minutes\.$"))
    try_sign_in(page, "alice", "alice's password")  # the right password waits too
    expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
    expect(page.locator("#composer")).to_have_count(0)
    page.close()


def test_a_deleted_users_open_page_can_no_longer_act(browser, start_app, demo_model_dir, tmp_path):
    """Her cookie used to go on working as the owner-less local person, storing what she sent for nobody."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "alice", "alice's password")
    add_user(data_dir, "carol", "carol's password")
    app = start_ready_app(start_app, demo_model_dir, data_dir)
    context, page = sign_in(browser, app.url, "carol", "carol's password")
    subprocess.run([sys.executable, "run.py", "deluser", "carol", "--data-dir", str(data_dir)], cwd=ROOT, check=True, capture_output=True)
    page.locator("#composer textarea").fill("Am I still here?")
    page.locator("#composer textarea").press("Enter")
    page.wait_for_timeout(3000)
    import sqlite3

    with sqlite3.connect(data_dir / "conversations.sqlite3") as db:
        assert db.execute("select count(*) from message").fetchone()[0] == 0
    page.reload(wait_until="load")
    expect(page.locator("input[type=password]")).to_be_visible()  # signed out: the sign-in form again
    assert page.url.endswith("/signin")
    context.close()
