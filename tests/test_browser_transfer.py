"""Export and import from the real page."""

from __future__ import annotations

import io
import json
import re
import urllib.request
import zipfile

import pytest

from domain.types import Status
from tests.browser_helpers import TIMEOUT_MS, VIEWPORT, expect, open_page, open_repository, sign_in, start_ready_app
from tests.helpers import add_user, urllib_status, wait_until

pytestmark = pytest.mark.browser
# Gradio puts the UploadButton's file input beside the button (#import), not inside it.
IMPORT_INPUT = 'input[type=file][accept=".zip, .json"]'


def test_export_a_conversation_and_import_it_back(browser, start_app, demo_model_dir, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    repository = open_repository(data_dir)
    for title in ("Keep me", "Another"):
        conversation = repository.create_conversation(title)
        repository.add_user_message(conversation.id, f"question in {title}", [])
        reply = repository.start_assistant_message(conversation.id)
        repository.finish_message(reply.id, f"answer in {title}", Status.COMPLETE)
    app = start_ready_app(start_app, demo_model_dir, data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)

    page.locator("#conversation-list label", has_text="Keep me").click()
    page.locator("#export").click()
    link = page.locator("#download a").first
    expect(link).to_be_visible()
    url = link.get_attribute("href")
    # The link names a one-time token, nothing of where the data lives.
    assert re.fullmatch(re.escape(app.url) + r"/exports/[A-Za-z0-9_-]{43}", url), url
    with urllib.request.urlopen(url) as response:
        data = response.read()
        disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "Keep%20me" in disposition  # RFC 5987 filename*
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("conversations.json"))
    assert [c["title"] for c in manifest["conversations"]] == ["Keep me"]
    assert urllib_status(url) == 404  # downloaded once: gone
    wait_until_empty(data_dir / "exports")

    # Import the file through the page: a copy of the conversation appears, with a summary.
    exported = tmp_path / "keep-me.zip"
    exported.write_bytes(data)
    page.set_input_files(IMPORT_INPUT, str(exported))
    expect(page.locator('[data-testid="toast-text"]').last).to_contain_text("Imported 1 conversation(s), 2 message(s)")
    expect(page.locator("#conversation-list label", has_text="Keep me")).to_have_count(2)
    assert sorted(c.title for c in repository.list_conversations()) == ["Another", "Keep me", "Keep me"]

    # A bad file is refused with a reason, and changes nothing.
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    page.set_input_files(IMPORT_INPUT, str(bad))
    expect(page.locator('[data-testid="toast-text"].error')).to_contain_text("not an export this app can read")
    assert len(repository.list_conversations()) == 3
    page.close()


def test_an_export_is_downloaded_only_by_its_owner_and_only_once(browser, start_app, demo_model_dir, tmp_path):
    from cli.data import open_storage

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "alice", "alice's password")
    add_user(data_dir, "bob", "bob's password")
    storage = open_storage(data_dir, None)
    alices = storage.conversations.for_owner(storage.users.id_of("alice"))
    alices.add_user_message(alices.create_conversation("Alice's diary").id, "dear diary", [])
    app = start_ready_app(start_app, demo_model_dir, data_dir)

    alice_context, alice = sign_in(browser, app.url, "alice", "alice's password")
    alice.locator("#export-all").click()
    link = alice.locator("#download a").first
    expect(link).to_be_visible()
    url = link.get_attribute("href")

    bob_context, _ = sign_in(browser, app.url, "bob", "bob's password")
    assert bob_context.request.get(url).status == 404  # another user, with the link
    assert urllib_status(url) == 404  # nobody signed in
    response = alice_context.request.get(url)  # neither of those used it up
    assert response.status == 200 and response.headers["content-disposition"].startswith("attachment;")
    with zipfile.ZipFile(io.BytesIO(response.body())) as archive:
        manifest = json.loads(archive.read("conversations.json"))
    assert [c["title"] for c in manifest["conversations"]] == ["Alice's diary"]
    assert alice_context.request.get(url).status == 404  # once only
    wait_until_empty(data_dir / "exports")
    alice_context.close()
    bob_context.close()



def wait_until_empty(folder, timeout: float = 5) -> None:
    """Until no exported file is left under `folder` (deleted just after its download)."""
    wait_until(lambda: not any(p.is_file() for p in folder.rglob("*")), timeout, 0.1, lambda: str([str(p) for p in folder.rglob("*")]))
