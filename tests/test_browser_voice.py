"""Voice mode in the real page, with Chromium's fake microphone playing an espeak-ng question followed by silence, over
and over: the question goes without a click and is answered aloud; a longer answer is interrupted by the question
spoken again; a denied microphone, a page off localhost/HTTPS and a speaker who never stops are told what happened."""

from __future__ import annotations

import subprocess

import pytest

from domain.types import MediaKind, Role, Status
from tests.browser_helpers import CHROMIUM_FLAGS, TIMEOUT_MS, VIEWPORT, expect, open_page, open_repository, start_ready_app
from tests.helpers import wait_until

pytestmark = pytest.mark.browser


def fake_microphone(browser, wav):
    """A browser of its own whose microphone plays `wav` in a loop (the file is chosen at launch)."""
    return browser.browser_type.launch(
        executable_path="/usr/bin/chromium",
        args=[*CHROMIUM_FLAGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-audio-capture={wav}"],
    )


def voice_mode(browser, url: str):
    """A page of `browser` on the app at `url`, once its model is ready, with voice mode turned on."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    open_page(page, url)
    page.locator("#voice-toggle").click()
    return page


def timings(page, kind: str) -> list[float]:
    return [t["ms"] for t in page.evaluate("window.__voice ? window.__voice.timings : []") if t["kind"] == kind]


def test_voice_mode_answers_aloud_without_a_click_and_speech_interrupts_an_answer(
    browser, start_app, demo_model_dir, speech_wav, tmp_path
):
    looped = tmp_path / "question-then-silence.wav"
    subprocess.run(["sox", str(speech_wav), "-r", "48000", "-c", "1", str(looped), "pad", "0.3", "12"], check=True)
    data_dir = tmp_path / "data"
    app = start_ready_app(start_app, demo_model_dir, data_dir, "--max-new-tokens", "2000")
    repository = open_repository(data_dir)
    mic = fake_microphone(browser, looped)
    try:
        page = mic.new_page(viewport=VIEWPORT)
        page.set_default_timeout(TIMEOUT_MS)
        open_page(page, app.url)
        # A short first answer (this conversation's setting; the app's is 2000 tokens), so that it is spoken whole.
        page.locator("#settings").get_by_text("Settings for this conversation").click()
        page.locator("#max-new-tokens input").fill("16")
        page.locator("#voice-toggle").click()
        expect(page.locator("#voice-toggle")).to_have_text("⏹ End voice")
        expect(page.locator("#voice-state")).to_contain_text("Listening")

        # The question is sent by itself once it ends; its answer is spoken, then kept in its bubble.
        page.wait_for_function("() => window.__voice.timings.some(t => t.kind === 'first_audio')", timeout=60_000)
        bots = page.locator("#chat .message-row.bot-row")
        expect(bots.first.locator("button.play-btn")).to_have_count(1, timeout=TIMEOUT_MS)
        conversation = repository.list_conversations()[-1]  # the first, oldest
        question, answer = repository.get_messages(conversation.id)[:2]
        assert [a.filename for a in question.attachments] == ["voice-question.wav"]
        assert question.attachments[0].kind is MediaKind.AUDIO
        assert answer.status is Status.COMPLETE and answer.speech is not None
        assert timings(page, "sent")[0] < 2_000  # the end of speech was found, and the question sent, within 2 s

        # Long answers now, in a new chat (once the first turn is over, its transcript shown, so that nothing of it
        # comes after to refill the settings): the question, heard again while one is written and spoken, stops it.
        expect(page.locator("#chat .message-row.user-row").first).to_contain_text("Transcript", timeout=TIMEOUT_MS)
        page.locator("#new-chat").click()
        page.wait_for_function("() => window.__voice.timings.some(t => t.kind === 'barge_in')", timeout=90_000)

        def stopped_then_asked():
            for summary in repository.list_conversations():
                path = repository.get_messages(summary.id)
                if any(m.role is Role.ASSISTANT and m.status is Status.STOPPED and m.text and
                       any(n.role is Role.USER and n.attachments for n in path[i + 1:]) for i, m in enumerate(path)):
                    return True
            return False

        wait_until(stopped_then_asked, 60, 0.5, "no answer was stopped by speech and followed by the new question")
        assert all(ms < 300 for ms in timings(page, "barge_in")), timings(page, "barge_in")
        page.locator("#voice-toggle").click()
        expect(page.locator("#voice-toggle")).to_have_text("🎙 Voice")
        page.evaluate("() => { const stop = document.querySelector('#stop'); if (!stop.disabled) stop.click(); }")
    finally:
        mic.close()

    # Without the microphone: none there, denied by the browser, or a page that is not on localhost or HTTPS.
    page = voice_mode(browser, app.url)
    expect(page.locator("#voice-state")).to_contain_text("No microphone could be opened (NotFoundError)")
    expect(page.locator("#voice-toggle")).to_have_text("🎙 Voice")
    page.close()
    denying = browser.browser_type.launch(
        executable_path="/usr/bin/chromium",
        args=[*CHROMIUM_FLAGS, "--use-fake-device-for-media-stream", "--deny-permission-prompts"],
    )
    try:
        page = voice_mode(denying, app.url)
        expect(page.locator("#voice-state")).to_contain_text("The browser denied the microphone")
    finally:
        denying.close()
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script("Object.defineProperty(window, 'isSecureContext', {get: () => false})")
    page = context.new_page()
    open_page(page, app.url)
    page.locator("#voice-toggle").click()
    expect(page.locator("#voice-state")).to_contain_text("only on localhost or over HTTPS")
    context.close()


def test_a_speaker_who_never_stops_is_cut_at_the_longest_clip_and_told_and_silence_sends_nothing(
    browser, start_app, demo_model_dir, tmp_path
):
    speech = tmp_path / "speech.wav"
    words = "Once upon a time there was a very long story that went on and on without a single pause for breath"
    subprocess.run(["espeak-ng", "-s", "200", "-g", "0", "-w", str(speech), words], check=True)
    endless = tmp_path / "endless.wav"
    subprocess.run(["sox", str(speech), "-r", "48000", "-c", "1", str(endless)], check=True)
    data_dir = tmp_path / "data"
    app = start_ready_app(start_app, demo_model_dir, data_dir, "--max-audio-seconds", "2", "--max-new-tokens", "4")
    mic = fake_microphone(browser, endless)
    try:
        page = voice_mode(mic, app.url)
        expect(page.locator("#voice-state")).to_contain_text("You spoke for longer than 2 s: the first 2 s were sent")
        repository = open_repository(data_dir)
        wait_until(lambda: repository.list_conversations(), 30, 0.2, "the cut question was not sent")
        question = repository.get_messages(repository.list_conversations()[0].id)[0]
        from assistant.media import decode_audio

        assert 1.5 <= len(decode_audio(question.attachments[0].path)) / 16_000 <= 2.1
        page.locator("#voice-toggle").click()
    finally:
        mic.close()

    # A microphone that hears only silence: voice mode keeps listening and sends nothing.
    silence = tmp_path / "silence.wav"
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "1", str(silence), "trim", "0", "3"], check=True)
    quiet = fake_microphone(browser, silence)
    try:
        page = voice_mode(quiet, app.url)
        expect(page.locator("#voice-state")).to_contain_text("Listening")
        page.wait_for_timeout(4_000)
        expect(page.locator("#voice-state")).to_contain_text("Listening")
        assert len(repository.list_conversations()) == 1  # only the cut question's
    finally:
        quiet.close()
