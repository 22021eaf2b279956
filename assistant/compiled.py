"""Compiled decode: `generate`'s one-token steps through `torch.compile` over a static KV cache.

At batch size 1 an eager decode step spends most of its time launching kernels; a static cache keeps every
tensor's shape and address fixed, so the step compiles once (on CUDA into CUDA graphs, `mode="reduce-overhead"`,
transformers' documented fast path) and replays. The prompt is still prefilled eagerly (by `generate`, or by
assistant/reuse.py, whose kept prefix is copied in), so prompts of any length cost no recompilation. Static caches
come in a few lengths (a power of two, at least `COMPILED_CACHE_MIN_TOKENS`; the two shortest compiled while the
model loads, longer ones reuse the second's graph), and their memory is taken from the budget the conversations'
KV caches share (`--kv-cache-gb`). A model whose compilation fails answers eagerly, with a log line saying why.
Knows nothing of families, storage or the UI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from torch._dynamo.exc import TorchDynamoException

from domain.limits import COMPILED_CACHE_MIN_TOKENS

log = logging.getLogger(__name__)


class CompiledDecode:
    """Static caches and the compiled decode step for one model; used under the engine's one-generation lock,
    always from its generation thread (CUDA graphs are recorded per thread)."""

    def __init__(self, model, context_tokens: int, budget, *, backend="inductor"):
        from transformers.generation import CompileConfig

        self.model = model
        self.context_tokens = context_tokens
        self._budget = budget  # assistant.reuse.KVStore: static caches are reserved out of its bytes
        self._caches: dict[int, object] = {}  # length -> StaticCache, kept: CUDA graphs hold their addresses
        mode = "reduce-overhead" if model.device.type == "cuda" else "default"
        # dynamic=None: the first cache length compiles as is, the second recompiles with a symbolic length that
        # every longer cache then reuses (on CUDA each length records its own graphs, which takes well under a second).
        self._config = CompileConfig(fullgraph=False, dynamic=None, backend=backend, mode=mode)
        self._at_least = 0  # tokens the next cache must hold, whatever the answer asks (the warm-up's second length)
        self.failure: str | None = unsupported(model)
        if self.failure is not None:
            log.info("decode is not compiled for this model: %s", self.failure)
        self.compile_seconds: float | None = None
        # transformers compiles decode only for the devices and quantizers it lists (in 5.x, not bitsandbytes 4-bit,
        # which supports torch.compile since 0.46); this model decides per call: a static cache of ours compiles.
        model._valid_auto_compile_criteria = _compiles

    @property
    def enabled(self) -> bool:
        return self.failure is None

    def warm_up(self, answer: Callable[[], None]) -> bool:
        """Compile (and on CUDA record) the decode step by running `answer`, a short answer through this object's
        `generate`, with the two shortest caches, so that no later answer compiles; False, with the reason in
        `failure` and the log, if it cannot be compiled."""
        if not self.enabled:
            return False
        started = time.monotonic()
        try:
            # Capped by the context: a model with less than these uses its whole context for every answer.
            for length in sorted({min(n, self.context_tokens) for n in (COMPILED_CACHE_MIN_TOKENS, 2 * COMPILED_CACHE_MIN_TOKENS)}):
                self._at_least = length
                answer()
        except Exception as error:  # noqa: BLE001 - any compiler failure means: answer eagerly
            log.debug("compiling the decode step failed", exc_info=True)
            if self.enabled:
                self._disable(_reason(error))
            return False
        finally:
            self._at_least = 0
        if not self._caches:
            self._disable("no static cache fits the KV cache budget (--kv-cache-gb)")
            return False
        self.compile_seconds = time.monotonic() - started
        log.info("compiled the decode step in %.1f s", self.compile_seconds)
        return True

    def generate(self, args: dict, prefilled=None):
        """`model.generate(**args)` with compiled decode steps: (output ids, the static cache it filled), or None when
        this answer cannot have them (disabled, or no cache fits the budget; the caller then generates eagerly).
        `prefilled`: a DynamicCache that holds every prompt token but the last (assistant/reuse.py)."""
        if not self.enabled:
            return None
        cache = self._cache(int(args["input_ids"].shape[1]) + int(args["max_new_tokens"]))
        if cache is None:
            return None
        try:
            cache.reset()
            if prefilled is not None:
                _copy_in(prefilled, cache)
            output = self.model.generate(**args, past_key_values=cache, compile_config=self._config)
        except TorchDynamoException as error:
            # The compiler failed (inductor's errors are dynamo's too). Its first token has already streamed by then
            # (prefill is eager), so this answer ends as a failed one, what it said kept; later answers are eager.
            self._disable(_reason(error))
            raise
        return output, cache

    def kept(self, cache):
        """A DynamicCache copy of what a static cache holds, for assistant/reuse.py to keep for the next turn."""
        from transformers import DynamicCache

        from assistant.reuse import recording

        length = int(cache.get_seq_length())
        copy = recording(DynamicCache(config=self.model.config))
        for index, layer in enumerate(cache.layers):
            if layer.keys is not None:  # not a layer that reads another's cache; `update` concatenates: a copy
                copy.update(layer.keys[:, :, :length], layer.values[:, :, :length], index)
        return copy

    def cache_length(self, total_tokens: int) -> int:
        """The static cache an answer of `total_tokens` (prompt and answer) uses."""
        length = COMPILED_CACHE_MIN_TOKENS
        while length < total_tokens:
            length *= 2
        return max(min(length, self.context_tokens), total_tokens)

    def nbytes(self, length: int) -> int:
        """The bytes of a static cache of `length` tokens: keys and values of every layer that keeps its own."""
        text = self.model.config.get_text_config(decoder=True)
        total = 0
        for kind, layer in zip(_layer_kinds(text), text.per_layer_config):
            if kind == "dummy":  # reads another layer's cache
                continue
            heads = getattr(layer, "num_key_value_heads", None) or text.num_key_value_heads or text.num_attention_heads
            head_dim = getattr(layer, "head_dim", None) or getattr(text, "head_dim", None)
            total += 2 * heads * (head_dim or text.hidden_size // text.num_attention_heads) * length
        return total * self.model.dtype.itemsize

    def _cache(self, total_tokens: int):
        from transformers import StaticCache
        from transformers.cache_utils import StaticLayer

        length = self.cache_length(max(total_tokens, self._at_least))
        if length not in self._caches:
            if not self._budget.reserve(self.nbytes(length)):
                log.info("a static cache of %d tokens does not fit the KV cache budget; this answer is eager", length)
                return None
            log.debug("a static cache of %d tokens", length)
            cache = StaticCache(config=self.model.config, max_cache_len=length)
            # Sliding-window layers keep every token, as reuse's dynamic caches record them (the mask applies the
            # window): a static sliding layer would drop what a later turn's kept prefix needs.
            cache.layers = [StaticLayer(max_cache_len=length) if getattr(layer, "is_sliding", False) else layer
                            for layer in cache.layers]
            cache.compiled_decode = True
            self._caches[length] = cache
        return self._caches[length]

    def _disable(self, reason: str) -> None:
        self.failure = reason
        log.warning("compiled decode is off, answers are generated eagerly: %s", reason)
        for length in list(self._caches):
            self._budget.release(self.nbytes(length))
            del self._caches[length]


def _reason(error: BaseException) -> str:
    """One line: the error and, for a compiler's failure, the one underneath it."""
    def line(e: BaseException) -> str:
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__

    root = error
    while root.__cause__ is not None or getattr(root, "inner_exception", None) is not None:
        root = root.__cause__ or root.inner_exception
    return line(error) if root is error else f"{line(error)} ({line(root)})"


def _compiles(model_kwargs: dict, generation_config) -> bool:
    """Stands in for transformers' `_valid_auto_compile_criteria` on a model whose decode we compile."""
    cache = model_kwargs.get("past_key_values")
    return getattr(cache, "compiled_decode", False) and not generation_config.disable_compile


def unsupported(model) -> str | None:
    """Why this model's decode cannot be compiled here, or None."""
    kinds = set(_layer_kinds(model.config.get_text_config(decoder=True)))
    if kinds - {"full_attention", "sliding_attention", "dummy"}:
        return f"layers of a kind without a static cache here ({', '.join(sorted(kinds))})"
    devices = set(getattr(model, "hf_device_map", {}).values())
    if len(devices) > 1 or (devices & {"cpu", "disk"} and model.device.type != "cpu"):
        return "the model is spread over several devices or offloaded"
    return None


def _layer_kinds(text_config) -> list[str]:
    """Each layer's cache kind as transformers builds caches: full_attention, sliding_attention, dummy (reads
    another layer's cache), …"""
    from transformers.cache_utils import get_layer_types_and_kwargs

    return get_layer_types_and_kwargs(text_config)[0]


def _copy_in(prefilled, cache) -> None:
    """Put a DynamicCache's tokens at the start of a (reset) static cache, in place: its addresses stay."""
    length = prefilled.get_seq_length()
    if length == 0:
        return
    for source, target in zip(prefilled.layers, cache.layers):
        if source.keys is None:  # a layer that reads another's cache
            continue
        if not target.is_initialized:
            target.lazy_initialization(source.keys, source.values)
        target.keys[:, :, :length].copy_(source.keys)
        target.values[:, :, :length].copy_(source.values)
        target.cumulative_length.fill_(length)
