"""Helpers for the browser tests: driving the real page in headless Chromium.

Selectors relied on (Gradio 6.31 DOM, checked by hand):
  #model-status                                    the status Markdown ("Model ready", "Demo model")
  #composer textarea / #composer input[type=file]  the MultimodalTextbox's text and file input
  #composer [aria-label="File thumbnail"]          an attached file in the composer, before sending
  #composer button[aria-label=...]                 "Record audio", "Start recording", "Stop recording",
                                                   "Attach audio", "Submit"
  #chat .message-row.user-row / .bot-row           chat bubbles
  #stop                                            the Stop button (disabled when no answer is running)
  #conversation-list label                         one past conversation, by title
  [data-testid="toast-text"].error                 the toast gr.Error shows
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 30_000
expect.set_options(timeout=15_000)


def normalise(text: str) -> str:
    return " ".join(text.split())


def markdown_free(text: str) -> str:
    """Text without the characters Markdown may turn into markup (random demo answers contain them), normalised."""
    return normalise(text.translate({ord(c): " " for c in "`*_~<>[]#\\|"}))


def answer_shown(bubble) -> str:
    """An answer bubble's text, normalised, without what is under it (‹ n / m ›, ⑂ fork, ⓘ details)."""
    text = bubble.evaluate(
        "(el) => { const c = el.cloneNode(true); c.querySelectorAll('small, details').forEach(n => n.remove());"
        " return c.textContent; }"
    )
    return normalise(text)


def open_repository(data_dir: Path):
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository

    return ConversationRepository(
        open_database(sqlite_url(data_dir / "conversations.sqlite3")), BlobStore(data_dir / "files")
    )


def start_ready_app(start_app, demo_model_dir: Path, data_dir: Path, *args: str):
    app = start_app("--model", str(demo_model_dir), "--data-dir", str(data_dir), *args)
    app.wait_for_page()
    app.wait_for_log("model ready")
    return app


def start_long_answer(page: Page, text: str = "Tell me a long story") -> None:
    """Send `text` and return once the answer is visibly streaming (Stop enabled, a few words shown)."""
    page.locator("#composer textarea").fill(text)
    page.locator("#composer textarea").press("Enter")
    expect(page.locator("#stop")).to_be_enabled()
    page.wait_for_function(
        "() => { const b = document.querySelectorAll('#chat .message-row.bot-row');"
        " return b.length && b[b.length - 1].textContent.trim().length > 10; }"
    )


def open_page(page: Page, url: str) -> None:
    page.goto(url, wait_until="load")
    page.wait_for_selector("#composer textarea")
    expect(page.locator("#model-status")).to_contain_text("Model ready", timeout=TIMEOUT_MS)


def try_sign_in(page: Page, name: str, password: str) -> None:
    page.locator("input[type=text]").fill(name)
    page.locator("input[type=password]").fill(password)
    page.get_by_role("button", name="Sign in").click()


def sign_in(browser, url: str, name: str, password: str):
    """A new browser context signed in as `name`, on the page once its model is ready: (context, page)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="load")
    try_sign_in(page, name, password)
    page.wait_for_selector("#composer textarea")
    expect(page.locator("#model-status")).to_contain_text("Model ready", timeout=TIMEOUT_MS)
    return context, page


def wait_for_answer(page: Page, bot_rows: int) -> None:
    """Until the turn is over: `bot_rows` answers shown, Stop disabled again, composer enabled and empty.

    Counting the bot rows matters: before the first update arrives the Stop button is also disabled and
    the composer enabled (but not yet emptied).
    """
    try:
        page.wait_for_function(
            """(n) => {
                const stop = document.querySelector('#stop');
                const box = document.querySelector('#composer textarea');
                const bots = document.querySelectorAll('#chat .message-row.bot-row');
                return bots.length === n && stop && stop.disabled && box && !box.disabled && box.value === '';
            }""",
            arg=bot_rows,
            timeout=TIMEOUT_MS,
        )
    except PlaywrightTimeoutError:
        state = page.evaluate(
            """() => ({
                bot_rows: document.querySelectorAll('#chat .message-row.bot-row').length,
                user_rows: document.querySelectorAll('#chat .message-row.user-row').length,
                stop_disabled: document.querySelector('#stop')?.disabled,
                composer_disabled: document.querySelector('#composer textarea')?.disabled,
                composer_text: document.querySelector('#composer textarea')?.value,
                toasts: [...document.querySelectorAll('[data-testid="toast-text"]')].map(t => t.textContent),
            })"""
        )
        raise AssertionError(f"the answer did not finish with {bot_rows} answer(s) shown; page state: {state}") from None


def image_loaded(page: Page, selector: str) -> None:
    page.wait_for_function(
        "(sel) => { const img = document.querySelector(sel); return !!img && img.complete && img.naturalWidth > 0; }",
        arg=selector,
        timeout=TIMEOUT_MS,
    )


RECORD_BOT_TEXTS = """() => {
    window.__seen = [];
    window.__times = [];
    const chat = document.querySelector('#chat');
    const record = () => {
        const rows = chat.querySelectorAll('.message-row.bot-row');
        if (!rows.length) return;
        const text = rows[rows.length - 1].textContent;
        if (!window.__seen.includes(text)) {
            window.__seen.push(text);
            window.__times.push(performance.now());
        }
    };
    new MutationObserver(record).observe(chat, {subtree: true, childList: true, characterData: true});
}"""
