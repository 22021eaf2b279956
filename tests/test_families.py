"""Every model family through the same loader and engine: tiny real checkpoints, fp32 and nf4, each input it
accepts; and the cascade: a model without an audio tower hears the Whisper transcript, one without vision refuses images."""

from __future__ import annotations

import threading

import pytest
import torch

from assistant.dialogue import DialogueManager, WaitingForTranscript
from assistant.engine import TransformersEngine
from assistant.families import families, family_of_checkpoint
from assistant.loader import ModelSpec, Quant, load_engine
from assistant.media import MediaLoader, decode_audio, decode_video, load_image
from assistant.model_host import ModelHost
from assistant.prompt import ModelInput
from assistant.video import frame_count
from assistant.demo_whisper import DEMO_WHISPER_OPTIONS
from assistant.transcribe import Transcriber
from assistant.turn_queue import TurnQueue
from domain.errors import InvalidInput, ModelLoadError
from domain.types import MediaKind, Status, TranscriptStatus
from tests.engine_helpers import GREEDY, generate_whole
from tests.engine_helpers import make_manager as manager_for
from tests.helpers import ROOT
from ui import render

NAMES = list(families())


def load(model_dir, quant=Quant.NONE, max_new_tokens=8) -> TransformersEngine:
    return load_engine(
        ModelSpec(str(model_dir), quant, demo=True), lambda *_: None, max_new_tokens=max_new_tokens, generation_kwargs=GREEDY
    )


def media_items(family, png_file, speech_wav, speech_video=None) -> tuple[list[dict], ModelInput]:
    """(content items, a model input with their media) for every kind the family accepts: audio, then a video."""
    content, media = [], ModelInput([])
    if family.sees():
        content.append({"type": "image"})
        media.images.append(load_image(png_file))
    if family.hears():
        content.append({"type": "audio"})
        media.audios.append(decode_audio(speech_wav))
        media.sound_order.append(None)
    if family.watches() and speech_video is not None:
        content.append({"type": "video"})
        media.videos.append(decode_video(speech_video, family.video_fps, family.video_max_frames, total_pixels=family.video_total_pixels))
        media.sound_order.append(0)
    return content, media


def with_media(conversation: list[dict], media: ModelInput) -> ModelInput:
    return ModelInput(conversation, media.images, media.audios, media.videos, sound_order=media.sound_order)


def test_every_family_is_listed_with_what_people_need_to_choose():
    """Each registered family (none named by hand here) is in the README by its title and its --demo name."""
    readme = (ROOT / "README.md").read_text()
    assert len(NAMES) >= 5
    for family in families().values():
        assert family.title in readme and family.name in readme, family.name
        assert family.accepts and family.unquantized and "lm_head" in family.unquantized
        assert family.context_tokens >= 8192 and family.audio_window_s == 30.0


@pytest.mark.parametrize("quant", [Quant.NONE, Quant.NF4], ids=["fp32", "nf4"])
@pytest.mark.parametrize("name", NAMES)
def test_each_family_answers_text_and_each_input_it_accepts(name, quant, family_model_dir, png_file, speech_wav, speech_video):
    model_dir = family_model_dir(name)
    assert family_of_checkpoint(model_dir).name == name
    engine = load(model_dir, quant)
    assert engine.family.name == name
    if quant is Quant.NF4:
        import bitsandbytes as bnb

        named = [(n, m) for n, m in engine.model.named_modules() if isinstance(m, torch.nn.Linear)]
        assert any(isinstance(m, bnb.nn.Linear4bit) for _, m in named), "the language model is quantized"
        for prefix in engine.family.unquantized:
            kept = [m for n, m in named if n == prefix or n.startswith(prefix + ".")]
            assert kept and not any(isinstance(m, bnb.nn.Linear4bit) for m in kept), prefix

    content, media = media_items(engine.family, png_file, speech_wav, speech_video)
    question = {"role": "user", "content": [*content, {"type": "text", "text": "What is in this?"}]}
    first = with_media([question], media)
    text_only = ModelInput([{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}])
    for model_input in (text_only, first):
        whole = generate_whole(engine, model_input)
        assert whole.strip()
        assert "".join(engine.stream(model_input, threading.Event())) == whole  # streamed = non-streamed greedy

    # Turn two: the first turn's media are model inputs again, before the follow-up.
    answer = generate_whole(engine, first)
    follow_up = with_media(
        [question, {"role": "assistant", "content": [{"type": "text", "text": answer}]},
         {"role": "user", "content": [{"type": "text", "text": "And the first one?"}]}],
        media,
    )
    again, before = engine.prepare(follow_up), engine.prepare(first)
    for key, value in before.items():
        if value.is_floating_point():  # pixel values, audio features: the same media, fed again
            assert torch.equal(again[key], value), key
    assert any(v.is_floating_point() for v in before.values())
    if engine.family.watches():  # the clip's frames, as many as its rate takes of 3 seconds, reach the vision tower
        assert before["pixel_values_videos"].shape[0] > 0
        assert len(media.videos[0].frames) == frame_count(3.0, engine.family.video_fps, engine.family.video_max_frames)
        if "video_grid_thw" in before:  # the Qwen towers take frames in pairs
            assert before["video_grid_thw"][0, 0] == len(media.videos[0].frames) // 2
    assert "".join(engine.stream(follow_up, threading.Event())) == generate_whole(engine, follow_up)


@pytest.mark.parametrize("name", NAMES)
def test_demo_checkpoints_are_built_deterministically(name, tmp_path):
    import hashlib

    def digest(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}

    family = families()[name]
    first, second = tmp_path / f"{name}-1", tmp_path / f"{name}-2"
    first.mkdir(), second.mkdir()
    family.build_demo(first)
    family.build_demo(second)
    assert digest(first) == digest(second), name
    assert "model.safetensors" in digest(first)


def test_an_unknown_checkpoint_names_the_supported_families(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ModelLoadError, match=r"“llama” model.*Qwen2.5-Omni \(qwen2.5-omni\).*Qwen2-Audio \(qwen2-audio\)"):
        family_of_checkpoint(tmp_path)


# --- the cascade --------------------------------------------------------------------------------------------


class RecordingEngine(TransformersEngine):
    def __init__(self, inner: TransformersEngine):
        super().__init__(inner.model, inner.processor, inner.info, inner.family, max_new_tokens=8, generation_kwargs=GREEDY)
        self.inputs: list[ModelInput] = []

    def prepare(self, model_input):
        self.inputs.append(model_input)
        return super().prepare(model_input)


def test_a_model_without_an_audio_tower_hears_the_transcript_and_the_page_says_so(
    family_model_dir, repository, transcripts, whisper_model, speech_wav
):
    engine = RecordingEngine(load(family_model_dir("qwen2.5-vl")))
    gate = threading.Event()

    def load_whisper(progress):
        gate.wait(60)
        return whisper_model

    transcriber = Transcriber(transcripts, MediaLoader(), load_whisper, "demo Whisper (random weights)", options=DEMO_WHISPER_OPTIONS).start()
    manager = manager_for(engine, repository, transcriber)
    stop = threading.Event()
    events = manager.send(None, "What did I ask?", [(speech_wav, "question.wav")], stop)
    saved = next(events)
    waiting = next(events)
    assert isinstance(waiting, WaitingForTranscript)  # this answer needs the transcript, so it waits for it
    gate.set()
    finished = list(events)[-1]
    assert finished.message.status is Status.COMPLETE

    [attachment] = repository.get_messages(saved.conversation.id)[0].attachments
    transcript = attachment.transcript
    assert transcript.status is TranscriptStatus.DONE
    [model_input] = engine.inputs
    assert model_input.audios == []
    texts = [item["text"] for item in model_input.conversation[-1]["content"] if item["type"] == "text"]
    assert f"[Audio “question.wav”, transcribed: {transcript.text}]" in texts
    chat = render.chat_messages(repository.get_messages(saved.conversation.id), notes=render.audio_notes(manager))
    assert any(isinstance(item, str) and "Heard as transcript" in item for item in chat[0]["content"])


def test_a_model_without_vision_refuses_images_before_saving_anything(family_model_dir, repository, png_file, speech_wav, tmp_path):
    engine = load(family_model_dir("qwen2-audio"))
    manager = manager_for(engine, repository)
    assert manager.accepts() == {MediaKind.AUDIO}
    conversation_id = list(manager.send(None, "hello", [], threading.Event()))[0].conversation.id
    before = repository.get_messages(conversation_id)
    with pytest.raises(InvalidInput, match=r"“car.png” is an image, which Qwen2-Audio cannot see; it takes text and audios"):
        list(manager.send(conversation_id, "what is this?", [(speech_wav, "q.wav"), (png_file, "car.png")], threading.Event()))
    assert repository.get_messages(conversation_id) == before
    assert not any(p.is_file() for p in (tmp_path / "files").rglob("*") if p.suffix == ".wav")


def test_with_transcripts_off_a_model_that_cannot_hear_refuses_audio(family_model_dir, repository, speech_wav):
    manager = manager_for(load(family_model_dir("qwen3-vl")), repository, transcriber=None)
    assert manager.accepts() == {MediaKind.IMAGE, MediaKind.VIDEO}
    with pytest.raises(InvalidInput, match=r"“q.wav” is audio, which Qwen3-VL cannot hear, and audio transcripts are off"):
        list(manager.send(None, "listen", [(speech_wav, "q.wav")], threading.Event()))
    assert repository.list_conversations() == []


@pytest.mark.parametrize(
    "name, transcripts_on, file_types, microphone",
    [
        ("qwen2-audio", True, ["audio"], True),
        ("qwen2.5-vl", True, ["image", "audio", "video"], True),
        ("qwen3-vl", False, ["image", "video"], False),
    ],
)
def test_the_composer_offers_only_what_the_model_takes(name, transcripts_on, file_types, microphone, family_model_dir, repository, transcripts):
    from ui.app import build_app

    host = ModelHost(lambda progress: load(family_model_dir(name))).start()
    assert host.wait(30)
    transcriber = Transcriber(transcripts, MediaLoader(), lambda progress: None, "unused") if transcripts_on else None
    dialogue = DialogueManager(repository, host, MediaLoader(), TurnQueue(), transcriber=transcriber)
    config = build_app(dialogue, host, demo=True).get_config_file()
    [composer] = [c["props"] for c in config["components"] if c.get("props", {}).get("elem_id") == "composer"]
    assert composer["file_types"] == file_types
    assert ("microphone" in composer["sources"]) is microphone


def test_a_model_without_video_refuses_videos_before_saving_anything(family_model_dir, repository, speech_video, tmp_path):
    engine = load(family_model_dir("qwen2-audio"))
    manager = manager_for(engine, repository)
    conversation_id = list(manager.send(None, "hello", [], threading.Event()))[0].conversation.id
    before = repository.get_messages(conversation_id)
    with pytest.raises(InvalidInput, match=r"“clip.mp4” is a video, which Qwen2-Audio cannot watch; it takes text and audios"):
        list(manager.send(conversation_id, "what happens?", [(speech_video, "clip.mp4")], threading.Event()))
    assert repository.get_messages(conversation_id) == before
    assert not any(p.is_file() for p in (tmp_path / "files").rglob("*") if p.suffix == ".mp4")
