"""Work kept across turns: each conversation's KV cache, and each media item's encoder output.

A new turn prefills only the tokens its conversation's cache does not already hold: the cache is cropped
to the longest common prefix of the cached and the new token ids, never inside a block (a run of one media
item's placeholder tokens), and only up to the first block whose media differ (ids alone cannot tell two
same-size images apart). One item may span several blocks: a video's frames between timestamps, or its
frames interleaved with its sound track's tokens; its encoder output gives the rows of its own kind's tokens
first, then those of any other kind within it, each in order.
The new part goes in as embeddings, media scattered in from the encoder cache (memory, then disk, then
the encoder itself), with rotary positions computed for the whole prompt; then `generate` continues from
the cache with the last prompt token, the model's `rope_deltas` (where it has them) set for this
conversation (it keeps those of whatever ran last). Sliding-window layers keep every token, so the cache
can be cut anywhere. What differs between model families (their positions, how one media item is encoded,
how the language model takes the prefill, whether reuse is possible at all) is each family's
`ReuseContract` (assistant/families/reuse_contract.py); this module names no family.
Knows nothing of storage, queueing or the UI.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from assistant.families.base import Family
from assistant.families.reuse_contract import Segment
from domain.limits import ENCODER_MEMORY_BYTES

log = logging.getLogger(__name__)

KINDS = ("image", "video", "audio")


def media_key(kind: str, key: str) -> str:
    """"image:<sha256>", "video:<sha256>" or "audio:<sha256>#<window>@<seconds>": what an encoder output belongs to."""
    return f"{kind}:{key}"


def _media_file(media: str) -> str:
    """The sha256 of the file a media key comes from (an audio window's "#<window>", a video's "@<rate>" cut off)."""
    return media.split(":", 1)[-1].split("#", 1)[0].split("@", 1)[0]




@dataclass
class Entry:
    ids: torch.Tensor  # (n,) the token ids the cache holds
    keys: list[tuple[int, str]]  # (start, media key) of each media block in `ids`, in order
    cache: object  # transformers DynamicCache

    @property
    def nbytes(self) -> int:
        total = 0
        for layer in getattr(self.cache, "layers", []):
            for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if isinstance(tensor, torch.Tensor):
                    total += tensor.numel() * tensor.element_size()
        return total


class KVStore:
    """Conversations' caches, least recently used evicted past `budget_bytes`, less what is reserved (the compiled
    decode's static caches, assistant/compiled.py): one budget for all KV memory."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self.reserved = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def reserve(self, nbytes: int) -> bool:
        """Take `nbytes` out of the budget, evicting kept caches to make room; False if the budget is too small."""
        with self._lock:
            if self.reserved + nbytes > self.budget_bytes:
                return False
            self.reserved += nbytes
            self._evict()
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.reserved = max(0, self.reserved - nbytes)

    def take(self, key: str) -> Entry | None:
        """The entry, removed while it is in use (a failure then leaves nothing stale behind)."""
        with self._lock:
            return self._entries.pop(key, None)

    def put(self, key: str, entry: Entry) -> None:
        size = entry.nbytes
        with self._lock:
            if size > self.budget_bytes - self.reserved:
                return
            self._entries[key] = entry
            self._evict()

    def _evict(self) -> None:
        while self._entries and sum(e.nbytes for e in self._entries.values()) > self.budget_bytes - self.reserved:
            evicted, _ = self._entries.popitem(last=False)
            log.debug("evicted the KV cache of %s", evicted)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class EncoderCache:
    """Encoder outputs by media key, in memory and (when given a folder) on disk, for one model."""

    def __init__(self, folder: Path | None):
        self._folder = folder
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.calls = 0  # encoder runs, for tests and benchmarks

    def get(self, key: str, compute) -> torch.Tensor:
        """The features, on the CPU (the caller moves them to the model's device)."""
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        features = self._load(key)
        if features is None:
            self.calls += 1
            features = compute().detach().to("cpu")
            self._save(key, features)
        self._memory[key] = features
        while len(self._memory) > 1 and sum(f.numel() * f.element_size() for f in self._memory.values()) > ENCODER_MEMORY_BYTES:
            self._memory.popitem(last=False)
        return features

    def has(self, key: str) -> bool:
        path = self._path(key)
        return key in self._memory or (path is not None and path.is_file())

    def _path(self, key: str) -> Path | None:
        # One folder per media file (the sha256 in its key), so deleting the file can delete what came of it.
        if self._folder is None:
            return None
        return self._folder / _media_file(key) / (hashlib.sha256(key.encode()).hexdigest() + ".pt")

    def forget_media(self, sha256s: list[str]) -> None:
        for key in [k for k in self._memory if _media_file(k) in sha256s]:
            del self._memory[key]

    def _load(self, key: str) -> torch.Tensor | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError):
            log.warning("an encoder cache file is unreadable; computing it again", exc_info=True)
            return None

    def _save(self, key: str, features: torch.Tensor) -> None:
        path = self._path(key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            torch.save(features, partial)
            partial.replace(path)
        except OSError:
            log.warning("could not write the encoder cache", exc_info=True)


def model_fingerprint(model, quant: str, dtype: torch.dtype) -> str:
    """Encoder outputs belong to one model (its checkpoint and config), at one precision."""
    identity = f"{getattr(model, 'name_or_path', '')}|{model.config.to_json_string()}|{quant}|{dtype}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def supports_reuse(family: Family, model) -> bool:
    """Whether this path can keep `model`'s work across turns: its family has a reuse contract that takes it."""
    return family.reuse is not None and family.reuse.supports(model)


def budget_bytes(budget_gb: float | None, device: torch.device) -> int:
    """`budget_gb` (--kv-cache-gb), else a quarter of the GPU memory still free once the model is loaded (at most
    8 GiB), or 2 GiB of RAM on a CPU."""
    if budget_gb is not None:
        return int(budget_gb * 2**30)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return min(free // 4, 8 * 2**30)
    return 2 * 2**30


class Reuse:
    """What a TransformersEngine keeps across turns (one per engine; used under its one-generation lock).

    `budget_gb` bounds the KV caches (see `budget_bytes`); encoder outputs go
    to `encoder_folder` (None: memory only).
    """

    def __init__(self, budget_gb: float | None, encoder_folder: Path | None):
        self._budget_gb = budget_gb
        self._encoder_folder = encoder_folder
        self.kv = KVStore(0)
        self.encoders: EncoderCache | None = None
        self.prefilled: int | None = None  # tokens the last turn prefilled, for benchmarks

    def bind(self, fingerprint: str, device: torch.device) -> None:
        """Attach to one loaded model: its encoder outputs live apart from other models'."""
        self.kv = KVStore(budget_bytes(self._budget_gb, device))
        folder = None if self._encoder_folder is None else self._encoder_folder / fingerprint
        self.encoders = EncoderCache(folder)

    def prefill(self, model, family: Family, inputs, media_keys: dict[str, list[str]], key: str, float_dtype):
        """Bring `key`'s cache up to all prompt tokens but the last; returns (cache, (start, media key) per block).
        `media_keys`: kind -> what each item of that kind is, in prompt order (ModelInput's image/video/audio keys)."""
        from transformers import DynamicCache

        inner = model.model
        ids = inputs["input_ids"]
        length = ids.shape[1]
        config = model.config
        text_config = config.get_text_config()
        placeholders = {getattr(config, f"{kind}_token_id", None): kind for kind in KINDS}
        placeholders.pop(None, None)
        blocks = _blocks(ids[0], placeholders, media_keys, inputs.get("media_tokens"))
        contract = family.reuse
        positions, deltas = contract.positions(inner, inputs)
        entry = self.kv.take(key)
        start, cache = 0, None
        if entry is not None:
            start = _reusable(entry, ids[0], blocks, length - 1)
            cache = entry.cache if _crop(entry.cache, start) else None
        if cache is None:
            start, cache = 0, recording(DynamicCache(config=config))
        self.prefilled = length - 1 - start
        if start < length - 1:
            needed = [b for b in blocks if b[0] >= start]
            # Placeholder tokens embed as padding (they may lie outside the vocabulary); media go in over them.
            text_ids = ids[:, start : length - 1].clone()
            for block_start, block_end, *_ in needed:
                text_ids[0, block_start - start : block_end - start] = getattr(text_config, "pad_token_id", None) or 0
            embeds = inner.get_input_embeddings()(text_ids)
            # Media processed earlier have no pixels or features in `inputs`: fetch theirs before new ones can evict.
            needed.sort(key=lambda b: b[3] in inputs[f"new_{b[2]}s"])
            fetched = {}  # media key -> its encoder output, fetched once for all of the item's blocks
            levels = {}  # block start -> an encoder's further levels, which the family's prefill adds
            for block_start, block_end, kind, index, media_key, row in needed:
                if media_key not in fetched:
                    compute = lambda kind=kind, index=index: _encode(contract, inner, inputs, kind, index, float_dtype)
                    fetched[media_key] = self.encoders.get(media_key, compute)
                features = fetched[media_key]
                rows = slice(row, row + block_end - block_start)
                if features.dim() == 3:
                    features, levels[block_start] = features[0], features[1:, rows]
                embeds[0, block_start - start : block_end - start] = features[rows].to(embeds.device, embeds.dtype)
            mask = torch.ones(1, length - 1, dtype=torch.long, device=ids.device)
            # The inner model: the cache is what this pass is for, so the output head (152k wide) is skipped.
            args = dict(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions[..., start : length - 1],
                past_key_values=cache,
                use_cache=True,
            )
            contract.prefill(inner, Segment(args, inputs, text_ids, start, length - 1, blocks, levels))
        if deltas is not None:
            inner.rope_deltas = deltas
        return cache, [(b[0], b[4]) for b in blocks]

    def keep(self, key: str, sequence: torch.Tensor, cache, keys: list[tuple[int, str]]) -> None:
        held = cache.get_seq_length()
        self.kv.put(key, Entry(ids=sequence[:held].detach().clone(), keys=keys, cache=cache))

    def forget(self, key: str, media: list[str] = ()) -> None:
        """Drop a conversation's KV cache, and every model's encoder outputs of the given media files."""
        self.kv.take(key)
        if self.encoders is not None:
            self.encoders.forget_media(list(media))
        if self._encoder_folder is not None:
            forget_encoded(self._encoder_folder, media)


def forget_encoded(folder: Path, media: list[str]) -> None:
    """Delete every model's encoder outputs of these media files (sha256) from the cache folder."""
    for sha256 in media:
        for path in folder.glob(f"*/{sha256}"):
            shutil.rmtree(path, ignore_errors=True)


def _blocks(ids: torch.Tensor, placeholders: dict[int, str], keys: dict[str, list[str]], tokens: dict[str, list[int]] | None = None):
    """(start, end, kind, index, key, row) of each run of one placeholder token, in order: the `index`-th item of
    `kind`, whose encoder output's rows from `row` go over the run.

    `placeholders`: token id -> kind. Runs that touch form one group, an item's or part of one; a group of a kind
    starts the next item of that kind unless the item before is still short of its `tokens` (every placeholder
    token it has: a video's frames come as groups between timestamps). Without `tokens` each group is an item."""
    values = ids.tolist()
    runs, i = [], 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i]:
            j += 1
        if values[i] in placeholders:
            runs.append((i, j, values[i]))
        i = j
    items: list[list] = []  # [kind, index, runs]
    counters = {kind: 0 for kind in KINDS}
    owed = 0  # placeholder tokens the current item still lacks
    for n, (start, end, token) in enumerate(runs):
        touching = n > 0 and runs[n - 1][1] == start
        if not touching and owed <= 0:
            kind = placeholders[token]
            index = counters[kind]
            counters[kind] += 1
            owed = tokens[kind][index] if tokens is not None and index < len(tokens.get(kind, ())) else 0
            items.append([kind, index, []])
        items[-1][2].append((start, end, token))
        owed -= end - start
    blocks = []
    for kind, index, item_runs in items:
        own = next(token for token, each in placeholders.items() if each == kind)
        # Rows: the item's own kind's tokens first, then each other kind's, in the order of KINDS.
        order = [own] + [t for k in KINDS for t, each in placeholders.items() if each == k and t != own]
        base, total = {}, 0
        for token in order:
            base[token] = total
            total += sum(end - start for start, end, t in item_runs if t == token)
        for start, end, token in item_runs:
            blocks.append((start, end, kind, index, media_key(kind, keys[kind][index]), base[token]))
            base[token] += end - start
    return blocks


def recording(cache):
    """Sliding-window layers keep every token, not only the window's: a later turn may cut the cache anywhere."""
    for layer in getattr(cache, "layers", []):
        if hasattr(layer, "activate_past_recording"):
            layer.activate_past_recording()
    return cache


def _crop(cache, keep: int) -> bool:
    """Cut the cache to its first `keep` tokens; False if it cannot be (a sliding layer has dropped some)."""
    from transformers.cache_utils import DynamicSlidingWindowLayer

    surplus = cache.get_seq_length() - keep
    if surplus <= 0:
        return True
    for layer in cache.layers:
        if not getattr(layer, "is_initialized", False):
            continue
        if isinstance(layer, DynamicSlidingWindowLayer):
            if layer.keys.shape[-2] != layer.cumulative_length:
                return False
            layer.keys, layer.values = layer.keys[:, :, :keep], layer.values[:, :, :keep]
            layer.cumulative_length = keep
        else:
            layer.crop(-surplus)
    return True


def _reusable(entry: Entry, ids: torch.Tensor, blocks, limit: int) -> int:
    """The longest prefix the cache may keep: equal ids, whole blocks, the same media in the same places."""
    old = entry.ids.to(ids.device)
    n = min(len(old), limit)
    equal = (old[:n] == ids[:n]).long()
    start = int(equal.cumprod(0).sum())
    cached = dict(entry.keys)
    for block_start, block_end, _, _, key, _ in blocks:
        if block_start >= start:
            break
        if cached.get(block_start) != key or block_end > start:
            return block_start  # different media here, or the prefix ends inside this block
    return start


def _encode(contract, inner, inputs, kind: str, index: int, float_dtype) -> torch.Tensor:
    """One new media item (the `index`-th image or clip of the prompt) through its family's encoder."""
    new = inputs[f"new_{kind}s"]
    if index not in new:
        raise RuntimeError(f"the encoder output of {kind} {index} is no longer cached and its inputs were not processed")
    return contract.encode(inner, inputs, kind, new.index(index), float_dtype)
