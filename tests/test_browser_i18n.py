"""The page in Simplified Chinese: a browser whose language is zh-CN sees no English string of the page's catalog,
its errors in Chinese, and the language switch, remembered across reloads (selectors: tests/browser_helpers.py)."""

from __future__ import annotations

import re

import pytest

from tests.browser_helpers import TIMEOUT_MS, VIEWPORT, expect, start_ready_app, wait_for_answer

pytestmark = pytest.mark.browser

CHINESE = "zh-CN"
# The visible text of the page, with the inside of the chat's answers left out (a random demo model writes them)
# but the lines under them (‹ › ⑂ 🔊, ⓘ details, what was left out) kept.
PAGE_TEXT = """() => {
    const hidden = [];
    for (const bubble of document.querySelectorAll('#chat .message-row.bot-row .message-content, #chat .message-row.bot-row .prose')) {
        for (const node of bubble.childNodes) {
            if (node.nodeType === 1 && (node.matches('small, details') || node.querySelector('small, details'))) continue;
            if (node.nodeType === 1) { hidden.push([node, node.style.display]); node.style.display = 'none'; }
        }
    }
    const text = document.body.innerText;
    for (const [node, display] of hidden) node.style.display = display;
    return text;
}"""


def english_fragments() -> dict[str, list[str]]:
    """Per page key (and what an answer left out, budget.*), the pieces of its English sentence that a Chinese page
    must not show: the words between its fields and its Markdown, where they differ from the Chinese sentence (names
    such as "Top-p" or "API" are the same in both)."""
    from domain.i18n import catalog

    english, chinese = catalog("en"), catalog(CHINESE)
    fragments = {}
    for key, sentence in english.items():
        if not key.startswith(("page.", "budget.")) or sentence == chinese[key]:
            continue
        pieces = re.split(r"\{[^}]*\}|[*`_“”()\[\]:;,.…]", sentence)
        kept = [p.strip() for p in pieces if len(p.strip()) >= 4 and re.search("[A-Za-z]{3}", p) and p.strip() not in chinese[key]]
        if kept:
            fragments[key] = kept
    return fragments


def english_on(text: str) -> dict[str, list[str]]:
    return {key: found for key, pieces in english_fragments().items() if (found := [p for p in pieces if p in text])}


def chinese_context(browser):
    return browser.new_context(viewport=VIEWPORT, locale=CHINESE, extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})


def open_in(page, url: str, ready: str) -> None:
    page.goto(url, wait_until="load")
    page.wait_for_selector("#composer textarea")
    expect(page.locator("#model-status")).to_contain_text(ready, timeout=TIMEOUT_MS)


def test_a_chinese_browser_sees_the_page_in_chinese(browser, start_app, demo_model_dir, tmp_path):
    from domain.i18n import say, t

    def zh(key: str, **params) -> str:
        return say(t(key, **params), CHINESE)

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image")
    # A small context, so that a long question is cut and the answer says what its model did not see.
    app = start_ready_app(start_app, demo_model_dir, tmp_path / "data", "--max-context", "400")
    context = chinese_context(browser)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    open_in(page, app.url, "模型已就绪")

    # Labels and buttons (gr.I18n), placeholders, the status line (said by the server), Gradio's own strings.
    expect(page.locator("#new-chat")).to_have_text(zh("page.sidebar.new_chat"))
    expect(page.locator("#stop")).to_have_text(zh("page.stop"))
    expect(page.locator("#conversation-list")).to_contain_text(zh("page.sidebar.conversations"))
    expect(page.locator("#show-archived")).to_contain_text(zh("page.sidebar.show_archived"))
    expect(page.locator("#model-status")).to_contain_text("演示模型")
    from domain.i18n import catalog

    placeholders = {text for key, text in catalog(CHINESE).items() if key.startswith("page.composer.")}
    assert page.locator("#composer textarea").get_attribute("placeholder") in placeholders
    assert page.locator("#search textarea, #search input").first.get_attribute("placeholder") == zh("page.search.placeholder")
    assert page.evaluate("document.documentElement.lang") == CHINESE
    assert page.title() == zh("page.title")
    page.locator("#settings").get_by_text(zh("page.settings.title")).click()
    expect(page.locator("#temperature")).to_contain_text(zh("page.settings.temperature"))
    page.locator("#api-keys").get_by_text(zh("page.keys.title")).click()
    expect(page.locator("#api-note")).to_contain_text("OpenAI")

    # A turn: the lines under the answer (fork, details) are Chinese too.
    page.locator("#composer textarea").fill("你好")
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, bot_rows=1)
    bot = page.locator("#chat .message-row.bot-row")
    expect(bot).to_contain_text(zh("page.chat.fork"))
    expect(bot.locator("summary")).to_have_text(zh("page.details.summary"))
    bot.locator("summary").click()
    expect(bot.locator("details")).to_contain_text("结束方式")

    # No English string of the page's catalog anywhere on it.
    assert english_on(page.evaluate(PAGE_TEXT)) == {}

    # Too long for the context: the line under the answer says, in Chinese, what the model did not see (the earlier
    # messages may go too, before the start of this question).
    page.locator("#composer textarea").fill("长" * 3000)
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, bot_rows=2)
    left_out = bot.last.locator("small", has_text=zh("page.chat.left_out", items=""))
    expect(left_out).to_contain_text(zh("budget.message_start"))
    assert english_on(page.evaluate(PAGE_TEXT)) == {}

    # A refused file: the dialogue manager's error, said in Chinese.
    page.locator("#composer textarea").fill("留着我")
    page.set_input_files("#composer input[type=file]", str(bad))
    page.wait_for_selector('#composer [aria-label="File thumbnail"]')
    page.locator("#composer textarea").press("Enter")
    toast = page.locator('[data-testid="toast-text"].error')
    expect(toast).to_contain_text(zh("file.unreadable", name="notes.png"))
    expect(page.locator("#composer textarea")).to_have_value("留着我")

    # Voice mode's script speaks the page's language too (this browser has no microphone).
    page.locator("#voice-toggle").click()
    no_microphone = zh("page.voice.no_microphone", name="NotFoundError")
    expect(page.locator("#voice-state")).to_have_text(no_microphone)
    expect(page.locator("#voice-toggle")).to_have_text(zh("page.voice.button"))
    context.close()


def test_the_switch_changes_the_language_and_is_remembered(browser, start_app, demo_model_dir, tmp_path):
    from domain.i18n import say, t
    from ui.i18n import COOKIE

    app = start_ready_app(start_app, demo_model_dir, tmp_path / "data")
    context = chinese_context(browser)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    open_in(page, app.url, "模型已就绪")
    expect(page.locator('#language-switch [aria-current="true"]')).to_have_text("简体中文")

    page.locator('#language-switch [data-lang="en"]').click()
    page.wait_for_load_state("load")
    open_in(page, app.url, "Model ready")  # the browser still asks for Chinese; the choice wins
    expect(page.locator("#new-chat")).to_have_text(str(t("page.sidebar.new_chat")))
    expect(page.locator('#language-switch [aria-current="true"]')).to_have_text("English")
    [cookie] = [c for c in context.cookies() if c["name"] == COOKIE]
    assert cookie["value"] == "en" and cookie["sameSite"] == "Lax" and cookie["expires"] > 0
    page.reload(wait_until="load")
    page.wait_for_selector("#composer textarea")
    expect(page.locator("#stop")).to_have_text(str(t("page.stop")))
    assert english_on(page.evaluate(PAGE_TEXT))  # the English page does show them

    page.locator('#language-switch [data-lang="zh-CN"]').click()
    page.wait_for_load_state("load")
    open_in(page, app.url, "模型已就绪")
    expect(page.locator("#new-chat")).to_have_text(say(t("page.sidebar.new_chat"), CHINESE))
    context.close()


def test_an_english_browser_sees_the_page_in_english(browser, start_app, demo_model_dir, tmp_path):
    from domain.i18n import t

    app = start_ready_app(start_app, demo_model_dir, tmp_path / "data")
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    open_in(page, app.url, "Model ready")
    expect(page.locator("#new-chat")).to_have_text(str(t("page.sidebar.new_chat")))
    expect(page.locator('#language-switch [aria-current="true"]')).to_have_text("English")
    assert page.evaluate("document.documentElement.lang") == "en"
    context.close()
