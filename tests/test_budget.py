"""The context budget: a conversation longer than the model's context is answered, leaving out the least useful
parts first (earlier audio, earlier images, oldest turns), and the answer says what the model did not see."""

from __future__ import annotations

import threading

from assistant.engine import TransformersEngine
from domain.types import Status
from tests.engine_helpers import GREEDY
from tests.engine_helpers import make_manager as manager_for
from ui import render

CONTEXT = 200
ANSWER = 16


class CountingEngine(TransformersEngine):
    """The real engine on a small context, keeping each prompt's length as the model got it."""

    def __init__(self, inner: TransformersEngine, context: int = CONTEXT):
        super().__init__(
            inner.model, inner.processor, inner.info, inner.family, max_new_tokens=ANSWER, generation_kwargs=GREEDY, max_context=context
        )
        self.inputs = []
        self.prompt_tokens: list[int] = []

    def prepare(self, model_input):
        prepared = super().prepare(model_input)
        self.inputs.append(model_input)
        self.prompt_tokens.append(int(prepared["input_ids"].shape[1]))
        return prepared


def send(manager, conversation_id, text, uploads=()):
    return list(manager.send(conversation_id, text, list(uploads), threading.Event()))


def english(left_out) -> tuple[str, ...]:
    """What an answer left out, as the API and exports say it (the page says it in its reader's language)."""
    return tuple(str(item) for item in left_out)


def texts(model_input) -> str:
    return " ".join(item.get("text", "") for turn in model_input.conversation for item in turn["content"])


def test_a_conversation_longer_than_the_context_is_answered_leaving_out_audio_then_images_then_old_turns(
    engine, repository, png_file, speech_wav
):
    small = CountingEngine(engine)
    manager = manager_for(small, repository)
    first = send(manager, None, "What is in this picture and this question?", [(png_file, "car.png"), (speech_wav, "q.wav")])
    conversation_id = first[0].conversation.id
    assert first[-1].message.details.left_out == ()  # it fits at first
    seen: list[tuple[str, ...]] = []
    for turn in range(8):
        events = send(manager, conversation_id, f"Follow-up number {turn}: tell me more about it, please.")
        answer = events[-1].message
        assert answer.status is Status.COMPLETE, answer.error  # never a length error
        assert answer.details.prompt_tokens + answer.details.answer_tokens <= CONTEXT
        seen.append(english(answer.details.left_out))
    assert all(tokens <= CONTEXT - ANSWER for tokens in small.prompt_tokens)
    # Audio went first, then the image, then the oldest turns; each answer lists what its model did not see.
    growing = [items for items in seen if items]
    assert growing and growing[0][0] == "the audio “q.wav”"
    assert growing[-1] == ("the audio “q.wav”", "the image “car.png”", "earlier messages")
    last_prompt = texts(small.inputs[-1])
    assert "Follow-up number 7" in last_prompt and "Follow-up number 0" not in last_prompt
    assert small.inputs[-1].images == [] and small.inputs[-1].audios == []
    # The page shows it under the answer.
    shown = render.chat_message(repository.get_messages(conversation_id)[-1])["content"]
    assert "✂ Too long for the model's context; it did not see: the audio “q.wav”; the image “car.png”; earlier messages" in shown


def test_earlier_audio_is_replaced_by_its_transcript_before_anything_else(engine, repository, png_file, speech_wav, transcripts):
    from domain.types import Transcript, TranscriptStatus

    small = CountingEngine(engine, context=120)
    manager = manager_for(small, repository)
    first = send(manager, None, "Listen", [(speech_wav, "q.wav")])
    sha = first[0].message.attachments[0].sha256
    transcripts.save(sha, Transcript(TranscriptStatus.DONE, text="what colour is the car", language="en", seconds=2.4, model="m"))
    events = send(manager, first[0].conversation.id, "And?")
    assert english(events[-1].message.details.left_out) == ("the audio “q.wav” (as its transcript)",)
    assert "[Audio “q.wav”, transcribed: what colour is the car]" in texts(small.inputs[-1])


def test_a_single_message_longer_than_the_context_keeps_its_end(engine, repository):
    small = CountingEngine(engine, context=64)
    manager = manager_for(small, repository)
    question = "word " * 400 + "THE ACTUAL QUESTION?"
    events = send(manager, None, question)
    answer = events[-1].message
    assert answer.status is Status.COMPLETE and english(answer.details.left_out) == ("the start of the message",)
    assert texts(small.inputs[-1]).rstrip().endswith("THE ACTUAL QUESTION?")
    assert repository.get_messages(events[0].conversation.id)[0].text == question  # stored whole


def test_a_model_that_hears_only_transcripts_has_them_left_out_when_the_chat_is_too_long(
    family_model_dir, repository, speech_wav, transcripts
):
    from assistant.loader import ModelSpec, Quant, load_engine
    from domain.types import MediaFile, MediaKind, Transcript, TranscriptStatus

    vl = load_engine(ModelSpec(str(family_model_dir("qwen2.5-vl")), Quant.NONE, demo=True), lambda *_: None)
    small = CountingEngine(vl, context=120)
    manager = manager_for(small, repository)
    # Sent before this model was chosen (no transcriber now): stored with a transcript.
    message = repository.add_user_message(None, "Listen", [], new_title="voice")
    first = list(manager.send(message.conversation_id, "x " * 10, [], threading.Event()))
    with_audio = repository.add_user_message(
        first[0].conversation.id, "and this", [MediaFile(speech_wav, "q.wav", MediaKind.AUDIO, "audio/wav")]
    )
    long = "what colour is the car in the picture, tell me please " * 4
    transcripts.save(with_audio.attachments[0].sha256, Transcript(TranscriptStatus.DONE, text=long, language="en", seconds=2.4, model="m"))
    events = list(manager.send(first[0].conversation.id, "And?", [], threading.Event()))
    assert events[-1].message.status is Status.COMPLETE
    left_out = english(events[-1].message.details.left_out)
    assert left_out[0] == "the audio “q.wav”"  # not "(as its transcript)": that was all this model heard of it
    assert long not in texts(small.inputs[-1])


def test_a_video_too_long_for_the_context_gets_fewer_frames(family_model_dir, repository, speech_video):
    """On a family whose processor times each video by its own rate (Qwen2.5-VL), fewer frames are fine. (Its tiny
    frames cost less than the note that would replace them: leaving a video out is shown on Omni, below.)"""
    from assistant.loader import ModelSpec, Quant, load_engine

    vl = load_engine(ModelSpec(str(family_model_dir("qwen2.5-vl")), Quant.NONE, demo=True), lambda *_: None)
    whole = CountingEngine(vl, context=4096)
    send(manager_for(whole, repository), None, "What happens?", [(speech_video, "clip.mp4")])
    full, [clip] = whole.prompt_tokens[-1], whole.inputs[-1].videos
    assert len(clip.frames) == 6  # three seconds at 2 a second

    # Room for four frames (the floor) but not six (a pair of these small frames is 24 tokens): the answer says how
    # many it saw.
    fewer = CountingEngine(vl, context=full - 12 + ANSWER)
    events = send(manager_for(fewer, repository), None, "What happens?", [(speech_video, "clip.mp4")])
    answer = events[-1].message
    assert answer.status is Status.COMPLETE
    assert english(answer.details.left_out) == ("most frames of the video “clip.mp4” (it saw 4)",)
    [seen] = fewer.inputs[-1].videos
    assert len(seen.frames) == 4 and seen.audio is not None and abs(seen.fps - 4 / 3) < 1e-6
    shown = render.chat_message(repository.get_messages(events[0].conversation.id)[-1])["content"]
    assert "it did not see: most frames of the video “clip.mp4” (it saw 4)" in shown


def test_on_omni_a_video_too_long_for_the_context_keeps_its_frames_in_smaller_ones(engine, repository, tmp_path, speech_wav):
    """Qwen2.5-Omni times every frame at 2 a second and pairs its sound by that: the budget shrinks the frames, never
    drops any, and says so. Frames of 640×480 (above the processor's 128-token floor) so that shrinking saves tokens."""
    from assistant.media import decode_audio
    from tests.media_factory import write_video

    video = write_video(tmp_path / "clip.mp4", seconds=3.0, fps=4, size=(640, 480), audio_codec="aac", sound=decode_audio(speech_wav))
    whole = CountingEngine(engine, context=4096)
    send(manager_for(whole, repository), None, "What happens?", [(video, "clip.mp4")])
    full, [clip] = whole.prompt_tokens[-1], whole.inputs[-1].videos
    assert clip.frames.shape == (6, 480, 640, 3)

    smaller = CountingEngine(engine, context=full - 40 + ANSWER)
    events = send(manager_for(smaller, repository), None, "What happens?", [(video, "clip.mp4")])
    answer = events[-1].message
    assert answer.status is Status.COMPLETE
    [seen] = smaller.inputs[-1].videos
    count, height, width = seen.frames.shape[:3]
    assert count == 6 and height * width <= 640 * 480 // 2 and seen.audio is not None  # all 6, at 2 a second
    said = f"the detail of the video “clip.mp4” (it saw its frames at {width}×{height})"
    assert english(answer.details.left_out) == (said,)
    assert smaller.inputs[-1].video_keys[0].endswith(f"@2fps×6×{width}x{height}")  # another input than the whole one
    shown = render.chat_message(repository.get_messages(events[0].conversation.id)[-1])["content"]
    assert f"it did not see: {said}" in shown
    shown = render.chat_message(repository.get_messages(events[0].conversation.id)[-1], language="zh-CN")["content"]
    assert f"模型没有看到：视频“clip.mp4”的画面细节（只看到了 {width}×{height} 的画面）" in shown

    # No room even at the processor's floor: left out, said once (not also as smaller frames).
    none = CountingEngine(engine, context=120)
    events = send(manager_for(none, repository), None, "What happens?", [(video, "clip.mp4")])
    assert english(events[-1].message.details.left_out) == ("the video “clip.mp4”",)
    assert none.inputs[-1].videos == []


def test_what_was_left_out_is_stored_by_key_said_in_the_readers_language_and_exported_in_english(repository, tmp_path):
    """The page says it in the request's language; the details' JSON (exports, the API) says English; an answer stored
    before these sentences had keys keeps its English words."""
    import io
    import json
    import zipfile

    import gradio as gr
    from starlette.requests import Request

    from domain.i18n import t
    from domain.settings import AnswerDetails, GenerationSettings
    from storage.exchange import export_zip
    from ui.i18n import language_of

    def answered(left_out) -> None:
        question = repository.add_user_message(conversation_id, "Hi", [])
        reply = repository.start_assistant_message(conversation_id, parent_id=question.id)
        details = AnswerDetails(model="demo", quant="none", settings=GenerationSettings(), left_out=left_out)
        repository.finish_message(reply.id, "Hello", Status.COMPLETE, details=details)

    def request(accept_language: str) -> gr.Request:
        headers = [(b"accept-language", accept_language.encode())]
        return gr.Request(request=Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}))

    conversation_id = repository.add_user_message(None, "First", [], new_title="budget").conversation_id
    keyed = (t("budget.audio_as_transcript", name="q.wav"), t("budget.video_frames", name="clip.mp4", seen=4), t("budget.earlier_messages"))
    answered(keyed)
    answered(("the image “old.png”", "earlier messages"))  # as answers were stored before
    new, old = [m for m in repository.get_messages(conversation_id) if m.details is not None]
    assert new.details.left_out == keyed  # read back as the sentences they were, not as words

    def shown(message, accept_language: str) -> str:
        return render.chat_messages([message], language=language_of(request(accept_language)))[0]["content"]

    assert (
        "✂ 超出模型的上下文长度，模型没有看到：音频“q.wav”（只看到了它的文字稿）；视频“clip.mp4”的大部分画面（只看到了 4 帧）；较早的消息"
        in shown(new, "zh-CN,zh;q=0.9")
    )
    english_line = (
        "✂ Too long for the model's context; it did not see: the audio “q.wav” (as its transcript); "
        "most frames of the video “clip.mp4” (it saw 4); earlier messages"
    )
    assert english_line in shown(new, "en-GB")
    assert "模型没有看到：the image “old.png”；earlier messages" in shown(old, "zh-CN")  # old words, as they are

    said = ["the audio “q.wav” (as its transcript)", "most frames of the video “clip.mp4” (it saw 4)", "earlier messages"]
    assert json.loads(new.details.model_dump_json())["left_out"] == said
    out = io.BytesIO()
    export_zip(repository.export_conversations(), out)
    with zipfile.ZipFile(out) as archive:
        [conversation] = json.loads(archive.read("conversations.json"))["conversations"]
    exported = [m["details"]["left_out"] for m in conversation["messages"] if m["details"]]
    assert exported == [said, ["the image “old.png”", "earlier messages"]]
