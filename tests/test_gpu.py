"""Reuse across turns on a CUDA GPU: the path the product takes there (bf16 weights or nf4 with bf16 compute,
device_map="auto", encoder outputs moved between the GPU and the CPU cache). Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from assistant.loader import ModelSpec, Quant, load_engine
from assistant.reuse import Reuse
from tests.engine_helpers import TURNS, make_manager, script, with_reuse
from tests.helpers import repository_at

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture
def exact_cuda():
    """fp32 without TF32 (the vision tower's patch embedding is a convolution, which cuDNN runs in TF32 by default)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("family", ["qwen2.5-omni", "qwen2.5-vl"])
def test_reuse_on_cuda_in_fp32_is_token_for_token_a_full_prefill(family, family_model_dir, media, tmp_path, exact_cuda):
    base = load_engine(ModelSpec(str(family_model_dir(family)), Quant.NONE, demo=True, compile=False), lambda *_: None)
    assert base.model.device.type == "cuda"
    base.model.float()
    base = with_reuse(base, None)
    assert base.float_dtype == torch.float32
    reuse = Reuse(1.0, tmp_path / "encoders")
    expected = script(make_manager(with_reuse(base, None), repository_at(tmp_path / "full")), media)
    got = script(make_manager(with_reuse(base, reuse), repository_at(tmp_path / "reuse")), media)
    assert got == expected
    assert reuse.encoders.calls == 2 * base.family.sees() + base.family.hears()


# At least half of the scripted answers must be identical with and without reuse. bf16 compute sums a chunked prefill
# in another order than a whole one, so a near-tie can flip a greedy token and change that answer (and perhaps a few
# after it in its conversation): identity is not promised. But that noise changes few answers, while a reuse that
# computes something else changes nearly all: the CPU run of this script in bf16 with nf4 (the CUDA dtypes) gave
# 21/22 identical with and without reuse, and 1/22 between nf4-bf16 and fp32, i.e. a slightly different model.
# Half sits well between the two. bench/multiturn.py measures agreement on the 3B and 7B shapes.
MIN_IDENTICAL_NF4 = TURNS + 1  # half of the script's 2 * TURNS + 2 answers


def test_reuse_on_cuda_in_nf4_answers_like_a_full_prefill_and_encodes_each_item_once(family_model_dir, media, tmp_path):
    base = load_engine(ModelSpec(str(family_model_dir("qwen2.5-omni")), Quant.AUTO, demo=True, compile=False), lambda *_: None)
    assert base.info.quant == "4bit" and base.model.device.type == "cuda"
    reuse = Reuse(1.0, tmp_path / "encoders")
    expected = script(make_manager(with_reuse(base, None), repository_at(tmp_path / "full")), media)
    got = script(make_manager(with_reuse(base, reuse), repository_at(tmp_path / "reuse")), media)
    assert len(got) == 2 * TURNS + 2 and all(answer.strip() for answer in got)
    assert reuse.encoders.calls == 3
    same = sum(a == b for a, b in zip(got, expected))
    print(f"nf4 on CUDA: {same}/{len(got)} answers identical with and without reuse")
    assert same >= MIN_IDENTICAL_NF4, f"only {same}/{len(got)} answers identical with and without reuse"


def test_compiled_decode_on_cuda_in_fp32_is_token_for_token_eager(family_model_dir, media, tmp_path, exact_cuda):
    """CUDA graphs (mode="reduce-overhead") over the static cache, reuse across turns and an edit included."""
    base = load_engine(ModelSpec(str(family_model_dir("qwen2.5-omni")), Quant.NONE, demo=True, compile=False), lambda *_: None)
    base.model.float()
    base = with_reuse(base, None)
    compiled = with_reuse(base, Reuse(1.0, tmp_path / "encoders"), compile_decode=True)
    fast = FastPath()
    assert compiled.warm_up(), compiled.compiled.failure
    fast.warmed_up()
    print(f"compiled the demo's decode step on CUDA in {compiled.compiled.compile_seconds:.1f}s")
    expected = script(make_manager(with_reuse(base, None), repository_at(tmp_path / "eager")), media)
    got = script(make_manager(compiled, repository_at(tmp_path / "compiled")), media)
    assert got == expected and compiled.compiled.enabled
    fast.check(graph_breaks_allowed=False)


def test_compiled_decode_on_cuda_in_nf4_is_what_run_py_loads_and_answers_like_eager(family_model_dir, media, tmp_path):
    messages = []
    fast = FastPath()
    base = load_engine(
        ModelSpec(str(family_model_dir("qwen2.5-omni")), Quant.AUTO, demo=True), lambda message, _: messages.append(message)
    )
    assert base.info.quant == "4bit" and base.compiled is not None and base.compiled.enabled, base.compiled
    assert any(message.startswith("Compiling the decode step") for message in messages)
    compiled = with_reuse(base, Reuse(1.0, tmp_path / "encoders"), compile_decode=True)
    assert compiled.warm_up(), compiled.compiled.failure
    fast.warmed_up()
    expected = script(make_manager(with_reuse(base, None), repository_at(tmp_path / "eager")), media)
    got = script(make_manager(compiled, repository_at(tmp_path / "compiled")), media)
    same = sum(a == b for a, b in zip(got, expected))
    print(f"nf4 on CUDA: {same}/{len(got)} answers identical compiled and eager")
    assert compiled.compiled.enabled and same >= MIN_IDENTICAL_NF4
    fast.check(graph_breaks_allowed=True)  # bitsandbytes' ops may break the graph


class FastPath:
    """Answers alike prove little: an eager fallback gives them too. Counts, from before the warm-up, what would make
    the compiled step slow again: a compilation while answering, a skipped CUDA graph (a CPU tensor, an op CUDA graphs
    cannot capture), a graph break."""

    def __init__(self):
        self.breaks, self.skips = sum(counters["graph_break"].values()), counters["inductor"]["cudagraph_skips"]
        self.graphs = None

    def warmed_up(self) -> None:
        self.graphs = counters["stats"]["unique_graphs"]

    def check(self, graph_breaks_allowed: bool) -> None:
        print(f"graph breaks: {dict(counters['graph_break'])}; inductor: {dict(counters['inductor'])}")
        assert counters["stats"]["unique_graphs"] == self.graphs, "compiled while answering"
        assert counters["inductor"]["cudagraph_skips"] == self.skips, "a CUDA graph was skipped"
        assert graph_breaks_allowed or sum(counters["graph_break"].values()) == self.breaks
