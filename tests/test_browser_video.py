"""Video in the page, end to end (`python run.py` with demo checkpoints, headless Chromium): a short video with a
spoken sound track, attached with the paperclip, is answered by the Omni demo and plays in the chat; the Qwen2-Audio
demo's page offers no video and refuses one naming the model, before anything is uploaded or saved."""

from __future__ import annotations

import re

import pytest

from tests.browser_helpers import TIMEOUT_MS, VIEWPORT, answer_shown, expect, open_page, open_repository, start_ready_app, wait_for_answer

pytestmark = pytest.mark.browser

QUESTION = "What happens in this video?"


def test_a_spoken_video_is_answered_by_omni_and_plays_in_the_chat(browser, start_app, demo_model_dir, speech_video, tmp_path):
    from domain.types import MediaKind, Role, Status

    data_dir = tmp_path / "data"
    app = start_ready_app(start_app, demo_model_dir, data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)
    assert "video/*" in page.locator("#composer input[type=file]").get_attribute("accept")
    expect(page.locator("#composer textarea")).to_have_attribute("placeholder", re.compile("attach images, audio or video"))

    page.locator("#composer textarea").fill(QUESTION)
    page.set_input_files("#composer input[type=file]", str(speech_video))
    expect(page.locator('#composer [aria-label="File thumbnail"] .feather-video')).to_have_count(1)  # uploaded
    page.locator("#composer textarea").press("Enter")
    wait_for_answer(page, bot_rows=1)

    user, bot = page.locator("#chat .message-row.user-row"), page.locator("#chat .message-row.bot-row")
    expect(user).to_contain_text(QUESTION)
    expect(user.locator("video")).to_have_count(1)
    # The player has the clip: served by the attachment route, its three seconds known to the browser.
    page.wait_for_function(
        "() => { const v = document.querySelector('#chat .message-row.user-row video');"
        " return !!v && v.readyState >= 1 && v.duration > 2.5 && v.src.includes('/attachments/'); }"
    )
    shown = answer_shown(bot)
    assert shown and shown != "…" and "⚠️" not in shown, shown

    repository = open_repository(data_dir)
    [conversation] = repository.list_conversations()
    question, answer = repository.get_messages(conversation.id)
    assert (question.role, question.text, answer.role, answer.status) == (Role.USER, QUESTION, Role.ASSISTANT, Status.COMPLETE)
    [clip] = question.attachments
    assert (clip.kind, clip.mime, clip.filename) == (MediaKind.VIDEO, "video/mp4", speech_video.name)
    assert clip.path.read_bytes() == speech_video.read_bytes()
    assert answer.text.strip() and answer.details.prompt_tokens > 100  # the frames and the sound track were in the prompt
    page.close()


def test_qwen2_audio_refuses_the_video_naming_the_model_before_anything_is_saved(
    browser, start_app, family_model_dir, speech_video, tmp_path
):
    data_dir = tmp_path / "data"
    app = start_ready_app(start_app, family_model_dir("qwen2-audio"), data_dir)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, app.url)
    assert page.locator("#composer input[type=file]").get_attribute("accept") == "audio/*"  # video is not offered

    page.locator("#composer textarea").fill(QUESTION)
    page.set_input_files("#composer input[type=file]", str(speech_video))  # chosen anyway ("All files" in the picker)
    toast = page.locator('[data-testid="toast-text"]')
    expect(toast.first).to_contain_text(f"“{speech_video.name}” is a video, which Qwen2-Audio cannot watch; it takes text and audio")
    expect(page.locator('#composer [aria-label="File thumbnail"]')).to_have_count(0)
    expect(page.locator("#composer textarea")).to_have_value(QUESTION)  # the text stays to be sent without it
    expect(page.locator("#chat .message-row")).to_have_count(0)

    repository = open_repository(data_dir)
    assert repository.list_conversations() == [] and repository.list_conversations(archived=True) == []
    assert [p for p in (data_dir / "files").rglob("*") if p.is_file()] == []
    assert [p for p in (data_dir / "uploads").rglob("*") if p.is_file()] == []  # never even uploaded
    page.close()
