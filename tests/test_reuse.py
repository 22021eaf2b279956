"""Reuse across turns: with each conversation's KV cache and each media item's encoder output kept, greedy answers
are token for token those of a full prefill, over ten turns with images, audio and video, two interleaved conversations,
an edit that forces a crop, eviction, failures and a restart."""

from __future__ import annotations

import copy
import threading

import pytest

from assistant.families import families
from assistant.loader import ModelSpec, Quant, load_engine
from assistant.media import MediaLoader
from assistant.reuse import Reuse
from domain.types import Status
from tests.engine_helpers import GREEDY, TURNS, script, with_reuse
from tests.engine_helpers import make_manager as manager_for
from tests.helpers import repository_at


@pytest.mark.parametrize("quant", [Quant.NONE, Quant.NF4], ids=["fp32", "nf4"])
@pytest.mark.parametrize("family", list(families()))
def test_answers_with_reuse_are_token_for_token_those_of_a_full_prefill(family, quant, family_model_dir, media, speech_video, tmp_path):
    media = {**media, "video": speech_video}
    base = load_engine(ModelSpec(str(family_model_dir(family)), quant, demo=True), lambda *_: None)
    reuse = Reuse(1.0, tmp_path / "encoders")
    reusing = with_reuse(base, reuse)
    assert reusing.reuse is reuse
    expected = script(manager_for(with_reuse(base, None), repository_at(tmp_path / "full")), media)
    got = script(manager_for(reusing, repository_at(tmp_path / "reuse")), media)
    assert got == expected
    assert len(got) == 2 * TURNS + 2 and all(answer.strip() for answer in got)
    # Each media item (two images, a clip for a model that hears, a video for one that watches) went through its
    # encoder once, in both conversations.
    assert reuse.encoders.calls == 2 * base.family.sees() + base.family.hears() + base.family.watches()


def test_follow_ups_prefill_only_what_the_cache_lacks_and_restarts_reuse_encoder_outputs(engine, media, tmp_path):
    folder = tmp_path / "encoders"
    reuse = Reuse(1.0, folder)
    repository = repository_at(tmp_path / "data")
    manager = manager_for(with_reuse(engine, reuse), repository)
    first = list(manager.send(None, "what is this?", [(media["red"], "red.png"), (media["speech"], "q.wav")], threading.Event()))
    prompt_tokens = first[-1].message.details.prompt_tokens
    assert reuse.prefilled == prompt_tokens - 1  # a fresh conversation: everything but the last token
    assert first[-1].message.details.cached_tokens == 0
    conversation_id = first[0].conversation.id
    follow_up = list(manager.send(conversation_id, "and the colour?", [], threading.Event()))[-1].message.details
    assert reuse.prefilled < 0.5 * prompt_tokens  # the image and audio were not prefilled again
    # The answer's details say how much of its prompt the kept cache held: all of it but what was prefilled.
    assert follow_up.cached_tokens == follow_up.prompt_tokens - 1 - reuse.prefilled > prompt_tokens // 2
    assert reuse.encoders.calls == 2

    # A restart: no KV cache, but each encoder output is read from disk, not computed.
    restarted = Reuse(1.0, folder)
    manager = manager_for(with_reuse(engine, restarted), repository)
    events = list(manager.send(conversation_id, "still there?", [], threading.Event()))
    assert events[-1].message.status is Status.COMPLETE
    assert restarted.encoders.calls == 0 and restarted.prefilled > prompt_tokens


def test_deleting_a_conversation_drops_its_cache_and_the_encoder_outputs_of_its_files(engine, media, tmp_path):
    folder = tmp_path / "encoders"
    reuse = Reuse(1.0, folder)
    manager = manager_for(with_reuse(engine, reuse), repository_at(tmp_path / "data"))
    kept = list(manager.send(None, "keep this", [(media["blue"], "blue.png")], threading.Event()))
    events = list(manager.send(None, "hello", [(media["red"], "red.png"), (media["blue"], "blue.png")], threading.Event()))
    conversation_id = events[0].conversation.id
    red, blue = (a.sha256 for a in events[0].message.attachments)
    assert conversation_id in reuse.kv and list(folder.glob(f"*/{red}/*.pt")) and list(folder.glob(f"*/{blue}/*.pt"))
    manager.delete(conversation_id)
    assert conversation_id not in reuse.kv
    assert not list(folder.glob(f"*/{red}")), "the red image's features went with its last conversation"
    assert list(folder.glob(f"*/{blue}/*.pt")), "the blue image is still in another conversation"
    assert kept[-1].message.status is Status.COMPLETE


def test_a_tiny_cache_budget_evicts_and_still_gives_the_same_tokens(engine, media, tmp_path):
    reuse = Reuse(1e-9, None)  # no conversation's cache fits
    got = script(manager_for(with_reuse(engine, reuse), repository_at(tmp_path / "tiny")), media)
    expected = script(manager_for(with_reuse(engine, None), repository_at(tmp_path / "full")), media)
    assert got == expected
    assert len(reuse.kv) == 0


def test_a_failure_during_generation_discards_that_conversations_cache(engine, media, tmp_path):
    reuse = Reuse(1.0, None)
    reusing = with_reuse(engine, reuse)
    repository = repository_at(tmp_path / "data")
    manager = manager_for(reusing, repository)
    first = list(manager.send(None, "hello", [], threading.Event()))
    conversation_id = first[0].conversation.id
    assert conversation_id in reuse.kv
    reusing.generation_kwargs = {"num_beams": 0}  # generate() now raises
    failed = list(manager.send(conversation_id, "again", [], threading.Event()))
    assert failed[-1].message.status is Status.ERROR
    assert conversation_id not in reuse.kv
    reusing.generation_kwargs = GREEDY
    again = list(manager.send(conversation_id, "and now?", [], threading.Event()))
    reference = with_reuse(engine, None)
    assert again[-1].message.status is Status.COMPLETE
    # The same answer a full prefill gives for that history.
    history = repository.get_path(again[-1].message.id)[:-1]
    from assistant.prompt import build_model_input

    model_input = build_model_input(history, MediaLoader(), None, engine.family)
    assert "".join(reference.stream(model_input, threading.Event())) == again[-1].message.text


def test_the_cache_is_cut_before_a_different_image_of_the_same_size_and_never_inside_a_block():
    import torch

    from assistant.reuse import Entry, _blocks, _reusable

    image, audio = 7, 8
    kinds = {image: "image", audio: "audio"}

    def blocks(ids, picture, clip):
        return _blocks(ids, kinds, {"image": [picture], "audio": [clip]})

    cached_ids = torch.tensor([1, 2, image, image, image, 3, audio, audio, 4, 5])
    entry = Entry(ids=cached_ids, keys=[(b[0], b[4]) for b in blocks(cached_ids, "red", "clip#0")], cache=None)
    same = blocks(cached_ids, "red", "clip#0")
    assert _reusable(entry, cached_ids, same, limit=10) == 10
    other_picture = blocks(cached_ids, "blue", "clip#0")
    assert _reusable(entry, cached_ids, other_picture, limit=10) == 2  # ids equal, media not: cut before the image
    other_clip = blocks(cached_ids, "red", "clip2#0")
    assert _reusable(entry, cached_ids, other_clip, limit=10) == 6
    diverging = torch.tensor([1, 2, image, image, image, 3, audio, audio, 9, 9])
    assert _reusable(entry, diverging, blocks(diverging, "red", "clip#0"), limit=10) == 8
    assert _reusable(entry, cached_ids, same, limit=7) == 6  # a limit inside the audio block backs off to its start


def test_a_video_is_one_item_over_its_frames_and_its_sound_track():
    """A video's frames between timestamps are one item's blocks, so are its frames' and its sound's tokens
    interleaved; its encoder output gives its frames' rows first, then its sound's."""
    import torch

    from assistant.reuse import _blocks

    video, audio = 5, 8
    kinds = {video: "video", audio: "audio"}
    keys = {"video": ["a", "b"], "audio": ["clip#0"]}
    # Two frames of 2 tokens between timestamps (one video), then a clip, then a video with its sound interleaved.
    ids = torch.tensor([1, video, video, 2, 3, video, video, 4, audio, audio, 4, video, audio, audio, video, audio, 6])
    found = _blocks(ids, kinds, keys, {"video": [4, 5], "audio": [2]})
    assert [(start, end, kind, index, row) for start, end, kind, index, _, row in found] == [
        (1, 3, "video", 0, 0), (5, 7, "video", 0, 2),
        (8, 10, "audio", 0, 0),
        (11, 12, "video", 1, 0), (12, 14, "video", 1, 2), (14, 15, "video", 1, 1), (15, 16, "video", 1, 4),
    ]
    assert found[0][4] == "video:a" and found[-1][4] == "video:b" and found[2][4] == "audio:clip#0"


def test_earlier_media_are_not_processed_again_and_the_prompt_is_the_same(engine, media):
    import torch

    from assistant.media import decode_audio, load_image
    from assistant.prompt import ModelInput

    reusing, full = with_reuse(engine, Reuse(1.0, None)), with_reuse(engine, None)
    red, blue, clip = load_image(media["red"]), load_image(media["blue"]), decode_audio(media["speech"])
    question = {"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "what?"}]}
    first = ModelInput([question], [red], [clip], image_keys=["red"], audio_keys=["clip#0"])
    assert reusing.prepare(first)["new_images"] == [0] and reusing.prepare(first)["new_audios"] == [0]
    answer = "".join(reusing.stream(first, threading.Event(), reuse_key="c"))
    follow_up = ModelInput(
        [question, {"role": "assistant", "content": [{"type": "text", "text": answer}]},
         {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "and this?"}]}],
        [red, blue], [clip], image_keys=["red", "blue"], audio_keys=["clip#0"],
    )
    incremental, whole = reusing.prepare(follow_up), full.prepare(follow_up)
    assert incremental["new_images"] == [1] and incremental["new_audios"] == []  # only the blue image is processed
    assert incremental["pixel_values"].shape[0] == whole["image_grid_thw"][1].prod()
    assert torch.equal(incremental["input_ids"], whole["input_ids"])
    assert torch.equal(incremental["image_grid_thw"], whole["image_grid_thw"])
    assert "".join(reusing.stream(follow_up, threading.Event(), reuse_key="c")) == "".join(full.stream(follow_up, threading.Event()))


def test_qwen2_audio_follow_ups_process_and_prefill_only_what_is_new(family_model_dir, media, tmp_path):
    """Qwen2-Audio (1-D positions, audio merged inside its forward): the earlier clip is neither processed nor
    prefilled again, the prompt is the one the full processor makes, and the answer is the full prefill's."""
    import torch

    from assistant.media import decode_audio
    from assistant.prompt import ModelInput
    from tests.media_factory import write_tone

    base = load_engine(ModelSpec(str(family_model_dir("qwen2-audio")), Quant.NONE, demo=True), lambda *_: None)
    reuse = Reuse(1.0, tmp_path / "encoders")
    reusing, full = with_reuse(base, reuse), with_reuse(base, None)
    speech, tone = decode_audio(media["speech"]), decode_audio(write_tone(tmp_path / "tone.wav", 2.0))
    question = {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "what?"}]}
    first = ModelInput([question], [], [speech], audio_keys=["speech#0"])
    answer = "".join(reusing.stream(first, threading.Event(), reuse_key="c"))
    follow_up = ModelInput(
        [question, {"role": "assistant", "content": [{"type": "text", "text": answer}]},
         {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "and this?"}]}],
        [], [speech, tone], audio_keys=["speech#0", "tone#0"],
    )
    incremental, whole = reusing.prepare(follow_up), full.prepare(follow_up)
    assert incremental["new_audios"] == [1] and incremental["input_features"].shape[0] == 1
    assert torch.equal(incremental["input_ids"], whole["input_ids"])
    assert "".join(reusing.stream(follow_up, threading.Event(), reuse_key="c")) == "".join(full.stream(follow_up, threading.Event()))
    assert reuse.prefilled < whole["input_ids"].shape[1] - full.prepare(first)["input_ids"].shape[1]  # not the first turn again
    assert reuse.encoders.calls == 2


def test_gemma4_follow_ups_process_only_new_media_and_cut_the_cache_past_its_sliding_window(family_model_dir, media, tmp_path):
    """Gemma 4: earlier media keep their begin/end tokens without being processed again, so the prompt is the full
    processor's; its sliding-window layers keep every token, so a regenerated answer can cut the cache back past the
    window (512 tokens) and still answer as a full prefill does."""
    import torch

    from assistant.media import decode_audio, load_image
    from assistant.prompt import ModelInput

    base = load_engine(ModelSpec(str(family_model_dir("gemma4")), Quant.NONE, demo=True), lambda *_: None)
    reuse = Reuse(1.0, None)
    reusing, full = with_reuse(base, reuse), with_reuse(base, None)
    red, blue, clip = load_image(media["red"]), load_image(media["blue"]), decode_audio(media["speech"])
    question = {"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "what?"}]}
    first = ModelInput([question], [red], [clip], image_keys=["red"], audio_keys=["clip#0"])
    answer = "".join(reusing.stream(first, threading.Event(), reuse_key="c"))

    def follow_up(reply: str) -> ModelInput:
        return ModelInput(
            [question, {"role": "assistant", "content": [{"type": "text", "text": reply}]},
             {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "and this?"}]}],
            [red, blue], [clip], image_keys=["red", "blue"], audio_keys=["clip#0"],
        )

    incremental, whole = reusing.prepare(follow_up(answer)), full.prepare(follow_up(answer))
    assert incremental["new_images"] == [1] and incremental["new_audios"] == []  # only the blue image is processed
    assert incremental["pixel_values"].shape[0] == 1 and "input_features" not in incremental
    assert torch.equal(incremental["input_ids"], whole["input_ids"])
    assert whole["input_ids"].shape[1] > base.model.config.get_text_config().sliding_window
    assert "".join(reusing.stream(follow_up(answer), threading.Event(), reuse_key="c")) == "".join(
        full.stream(follow_up(answer), threading.Event())
    )
    # Another first answer: the cache is cut back to before it, well inside the window already passed.
    other = follow_up("something else entirely")
    assert "".join(reusing.stream(other, threading.Event(), reuse_key="c")) == "".join(full.stream(other, threading.Event()))
    # Only the other answer and what follows it were prefilled, not the first question again.
    assert 0 < reuse.prefilled < full.prepare(other)["input_ids"].shape[1] - full.prepare(first)["input_ids"].shape[1]
    assert reuse.encoders.calls == 3  # red, the clip, blue: once each


@pytest.mark.parametrize("quant", [Quant.NONE, Quant.NF4], ids=["fp32", "nf4"])
def test_a_gemma4_whose_image_tokens_see_each_other_both_ways_reuses_too(quant, family_model_dir, media, tmp_path):
    """Gemma 4 configs may set `use_bidirectional_attention="vision"`: in sliding layers an image's tokens attend to
    each other both ways, a mask built from each block's place in the whole prompt. Reuse gives the full prefill's
    answers then too; "all" (every token both ways) keeps no cache."""
    base = load_engine(ModelSpec(str(family_model_dir("gemma4")), quant, demo=True), lambda *_: None)
    text_config = base.model.config.get_text_config()
    try:
        text_config.use_bidirectional_attention = "vision"
        reuse = Reuse(1.0, None)
        expected = script(manager_for(with_reuse(base, None), repository_at(tmp_path / "full")), media)
        assert script(manager_for(with_reuse(base, reuse), repository_at(tmp_path / "reuse")), media) == expected
        assert reuse.encoders.calls == 3
        text_config.use_bidirectional_attention = "all"
        assert with_reuse(base, Reuse(1.0, None)).reuse is None
    finally:
        text_config.use_bidirectional_attention = None


WATCHING = [name for name, family in families().items() if family.watches()]


@pytest.mark.parametrize("quant", [Quant.NONE, Quant.NF4], ids=["fp32", "nf4"])
@pytest.mark.parametrize("name", WATCHING)
def test_video_follow_ups_encode_each_clip_once_even_after_a_restart(name, quant, family_model_dir, speech_video, speech_wav, tmp_path):
    """A video, then (for a model that hears) a clip, then another video: each turn's answer with reuse is the full
    prefill's, earlier videos are neither processed nor encoded again, and after a restart their encoder outputs
    come from disk. Qwen2.5-Omni hears each video's sound track in the same item, so its sounds interleave."""
    import torch

    from assistant.media import decode_audio, decode_video
    from assistant.prompt import ModelInput
    from tests.media_factory import write_video

    base = load_engine(ModelSpec(str(family_model_dir(name)), quant, demo=True), lambda *_: None)
    family = base.family
    folder = tmp_path / "encoders"
    reuse = Reuse(1.0, folder)
    reusing, full = with_reuse(base, reuse), with_reuse(base, None)
    other = write_video(tmp_path / "other.webm", seconds=2.0, fps=8, size=(96, 64), fmt="webm", codec="libvpx-vp9", audio_codec="libopus")
    clips = [
        decode_video(path, family.video_fps, family.video_max_frames, total_pixels=family.video_total_pixels) for path in (speech_video, other)
    ]
    model_input = ModelInput([])
    turns = [[("video", 0)], [("audio", 0)] if family.hears() else [], [("video", 1)], []]
    answer = None
    for turn, items in enumerate(turns):
        if answer is not None:
            model_input.conversation.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        for kind, index in items:
            if kind == "video":
                model_input.videos.append(clips[index])
                model_input.video_keys.append(f"clip{index}@2fps")
                model_input.sound_order.append(len(model_input.videos) - 1)
            else:
                model_input.audios.append(decode_audio(speech_wav))
                model_input.audio_keys.append("speech#0")
                model_input.sound_order.append(None)
        content = [{"type": kind} for kind, _ in items] + [{"type": "text", "text": f"turn {turn}: and then?"}]
        model_input.conversation.append({"role": "user", "content": content})
        model_input = copy.deepcopy(model_input)  # a new input each turn, as the dialogue makes them
        incremental, whole = reusing.prepare(model_input), full.prepare(model_input)
        assert torch.equal(incremental["input_ids"], whole["input_ids"])
        if turn == 2:  # only the new video is processed
            assert incremental["new_videos"] == [1]
            assert 0 < incremental["pixel_values_videos"].shape[0] < whole["pixel_values_videos"].shape[0]
        answer = "".join(reusing.stream(model_input, threading.Event(), reuse_key="c"))
        assert answer == "".join(full.stream(model_input, threading.Event()))
        if turn > 0:
            assert reuse.prefilled < whole["input_ids"].shape[1] // 2  # the earlier videos were not prefilled again
    assert reuse.encoders.calls == 2 + family.hears()

    # A restart: no KV cache and nothing processed yet, but each encoder output is read from disk.
    restarted = Reuse(1.0, folder)
    again = with_reuse(base, restarted)
    assert "".join(again.stream(model_input, threading.Event(), reuse_key="c")) == answer
    assert restarted.encoders.calls == 0 and restarted.prefilled == whole["input_ids"].shape[1] - 1
