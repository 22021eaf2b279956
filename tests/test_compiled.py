"""Compiled decode (assistant/compiled.py) on the demo model, fp32 on the CPU: answers token for token those of eager
decoding, over the reuse script (images, audio, an edit), with Stop and streaming; a compiler that fails means
eager answers and a log line; its static cache is paid for out of the KV cache budget. Compiling costs tens of
seconds on this CPU, so one compiled engine serves the module."""

from __future__ import annotations

import logging
import threading

import pytest
import torch

from assistant.compiled import CompiledDecode
from assistant.engine import GenerationThread, TransformersEngine
from assistant.engine_contract import GenerationReport
from assistant.loader import ModelSpec, Quant, load_engine
from assistant.media import decode_audio, load_image
from assistant.prompt import ModelInput
from assistant.reuse import Entry, KVStore, Reuse
from domain.errors import GenerationError
from domain.limits import COMPILED_CACHE_MIN_TOKENS
from tests.engine_helpers import GREEDY, generate_whole, script
from tests.engine_helpers import make_manager as manager_for
from tests.helpers import repository_at


@pytest.fixture(scope="module")
def compiled(demo_model_dir, tmp_path_factory):
    """The demo model loaded as run.py loads it with --compile: compiled while loading, the loading progress says so."""
    messages = []
    reuse = Reuse(1.0, tmp_path_factory.mktemp("encoders"))
    engine = load_engine(
        ModelSpec(str(demo_model_dir), Quant.NONE, demo=True, compile=True),
        lambda message, fraction: messages.append(message),
        max_new_tokens=12,
        generation_kwargs=GREEDY,
        reuse=reuse,
    )
    assert any(str(message).startswith("Compiling the decode step") for message in messages)
    assert engine.compiled.enabled and engine.compiled.compile_seconds > 0, engine.compiled.failure
    return engine


def eager_twin(engine, reuse=None, **kwargs) -> TransformersEngine:
    kwargs = {"max_new_tokens": 12, "generation_kwargs": GREEDY, **kwargs}
    return TransformersEngine(engine.model, engine.processor, engine.info, engine.family, reuse=reuse, **kwargs)


def test_compiled_answers_are_token_for_token_the_eager_ones_across_turns_with_reuse_and_an_edit(compiled, media, tmp_path):
    calls = []
    real = compiled.model.get_compiled_call
    compiled.model.get_compiled_call = lambda config: calls.append(config) or real(config)
    try:
        got = script(manager_for(compiled, repository_at(tmp_path / "compiled")), media)
    finally:
        del compiled.model.get_compiled_call
    expected = script(manager_for(eager_twin(compiled), repository_at(tmp_path / "eager")), media)
    assert got == expected and all(answer.strip() for answer in got)
    assert len(calls) == len(got)  # every answer's decode went through the compiled call
    assert compiled.reuse.prefilled is not None and len(compiled.reuse.kv) == 2  # both conversations' caches kept


def multimodal_input(png_file, speech_wav) -> ModelInput:
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "What?"}]}]
    return ModelInput(conversation, [load_image(png_file)], [decode_audio(speech_wav)])


def test_compiled_streaming_equals_the_whole_answer_and_stop_ends_it_early(compiled, png_file, speech_wav):
    long = eager_twin(compiled, max_new_tokens=200, compile_decode=True)
    model_input = multimodal_input(png_file, speech_wav)
    full = generate_whole(long, model_input)  # eager, no streamer, no thread
    assert len(compiled.processor.tokenizer(full)["input_ids"]) > 50, "precondition: the demo model talks for a while"
    report = GenerationReport()
    chunks = list(long.stream(model_input, threading.Event(), report=report))
    assert len(chunks) > 1 and "".join(chunks) == full
    assert report.tokens_per_s and report.first_token_s is not None
    stop = threading.Event()
    stopped = []
    for chunk in long.stream(model_input, stop):
        stopped.append(chunk)
        if len(stopped) == 3:
            stop.set()
    assert full.startswith("".join(stopped)) and len("".join(stopped)) < len(full) / 3
    assert long.compiled.enabled and long.compiled._caches  # compiled, not eager


def test_a_compiler_that_fails_means_eager_answers_and_a_log_line(demo_model_dir, png_file, speech_wav, caplog):
    def broken(graph, example_inputs):
        raise RuntimeError("no C++ compiler here")

    # A model of its own: a model keeps one compiled call, and another backend would replace the module's.
    engine = eager_twin(load_engine(ModelSpec(str(demo_model_dir), Quant.NONE, demo=True), lambda *_: None))
    engine.compiled = CompiledDecode(engine.model, engine.context_tokens, KVStore(1 << 30), backend=broken)
    with caplog.at_level(logging.WARNING, logger="assistant.compiled"):
        assert engine.warm_up() is False
    assert "compiled decode is off" in caplog.text and "no C++ compiler here" in caplog.text
    assert "RuntimeError" in engine.compiled.failure
    model_input = multimodal_input(png_file, speech_wav)
    assert "".join(engine.stream(model_input, threading.Event())) == generate_whole(engine, model_input)
    # Failing while answering (no warm-up): the answer fails like any broken generation, later ones are eager.
    engine.compiled = CompiledDecode(engine.model, engine.context_tokens, KVStore(1 << 30), backend=broken)
    with pytest.raises(GenerationError):
        "".join(engine.stream(model_input, threading.Event()))
    assert not engine.compiled.enabled and "no C++ compiler here" in engine.compiled.failure
    assert "".join(engine.stream(model_input, threading.Event())) == generate_whole(engine, model_input)


def test_a_context_shorter_than_the_warm_up_lengths_is_warmed_up_as_answers_use_it(compiled):
    short = eager_twin(compiled, reuse=Reuse(1.0, None), compile_decode=True, max_context=1000)
    assert short.warm_up() and sorted(short.compiled._caches) == [1000]


def test_the_static_cache_is_paid_for_out_of_the_kv_cache_budget(compiled, png_file, speech_wav):
    decode = compiled.compiled
    small = decode.nbytes(COMPILED_CACHE_MIN_TOKENS)
    # The warm-up allocated the two shortest, and took them from the conversations' KV budget.
    assert sorted(decode._caches) == [COMPILED_CACHE_MIN_TOKENS, 2 * COMPILED_CACHE_MIN_TOKENS]
    allocated = decode._caches[COMPILED_CACHE_MIN_TOKENS]
    assert sum(t.numel() * t.element_size() for layer in allocated.layers for t in (layer.keys, layer.values)) == small
    assert compiled.reuse.kv.reserved == 3 * small
    # Too small a budget for any static cache: the answer is eager, and the same.
    engine = eager_twin(compiled, compile_decode=True, kv_cache_gb=small / 2 / 2**30)
    model_input = multimodal_input(png_file, speech_wav)
    assert "".join(engine.stream(model_input, threading.Event())) == generate_whole(engine, model_input)
    assert engine.compiled._caches == {}
    assert engine.warm_up() is False and "--kv-cache-gb" in engine.compiled.failure  # and loading says so in the log
    # Reserving evicts kept conversations first, least recently used first, and is refused past the budget.
    store = KVStore(3 * small)
    entry = lambda: Entry(ids=torch.zeros(1), keys=[], cache=_sized(small))  # noqa: E731
    store.put("a", entry())
    store.put("b", entry())
    assert store.reserve(2 * small) and "a" not in store and "b" in store
    assert not store.reserve(2 * small) and store.reserved == 2 * small
    store.release(2 * small)
    assert store.reserve(3 * small) and len(store) == 0


def _sized(nbytes: int):
    class Layer:
        keys = torch.zeros(nbytes // 8, dtype=torch.float32)
        values = torch.zeros(nbytes // 8, dtype=torch.float32)

    class Cache:
        layers = [Layer()]

    return Cache()


def test_the_generation_thread_runs_with_the_cpu_threads_asked():
    seen = []
    before = torch.get_num_threads()
    thread = GenerationThread(cpu_threads=1)
    try:
        thread.submit(lambda: seen.append(torch.get_num_threads())).wait(10)
    finally:  # PyTorch may apply the count process-wide; put it back for the tests that follow
        thread.submit(torch.set_num_threads, before).wait(10)
        torch.set_num_threads(before)
    assert seen == [1]


def test_no_answer_compiles_after_the_warm_up_however_long_its_cache(compiled):
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    # A cache of 8,192 tokens, which no answer has used, by the path the warm-up took (reuse: the app's default).
    long = eager_twin(compiled, reuse=Reuse(1.0, None), max_new_tokens=5000, compile_decode=True)
    stop, chunks = threading.Event(), []
    for chunk in long.stream(ModelInput([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]), stop, reuse_key="c"):
        chunks.append(chunk)
        if len(chunks) == 5:
            stop.set()
    assert sorted(long.compiled._caches) == [4 * COMPILED_CACHE_MIN_TOKENS] and long.compiled.enabled
    assert counters["stats"]["unique_graphs"] == graphs


def test_gemma4_compiled_keeps_every_token_of_its_sliding_and_shared_layers_and_answers_as_eager(family_model_dir, media, tmp_path):
    """Gemma 4's sliding-window layers get full static layers (the mask applies the window), its KV-sharing layers
    none; the kept cache is what eager reuse keeps."""
    base = load_engine(ModelSpec(str(family_model_dir("gemma4")), Quant.NONE, demo=True), lambda *_: None)
    from transformers import DynamicCache

    kinds = [type(layer).__name__ for layer in DynamicCache(config=base.model.config).layers]
    assert "DynamicSlidingWindowLayer" in kinds and "DummyLayer" in kinds, "precondition: both kinds of layer"
    compiled = eager_twin(base, reuse=Reuse(1.0, tmp_path / "encoders"), compile_decode=True)
    assert compiled.warm_up(), compiled.compiled.failure
    static = compiled.compiled._caches[COMPILED_CACHE_MIN_TOKENS]
    assert not any(layer.is_sliding for layer in static.layers if hasattr(layer, "is_sliding"))
    got = script(manager_for(compiled, repository_at(tmp_path / "compiled")), media)
    expected = script(manager_for(eager_twin(base, reuse=Reuse(1.0, None)), repository_at(tmp_path / "eager")), media)
    assert got == expected and compiled.compiled.enabled
    longest = max(len(entry.ids) for entry in compiled.reuse.kv._entries.values())
    assert longest > base.model.config.get_text_config().sliding_window  # the window really cut the attention
    kept = [layer for layer in static.layers if layer.keys is not None]
    allocated = sum(t.numel() * t.element_size() for layer in kept for t in (layer.keys, layer.values))
    assert allocated == compiled.compiled.nbytes(COMPILED_CACHE_MIN_TOKENS)
