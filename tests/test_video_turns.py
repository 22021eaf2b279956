"""A video in a conversation: the model gets it (frames and, on Qwen2.5-Omni, its sound in the same item), Whisper
transcribes its sound track (shown, searched, exported, imported), and a model without video gets a note with what
the sound track said. Real tiny models, files made on the spot."""

from __future__ import annotations

import io
import json
import threading
import zipfile

from assistant.demo_whisper import DEMO_WHISPER_OPTIONS
from assistant.engine import TransformersEngine
from assistant.loader import ModelSpec, Quant, load_engine
from assistant.media import MediaLoader
from assistant.transcribe import Transcriber
from domain.types import MediaFile, MediaKind, Status, Transcript, TranscriptStatus
from tests.engine_helpers import GREEDY, make_manager
from tests.media_factory import write_video
from ui import render

WAIT_S = 120


class RecordingEngine(TransformersEngine):
    def __init__(self, inner: TransformersEngine):
        super().__init__(inner.model, inner.processor, inner.info, inner.family, max_new_tokens=8, generation_kwargs=GREEDY)
        self.inputs, self.prepared = [], []

    def prepare(self, model_input):
        prepared = super().prepare(model_input)
        self.inputs.append(model_input)
        self.prepared.append(prepared)
        return prepared


def send(manager, conversation_id, text, uploads=()):
    return list(manager.send(conversation_id, text, list(uploads), threading.Event()))


def texts(model_input) -> str:
    return " ".join(item.get("text", "") for turn in model_input.conversation for item in turn["content"])


def transcriber_for(transcripts, whisper_model) -> Transcriber:
    return Transcriber(
        transcripts, MediaLoader(), lambda progress: whisper_model, "demo Whisper (random weights)", options=DEMO_WHISPER_OPTIONS
    ).start()


def test_omni_answers_a_video_hearing_its_sound_in_the_same_item(engine, repository, speech_video):
    recording = RecordingEngine(engine)
    manager = make_manager(recording, repository)
    events = send(manager, None, "What does the person say?", [(speech_video, "clip.mp4")])
    answer = events[-1].message
    assert answer.status is Status.COMPLETE and answer.text.strip()
    [attachment] = repository.get_messages(events[0].conversation.id)[0].attachments
    assert attachment.kind is MediaKind.VIDEO and attachment.mime == "video/mp4"
    [model_input], [prepared] = recording.inputs, recording.prepared
    [clip] = model_input.videos
    assert model_input.sound_order == [0] and clip.audio is not None
    assert model_input.video_keys == [f"{attachment.sha256}@2fps×6×160x120"]
    # Frames and sound interleaved in one item: <|vision_bos|><|audio_bos|> video and audio tokens <|audio_eos|>...
    tokens = engine.processor.tokenizer.convert_ids_to_tokens(prepared["input_ids"][0].tolist())
    start = tokens.index("<|vision_bos|>")
    assert tokens[start + 1] == "<|audio_bos|>" and "<|AUDIO|>" in tokens[start:] and "<|VIDEO|>" in tokens[start:]
    assert bool(prepared["use_audio_in_video"]) and prepared["input_features"].shape[0] == 1
    # The next turn gets the same clip again, sampled the same way.
    send(manager, events[0].conversation.id, "And then?")
    assert recording.inputs[-1].video_keys == model_input.video_keys


def test_a_videos_sound_track_is_transcribed_shown_searched_exported_and_imported(
    whisper_model, speech_video, engine, repository, transcripts, tmp_path
):
    from assistant.imports import import_archive
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.exchange import export_zip
    from storage.repository import ConversationRepository

    transcriber = transcriber_for(transcripts, whisper_model)
    manager = make_manager(engine, repository, transcriber)
    events = send(manager, None, "watch this", [(speech_video, "clip.mp4")])
    assert transcriber.wait(events[0].message.attachments[0].sha256, WAIT_S)
    [attachment] = repository.get_messages(events[0].conversation.id)[0].attachments
    transcript = attachment.transcript
    assert transcript.status is TranscriptStatus.DONE and transcript.text.strip()
    assert abs(transcript.seconds - 3.0) < 0.15  # the whole sound track
    shown = render.chat_messages(repository.get_messages(events[0].conversation.id))[0]["content"]
    assert any(isinstance(item, str) and item.startswith("🗣 *Transcript*") for item in shown)

    query = transcript.text.strip()[:10].strip()
    assert [hit.message_id for hit in repository.search(query)] == [events[0].message.id]
    buffer = io.BytesIO()
    export_zip(repository.export_conversations(), buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        manifest = json.loads(archive.read("conversations.json"))
        markdown = next(archive.read(n).decode() for n in archive.namelist() if n.startswith("markdown/"))
    assert manifest["conversations"][0]["messages"][0]["attachments"][0]["transcript"]["text"] == transcript.text
    assert "[🎬 clip.mp4]" in markdown and f"> 🗣 {transcript.text}" in markdown

    fresh = ConversationRepository(open_database(sqlite_url(tmp_path / "fresh.sqlite3")), BlobStore(tmp_path / "fresh-files"))
    stored = []
    import_archive(io.BytesIO(buffer.getvalue()), lambda conversations: stored.extend(fresh.import_conversations(conversations)))
    [imported] = fresh.get_messages(stored[0].id)[0].attachments
    assert imported.kind is MediaKind.VIDEO and imported.transcript == transcript


def test_a_video_without_sound_gets_no_transcript_and_no_failure(whisper_model, engine, repository, transcripts, tmp_path):
    quiet = write_video(tmp_path / "quiet.mp4", seconds=2.0)
    transcriber = transcriber_for(transcripts, whisper_model)
    manager = make_manager(engine, repository, transcriber)
    events = send(manager, None, "what moves?", [(quiet, "quiet.mp4")])
    assert events[-1].message.status is Status.COMPLETE
    sha = events[0].message.attachments[0].sha256
    assert not transcriber.is_pending(sha)
    manager.open_messages(events[0].conversation.id)  # opening the chat queues nothing either
    assert not transcriber.is_pending(sha)
    [attachment] = repository.get_messages(events[0].conversation.id)[0].attachments
    assert attachment.transcript is None
    shown = render.chat_messages(repository.get_messages(events[0].conversation.id), notes=render.audio_notes(manager))
    assert not any(isinstance(item, str) and "🗣" in item for item in shown[0]["content"])


def test_a_stored_video_reaches_a_model_without_video_as_a_note_with_its_sound_track(
    family_model_dir, repository, transcripts, speech_video
):
    audio_only = RecordingEngine(load_engine(ModelSpec(str(family_model_dir("qwen2-audio")), Quant.NONE, demo=True), lambda *_: None))
    manager = make_manager(audio_only, repository)
    # Sent while a model with video was loaded: stored, with a transcript of its sound track.
    first = repository.add_user_message(None, "look", [MediaFile(speech_video, "clip.mp4", MediaKind.VIDEO, "video/mp4")])
    heard = "what colour is the car"
    transcripts.save(first.attachments[0].sha256, Transcript(TranscriptStatus.DONE, text=heard, language="en", seconds=3.0, model="m"))
    events = send(manager, first.conversation_id, "What was said?")
    assert events[-1].message.status is Status.COMPLETE
    [model_input] = audio_only.inputs
    assert model_input.videos == []
    note = f"[A video “clip.mp4” is attached here, but Qwen2-Audio cannot watch videos. Its sound track, transcribed: {heard}]"
    assert note in texts(model_input)


def test_a_model_that_watches_but_does_not_hear_gets_the_sound_tracks_transcript(
    family_model_dir, repository, transcripts, speech_video
):
    vl = RecordingEngine(load_engine(ModelSpec(str(family_model_dir("qwen3-vl")), Quant.NONE, demo=True), lambda *_: None))
    manager = make_manager(vl, repository)
    first = repository.add_user_message(None, "look", [MediaFile(speech_video, "clip.mp4", MediaKind.VIDEO, "video/mp4")])
    transcripts.save(first.attachments[0].sha256, Transcript(TranscriptStatus.DONE, text="hello there", language="en", seconds=3.0, model="m"))
    events = send(manager, first.conversation_id, "What was said?")
    assert events[-1].message.status is Status.COMPLETE
    [model_input] = vl.inputs
    assert len(model_input.videos) == 1 and model_input.videos[0].frames.shape[0] == 6
    assert "[The sound track of “clip.mp4”, transcribed: hello there]" in texts(model_input)


def test_with_reuse_on_a_conversation_with_a_video_is_prefilled_whole_and_answered_the_same(
    family_model_dir, repository, speech_video
):
    from assistant.reuse import Reuse
    from tests.engine_helpers import generate_whole

    plain = load_engine(ModelSpec(str(family_model_dir("qwen2.5-vl")), Quant.NONE, demo=True), lambda *_: None, max_new_tokens=8, generation_kwargs=GREEDY)
    reusing = TransformersEngine(
        plain.model, plain.processor, plain.info, plain.family, max_new_tokens=8, generation_kwargs=GREEDY, reuse=Reuse(1.0, None)
    )
    manager = make_manager(reusing, repository)
    events = send(manager, None, "What happens?", [(speech_video, "clip.mp4")])
    answer = events[-1].message
    assert answer.status is Status.COMPLETE and answer.details.cached_tokens == 0
    again = send(manager, events[0].conversation.id, "And then?")[-1].message
    assert again.status is Status.COMPLETE
    from assistant.prompt import build_model_input

    history = repository.get_path(again.id)[:-1]
    expected = generate_whole(plain, build_model_input(history, MediaLoader(), None, plain.family))
    assert again.text == expected


def test_omni_places_each_sound_where_it_is_in_the_prompt(engine, speech_wav, speech_video, tmp_path):
    """Audio, a video with sound, audio again, a silent video taken at another rate: one prompt, in order."""
    from assistant.media import decode_audio, decode_video
    from assistant.prompt import ModelInput
    from tests.engine_helpers import generate_whole

    speech = decode_audio(speech_wav)
    family = engine.family
    quiet = decode_video(
        write_video(tmp_path / "quiet.mp4", seconds=8.0, fps=4, size=(64, 48)), family.video_fps, family.video_max_frames,
        total_pixels=family.video_total_pixels,
    )  # fmt: skip
    talking = decode_video(speech_video, 2.0, 64)
    items = [{"type": "audio"}, {"type": "video"}, {"type": "audio"}, {"type": "video"}, {"type": "text", "text": "Well?"}]
    model_input = ModelInput(
        [{"role": "user", "content": items}], audios=[speech, speech[: len(speech) // 2]], videos=[talking, quiet],
        sound_order=[None, 0, None, 1],
    )  # fmt: skip
    prepared = engine.prepare(model_input)
    lengths = prepared["feature_attention_mask"].sum(-1).tolist()
    expected = [len(speech), 3.0 * 16000, len(speech) // 2, 8.0 * 16000]  # in prompt order; silence for the quiet one
    assert [round(n / 100) for n in lengths] == [round(n / 160 / 100) for n in expected]
    # One fixed rate (2 a second), whatever else the prompt holds, so that each clip is processed once across turns:
    # the talking clip has its 6 frames (3 pairs), the quiet one its 16 (8 s at 2 a second, as it is timed).
    assert prepared["video_grid_thw"][:, 0].tolist() == [3, 8]
    assert generate_whole(engine, model_input).strip()


def test_omni_hears_a_sound_track_longer_than_thirty_seconds_whole(engine, tmp_path):
    from assistant.media import decode_video
    from assistant.prompt import ModelInput

    clip = decode_video(write_video(tmp_path / "long.mp4", seconds=40.0, fps=1, size=(32, 32), audio_codec="aac"), 2.0, 8)
    model_input = ModelInput([{"role": "user", "content": [{"type": "video"}]}], videos=[clip], sound_order=[0])
    prepared = engine.prepare(model_input)
    assert int(prepared["feature_attention_mask"].sum()) == 4000  # 40 s of 10 ms frames, not cut at 30 s


def test_omni_gets_all_of_a_long_clip_at_its_rate_so_frames_and_sound_stay_paired(engine, repository, tmp_path):
    """Past 32 s (64 frames at 2 a second), a clip is not sampled sparser: its processor times every frame at 2 a
    second and pairs the sound track by that. Its frames are scaled to share a pixel budget instead."""
    from assistant.prompt import build_model_input

    path = write_video(tmp_path / "long.mp4", seconds=40.0, fps=2, size=(64, 48), audio_codec="aac")
    message = repository.add_user_message(None, "What happens?", [MediaFile(path, "long.mp4", MediaKind.VIDEO, "video/mp4")])
    model_input = build_model_input(repository.get_messages(message.conversation_id), MediaLoader(), None, engine.family)
    [clip] = model_input.videos
    assert len(clip.frames) == 80 and abs(clip.fps - 2.0) < 1e-6 and abs(len(clip.audio) / 16000 - 40.0) < 0.1
    prepared = engine.prepare(model_input)
    assert prepared["video_grid_thw"][0, 0] == 40  # 40 pairs: 40 s timed at 2 a second, as long as its sound
    assert model_input.video_keys == [f"{message.attachments[0].sha256}@2fps×80×64x48"]
