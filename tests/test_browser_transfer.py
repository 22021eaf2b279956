"""Export and import from the real page."""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile

import pytest

from domain.types import Status
from tests.browser_helpers import TIMEOUT_MS, VIEWPORT, expect, open_page, open_repository, start_ready_app

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
    with urllib.request.urlopen(app.url + link.get_attribute("href").removeprefix(app.url)) as response:
        data = response.read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("conversations.json"))
    assert [c["title"] for c in manifest["conversations"]] == ["Keep me"]

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
