"""End-to-end tests: `python run.py` with the demo checkpoint, driven through the real page in headless Chromium (selectors: tests/browser_helpers.py)."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from tests.browser_helpers import (
    CHROMIUM_FLAGS,
    RECORD_BOT_TEXTS,
    answer_shown,
    markdown_free,
    TIMEOUT_MS,
    VIEWPORT,
    expect,
    image_loaded,
    normalise,
    open_page,
    open_repository,
    start_long_answer,
    start_ready_app,
    wait_for_answer,
)
from tests.helpers import ROOT

pytestmark = pytest.mark.browser


# --- tests -----------------------------------------------------------------------------------------------


def test_chat_with_image_streams_and_survives_restart(browser, start_app, demo_model_dir, png_file, tmp_path):
    from domain.types import MediaKind, Role, Status

    data_dir = tmp_path / "data"
    app = start_ready_app(start_app, demo_model_dir, data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)
    expect(page.locator("#model-status")).to_contain_text("Demo model")

    page.evaluate(RECORD_BOT_TEXTS)
    page.locator("#composer textarea").fill("What is in this picture?")
    page.set_input_files("#composer input[type=file]", str(png_file))
    # The thumbnail points at the server's copy once the upload is done.
    page.wait_for_selector('#composer [aria-label="File thumbnail"] img[src*="/gradio_api/file="]')
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, bot_rows=1)

    user = page.locator("#chat .message-row.user-row")
    bot = page.locator("#chat .message-row.bot-row")
    expect(user).to_have_count(1)
    expect(user).to_contain_text("What is in this picture?")
    expect(user.locator("img")).to_have_count(1)
    image_loaded(page, "#chat .message-row.user-row img")
    bot_text = answer_shown(bot)
    assert bot_text, "the answer bubble is empty"
    assert bot_text != "…", "the answer bubble still shows the thinking mark"

    # Streaming: the bubble showed several growing partial answers before the final one.
    seen = [normalise(t) for t in page.evaluate("window.__seen")]
    partial = [t for t in seen if t and t not in ("…", bot_text) and bot_text.startswith(t)]
    assert len(partial) >= 2, f"the answer did not stream; texts seen in the bubble: {seen!r}"
    times = page.evaluate("window.__times")
    assert times[-1] > times[0], times

    repository = open_repository(data_dir)
    conversations = repository.list_conversations()
    assert [c.title for c in conversations] == ["What is in this picture?"]
    conversation_id = conversations[0].id
    messages = repository.get_messages(conversation_id)
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT]
    question, answer = messages
    assert question.text == "What is in this picture?"
    assert [a.kind for a in question.attachments] == [MediaKind.IMAGE]
    assert question.attachments[0].filename == png_file.name
    assert question.attachments[0].path.read_bytes() == png_file.read_bytes()
    assert answer.status is Status.COMPLETE
    assert markdown_free(answer.text) == markdown_free(bot_text)
    # Stored once, as a blob: the upload is gone and Gradio keeps no copy of its own.
    assert [p for p in (data_dir / "uploads").rglob("*") if p.is_file()] == []

    # A crash (SIGKILL), then a second run on the same data: the conversation is listed and opens again.
    app.kill()
    app2 = start_ready_app(start_app, demo_model_dir, data_dir)
    open_page(page, app2.url)
    title = page.locator("#conversation-list label", has_text="What is in this picture?")
    expect(title).to_have_count(1)
    expect(page.locator("#chat .message-row")).to_have_count(0)
    title.click()
    expect(user).to_have_count(1)
    expect(user).to_contain_text("What is in this picture?")
    expect(user.locator("img")).to_have_count(1)
    image_loaded(page, "#chat .message-row.user-row img")
    expect(bot).to_have_count(1)
    assert answer_shown(bot) == bot_text
    if os.environ.get("SAVE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))

    # The history continues in the same conversation.
    page.locator("#composer textarea").fill("And the colour?")
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, bot_rows=2)
    expect(user).to_have_count(2)
    expect(user.nth(1)).to_contain_text("And the colour?")
    conversations = repository.list_conversations()
    assert [c.id for c in conversations] == [conversation_id]
    messages = repository.get_messages(conversation_id)
    assert [(m.role, m.status) for m in messages] == [
        (Role.USER, Status.COMPLETE),
        (Role.ASSISTANT, Status.COMPLETE),
        (Role.USER, Status.COMPLETE),
        (Role.ASSISTANT, Status.COMPLETE),
    ]
    assert messages[2].text == "And the colour?"
    assert markdown_free(messages[3].text) == markdown_free(answer_shown(bot.nth(1)))
    page.close()


def test_bad_file_is_refused_by_name_and_the_text_kept(browser, start_app, demo_model_dir, tmp_path):
    data_dir = tmp_path / "data"
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image")
    app = start_ready_app(start_app, demo_model_dir, data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)

    page.locator("#composer textarea").fill("keep me")
    page.set_input_files("#composer input[type=file]", str(bad))
    page.wait_for_selector('#composer [aria-label="File thumbnail"]')
    page.locator("#composer textarea").press("Enter")

    toast = page.locator('[data-testid="toast-text"].error')
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("notes.png")
    expect(toast).to_contain_text("not an image or audio file")
    expect(page.locator("#composer textarea")).to_have_value("keep me")
    expect(page.locator("#composer textarea")).to_be_enabled()
    # The file at fault leaves the composer and the server's upload folder; nothing was saved.
    expect(page.locator('#composer [aria-label="File thumbnail"]')).to_have_count(0)
    expect(page.locator("#chat .message-row")).to_have_count(0)
    assert open_repository(data_dir).list_conversations() == []
    assert [p.name for p in (data_dir / "uploads").rglob("*") if p.is_file()] == []

    # The chat's own trash button starts a new conversation instead of silently continuing the old one.
    open_page(page, app.url)
    page.locator("#composer textarea").fill("first chat")
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, 1)
    page.locator("#chat").hover()
    page.locator('#chat button[aria-label="Clear"]').click()
    expect(page.locator("#chat .message-row")).to_have_count(0)
    expect(page.locator("#conversation-list input:checked")).to_have_count(0)  # the server forgot the chat
    page.locator("#composer textarea").fill("second chat")
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, 1)
    titles = [c.title for c in open_repository(data_dir).list_conversations()]
    assert titles == ["second chat", "first chat"]
    page.close()


def test_microphone_question_is_answered_and_its_transcript_shown_also_after_a_restart(
    browser, start_app, demo_model_dir, speech_wav, tmp_path
):
    from assistant.media import decode_audio
    from domain.types import MediaKind, Role, Status, TranscriptStatus

    wav48 = tmp_path / "speech-48k.wav"
    subprocess.run(["sox", str(speech_wav), "-r", "48000", "-c", "1", str(wav48)], check=True)
    data_dir = tmp_path / "data"
    app = start_ready_app(start_app, demo_model_dir, data_dir)

    # A browser of its own: the fake microphone (playing wav48) is chosen at launch.
    mic_browser = browser.browser_type.launch(
        executable_path="/usr/bin/chromium",
        args=[
            *CHROMIUM_FLAGS,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav48}",
        ],
    )
    try:
        page = mic_browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(TIMEOUT_MS)
        open_page(page, app.url)

        page.locator('#composer button[aria-label="Record audio"]').click()
        page.locator('#composer button[aria-label="Start recording"]').click()
        stop_recording = page.locator('#composer button[aria-label="Stop recording"]')
        expect(stop_recording).to_be_visible()
        # About two seconds of recording, by the recorder's own clock.
        page.wait_for_function(
            """() => {
                const clock = document.querySelector('#composer .minimal-audio-recorder .timestamp');
                const m = clock && clock.textContent.trim().match(/^(\\d+):(\\d\\d)$/);
                return !!m && Number(m[1]) * 60 + Number(m[2]) >= 2;
            }""",
            timeout=10_000,
        )
        stop_recording.click()
        page.locator('#composer button[aria-label="Attach audio"]').click()
        expect(page.locator('#composer [aria-label="File thumbnail"]')).to_have_count(1)
        page.locator('#composer button[aria-label="Submit"]').click()
        wait_for_answer(page, bot_rows=1)

        user = page.locator("#chat .message-row.user-row")
        expect(user).to_have_count(1)
        # Playwright's CSS engine pierces shadow roots: the <audio> lives in the waveform player's one.
        expect(user.locator("audio")).to_have_count(1)
        bot_text = normalise(page.locator("#chat .message-row.bot-row").text_content())
        assert bot_text and bot_text != "…"
        # Whisper's transcript fills in under the recording once ready (the demo's says it is meaningless).
        expect(user).to_contain_text("Transcript", timeout=TIMEOUT_MS)
        expect(user).to_contain_text("random demo Whisper")
        shown_before = normalise(user.text_content())
    finally:
        mic_browser.close()

    repository = open_repository(data_dir)
    conversations = repository.list_conversations()
    assert len(conversations) == 1
    messages = repository.get_messages(conversations[0].id)
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT]
    question, answer = messages
    assert question.text == ""
    assert [a.kind for a in question.attachments] == [MediaKind.AUDIO]
    audio = decode_audio(question.attachments[0].path)
    seconds = len(audio) / 16_000
    assert 1.5 <= seconds <= 10, f"the recording lasts {seconds:.2f} s"
    assert float(np.sqrt(np.mean(audio**2))) > 0.01, "the recording is silent"
    assert answer.status is Status.COMPLETE
    # Not compared with the bubble character for character: the recording (so the gibberish answer) differs
    # from run to run, and Markdown rendering may drop characters such as * _ < from it.
    assert answer.text.strip()
    transcript = question.attachments[0].transcript
    assert transcript.status is TranscriptStatus.DONE and transcript.text
    words = [w for w in transcript.text.split() if w.isalpha() and len(w) >= 3]
    assert all(w in shown_before for w in words[:3])

    # After a restart the transcript is still there, under the same recording.
    app.kill()
    app = start_ready_app(start_app, demo_model_dir, data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)
    page.locator("#conversation-list label").first.click()
    user = page.locator("#chat .message-row.user-row")
    expect(user).to_contain_text("Transcript")
    assert all(w in normalise(user.text_content()) for w in words[:3])
    page.close()


def test_stop_button_keeps_the_partial_answer_marked_as_stopped(browser, start_app, demo_model_dir, tmp_path):
    from domain.types import Status
    from ui.render import STOPPED_MARK

    data_dir = tmp_path / "data"
    app = start_ready_app(start_app, demo_model_dir, data_dir, "--max-new-tokens", "4000")
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)

    start_long_answer(page)
    page.locator("#stop").click()
    wait_for_answer(page, 1)

    bot = page.locator("#chat .message-row.bot-row").last
    expect(bot).to_contain_text("Stopped")
    repository = open_repository(data_dir)
    [conversation] = repository.list_conversations()
    _, reply = repository.get_messages(conversation.id)
    assert reply.status is Status.STOPPED
    assert reply.text.strip()
    # Stopped long before the 4000-token budget: the click reached the generating thread.
    assert len(reply.text) < 4000
    assert str(STOPPED_MARK).strip("*⏹ ") in bot.text_content()
    page.close()
