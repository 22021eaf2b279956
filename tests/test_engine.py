"""The real engine on the demo checkpoint: multimodal answers, fp32 and bnb 4-bit, streaming, Stop."""

from __future__ import annotations

import threading

import pytest
import torch

from assistant.engine import TransformersEngine
from assistant.families import families
from assistant.loader import ModelSpec, Quant, cannot_fetch, fetch, load_engine, resolve_quant
from assistant.media import decode_audio, load_image
from assistant.prompt import ModelInput
from assistant.streaming import ChunkStreamer, DecodingStreamer
from domain.errors import GenerationError
from tests.engine_helpers import GREEDY, generate_whole


def multimodal_input(png_file, speech_wav) -> ModelInput:
    return ModelInput(
        conversation=[
            {"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "What is this?"}]}
        ],
        images=[load_image(png_file)],
        audios=[decode_audio(speech_wav)],
    )


def test_processor_expands_image_and_audio_placeholders(engine, png_file, speech_wav):
    model_input = multimodal_input(png_file, speech_wav)
    inputs = engine.prepare(model_input)
    processor = engine.processor
    ids = inputs["input_ids"][0]
    grid = inputs["image_grid_thw"][0]
    assert (ids == processor.image_token_id).sum() == grid.prod() // 4  # 2x2 patches merged
    seconds = len(model_input.audios[0]) / 16000
    audio_tokens = int((ids == processor.audio_token_id).sum())
    assert abs(audio_tokens - 25 * seconds) <= 2  # ~25 audio tokens per second of real audio
    assert inputs["input_features"].shape[:2] == (1, 128)
    assert inputs["pixel_values"].shape[0] == grid.prod()


def test_demo_model_answers_image_audio_and_text_in_fp32(engine, png_file, speech_wav):
    assert engine.model.dtype == torch.float32
    answer = generate_whole(engine, multimodal_input(png_file, speech_wav))
    assert answer.strip()


def test_answer_depends_on_the_image(engine, png_file, speech_wav, tmp_path):
    from PIL import Image

    other = tmp_path / "blue.png"
    Image.new("RGB", (96, 64), (10, 10, 240)).save(other)
    red = generate_whole(engine, multimodal_input(png_file, speech_wav))
    blue = generate_whole(engine, multimodal_input(other, speech_wav))
    assert red != blue  # the vision tower really feeds the language model


def test_streamed_text_equals_non_streamed_greedy_text(engine, png_file, speech_wav):
    model_input = multimodal_input(png_file, speech_wav)
    chunks = list(engine.stream(model_input, threading.Event()))
    assert len(chunks) > 1
    assert "".join(chunks) == generate_whole(engine, model_input)


def test_stop_ends_generation_early(engine, png_file, speech_wav):
    long = TransformersEngine(engine.model, engine.processor, engine.info, engine.family, max_new_tokens=200, generation_kwargs=GREEDY)
    model_input = multimodal_input(png_file, speech_wav)
    full = generate_whole(long, model_input)
    assert len(engine.processor.tokenizer(full)["input_ids"]) > 50, "precondition: the demo model talks for a while"
    stop = threading.Event()
    chunks = []
    for chunk in long.stream(model_input, stop):
        chunks.append(chunk)
        if len(chunks) == 3:
            stop.set()
    stopped = "".join(chunks)
    assert full.startswith(stopped)
    assert len(stopped) < len(full) / 3


def test_chunks_never_split_a_utf8_character(engine):
    tokenizer = engine.processor.tokenizer
    text = "Ωmega 漢字 🚀 жук ok"  # characters the demo tokenizer never saw: one token per byte
    ids = tokenizer(text)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    assert any("\ufffd" in piece for piece in pieces), "precondition: some tokens end mid-character"
    streamer = ChunkStreamer(tokenizer, timeout=5)
    streamer.put(torch.tensor([[1, 2]]))  # the prompt, which the streamer skips
    for token in ids:
        streamer.put(torch.tensor([token]))
    streamer.end()
    chunks = list(streamer)
    assert all("\ufffd" not in chunk for chunk in chunks)
    assert "".join(chunks) == text
    assert len(chunks) > 3


def test_the_decoding_streamer_hands_whole_characters_to_on_finalized_text_then_ends_once(engine):
    """The decoding needs no queue: a subclass that only overrides on_finalized_text gets the pieces in order."""
    tokenizer = engine.processor.tokenizer
    text = "Ωmega 漢字 🚀 ok"
    calls: list[tuple[str, bool]] = []

    class Collecting(DecodingStreamer):
        def on_finalized_text(self, piece: str, stream_end: bool = False) -> None:
            calls.append((piece, stream_end))

    streamer = Collecting(tokenizer)
    streamer.put(torch.tensor([[1, 2]]))
    for token in tokenizer(text)["input_ids"]:
        streamer.put(torch.tensor([token]))
    assert streamer.first_token_at is not None and streamer.last_token_at >= streamer.first_token_at
    streamer.end()
    assert calls[-1] == ("", True) and not any(end for _, end in calls[:-1])
    assert "".join(piece for piece, _ in calls) == text
    assert all(piece and "\ufffd" not in piece for piece, _ in calls[:-1])


@pytest.mark.parametrize("family", list(families()))
def test_streamed_text_is_the_whole_decode_and_each_token_decodes_only_a_few(family, family_model_dir):
    """Byte-level BPE (Qwen) and sentencepiece with byte fallback and leading-space stripping (Gemma): the chunks join
    to the whole answer's decode, and a token's decode covers the few ids since the last whole character (a run of
    byte tokens for a character the tokenizer never saw), not the whole answer."""
    from transformers import AutoProcessor

    tokenizer = AutoProcessor.from_pretrained(family_model_dir(family)).tokenizer
    texts = ["Hello world, goodbye world . ?", "Ωmega 漢字 🚀 жук ok 👩‍👩‍👧", "  two spaces\n\nand\tTabs ... (x) [y]",
             "def f(x):\n    return x ** 2  # ü", "l'été , dit-il . « oui » — 😀", "日本語と한국어와 العربية " * 20]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        decoded: list[int] = []
        real_decode = tokenizer.decode
        streamer = ChunkStreamer(tokenizer, timeout=5)
        streamer.put(torch.tensor([[1, 2]]))
        tokenizer.decode = lambda ids_, **kwargs: decoded.append(len(ids_)) or real_decode(ids_, **kwargs)
        try:
            for token in ids:
                streamer.put(torch.tensor([token]))
        finally:
            del tokenizer.decode
        streamer.end()
        assert "".join(streamer) == tokenizer.decode(ids, skip_special_tokens=True)
        assert max(decoded) <= 50, (len(ids), max(decoded))
    assert len(ids) > 500  # the last text, twenty times over


@pytest.mark.parametrize("stop", [("goodbye",), ("odb", "zzz"), ("bye world!",)])
def test_a_stop_string_ends_the_text_before_it_and_is_never_streamed_even_in_part(engine, stop):
    tokenizer = engine.processor.tokenizer
    text = "Hello world, goodbye world"
    streamer = ChunkStreamer(tokenizer, timeout=5, stop_strings=stop)
    streamer.put(torch.tensor([[1, 2]]))
    for token in tokenizer(text)["input_ids"]:
        streamer.put(torch.tensor([token]))
    streamer.end()
    chunks = list(streamer)
    cut = min(text.index(s) for s in stop if s in text) if any(s in text for s in stop) else len(text)
    assert "".join(chunks) == text[:cut]
    assert streamer.hit_stop_string.is_set() == (cut < len(text))
    assert streamer.token_count < len(tokenizer(text)["input_ids"]) or cut == len(text)


def test_the_engine_keeps_the_engine_contract(engine):
    from assistant.engine_contract import Engine
    from domain.settings import GenerationSettings

    assert isinstance(engine, Engine)
    asked = engine.context_tokens // 2 + 1
    assert engine.answer_budget(GenerationSettings(max_new_tokens=asked)) == engine.context_tokens // 2
    engine.forget("a conversation", ["0" * 64])  # nothing kept without reuse: nothing to drop


def test_a_failing_generation_reaches_the_caller(engine, png_file, speech_wav):
    broken = TransformersEngine(
        engine.model, engine.processor, engine.info, engine.family, max_new_tokens=4, generation_kwargs={"num_beams": 0}
    )
    with pytest.raises(GenerationError, match="failed while answering"):
        list(broken.stream(multimodal_input(png_file, speech_wav), threading.Event()))


def test_silent_generation_times_out_instead_of_hanging(engine):
    streamer = ChunkStreamer(engine.processor.tokenizer, timeout=0.2)
    with pytest.raises(GenerationError, match="produced nothing"):
        list(streamer)


def test_4bit_nf4_loads_and_answers_on_cpu(demo_model_dir, png_file, speech_wav):
    import bitsandbytes as bnb

    engine = load_engine(
        ModelSpec(str(demo_model_dir), Quant.NF4, demo=True), lambda *_: None, max_new_tokens=12, generation_kwargs=GREEDY
    )
    model = engine.model
    language = [m for n, m in model.named_modules() if n.startswith("model.language_model") and isinstance(m, torch.nn.Linear)]
    assert language and all(isinstance(m, bnb.nn.Linear4bit) for m in language)
    for tower in ("model.audio_tower", "model.visual", "lm_head"):
        linears = [m for n, m in model.named_modules() if n.startswith(tower) and isinstance(m, torch.nn.Linear)]
        assert linears and not any(isinstance(m, bnb.nn.Linear4bit) for m in linears), tower
    assert model.model.language_model.layers[0].mlp.down_proj.weight.quant_type == "nf4"
    assert engine.info.quant == "4bit"
    model_input = multimodal_input(png_file, speech_wav)
    answer = generate_whole(engine, model_input)
    assert answer.strip()
    assert "".join(engine.stream(model_input, threading.Event())) == answer


def test_auto_quant_is_nf4_on_cuda_and_none_on_cpu():
    assert resolve_quant(Quant.AUTO, cuda=True) is Quant.NF4
    assert resolve_quant(Quant.AUTO, cuda=False) is Quant.NONE
    assert resolve_quant(Quant.INT8, cuda=False) is Quant.INT8


def test_unfetchable_model_says_what_to_do(tmp_path):
    with pytest.raises(type(cannot_fetch("x", "y")), match="--demo.*--model PATH"):
        fetch("no-such-org/no-such-model", lambda *_: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(type(cannot_fetch("x", "y")), match="no config.json"):
        fetch(str(tmp_path / "empty"), lambda *_: None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_loads_4bit_bf16_on_cuda(demo_model_dir, png_file, speech_wav):
    engine = load_engine(  # compiled decode on CUDA: tests/test_gpu.py
        ModelSpec(str(demo_model_dir), Quant.AUTO, demo=True, compile=False), lambda *_: None, max_new_tokens=12, generation_kwargs=GREEDY
    )
    assert engine.info.quant == "4bit"
    assert engine.model.device.type == "cuda"
    assert next(engine.model.model.visual.parameters()).dtype == torch.bfloat16
    model_input = multimodal_input(png_file, speech_wav)
    assert "".join(engine.stream(model_input, threading.Event())) == generate_whole(engine, model_input)


def test_every_answer_is_generated_on_one_long_lived_thread(engine, png_file, speech_wav):
    threads = set()
    handle = engine.model.register_forward_hook(lambda *_: threads.add(threading.current_thread()))
    try:
        plain = TransformersEngine(engine.model, engine.processor, engine.info, engine.family, max_new_tokens=3, generation_kwargs=GREEDY)
        for _ in range(3):
            assert "".join(plain.stream(multimodal_input(png_file, speech_wav), threading.Event()))
    finally:
        handle.remove()
    assert len(threads) == 1 and threading.main_thread() not in threads
