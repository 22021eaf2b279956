"""Processor outputs for a prompt whose earlier media need no processing again (with reuse; see assistant.reuse).

The chat template leaves one placeholder per image, video and audio window. Media whose encoder output is at hand
(`known`) are not resized, patched or turned into log-mel features again: their placeholders are expanded into what
the processor wrote for them the first time (its run of placeholder tokens with whatever came around it: begin and
end tokens, a video's frame timestamps, its sound track's tokens between its frames), and what the family's
positions need of them (an image or video grid, a clip's feature length) is kept. Only new media go through the
processor. The result has what reuse needs: `input_ids`, `attention_mask`, what the positions need of every item,
each item's count of placeholder tokens (`media_tokens`), and the pixels and features of the new media only, with
their places. What differs between families comes from their `ReuseContract`
(assistant/families/reuse_contract.py); this module names no family. Knows nothing of storage or the UI.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from assistant.families.base import Family
from assistant.prompt import ModelInput
from assistant.reuse import KINDS, media_key


@dataclass(frozen=True)
class Seen:
    tokens: int  # placeholder tokens of every kind in the item
    text: str  # what its placeholder in the chat template's text is replaced with
    facts: dict = field(default_factory=dict)  # what the family's positions need of the item (ReuseContract.remember)


class IncrementalProcessor:
    def __init__(self, processor, family: Family):
        self._processor = processor
        self._media_kwargs = family.processor_kwargs
        self._contract = family.reuse
        self._seen: dict[str, Seen] = {}

    def __call__(self, model_input: ModelInput, known: Callable[[str], bool]) -> dict:
        processor, contract = self._processor, self._contract
        tokens = {kind: getattr(processor, f"{kind}_token", None) for kind in KINDS}
        keys = {kind: [media_key(kind, k) for k in getattr(model_input, f"{kind}_keys")] for kind in KINDS}
        new = {kind: [i for i, k in enumerate(keys[kind]) if not (k in self._seen and known(k))] for kind in KINDS}
        result: dict = {f"new_{kind}s": new[kind] for kind in KINDS}
        if any(new.values()):
            self._process(model_input, tokens, keys, new, result)
        text = processor.apply_chat_template(model_input.conversation, add_generation_prompt=True, tokenize=False)
        counters = {kind: 0 for kind in KINDS}
        kind_of = {token: kind for kind, token in tokens.items() if token}

        def expand(match: re.Match) -> str:
            kind = kind_of[match.group(0)]
            seen = self._seen[keys[kind][counters[kind]]]
            counters[kind] += 1
            return seen.text

        expanded = re.sub("|".join(re.escape(t) for t in kind_of), expand, text)
        encoded = processor.tokenizer([expanded], return_tensors="pt")
        result["input_ids"], result["attention_mask"] = encoded["input_ids"], encoded["attention_mask"]
        result["media_tokens"] = {kind: [self._seen[k].tokens for k in keys[kind]] for kind in KINDS}
        for kind in KINDS:
            result.update(contract.position_inputs(kind, [self._seen[k].facts for k in keys[kind]]))
        if hasattr(processor, "create_mm_token_type_ids"):
            result["mm_token_type_ids"] = torch.as_tensor(processor.create_mm_token_type_ids(result["input_ids"].tolist()))
        return result

    def _process(self, model_input: ModelInput, tokens: dict, keys: dict, new: dict, result: dict) -> None:
        """The new media through the processor, each placeholder on a line of its own; what each needs later is kept."""
        processor, contract = self._processor, self._contract
        placeholders = "\n".join(tokens[kind] for kind in ("image", "audio", "video") for _ in new[kind])
        media = self._media_kwargs(*([getattr(model_input, f"{kind}s")[i] for i in new[kind]] for kind in ("image", "audio", "video")))
        fresh = processor(text=[placeholders], **media, return_tensors="pt", padding=True, return_text_replacement_offsets=True)
        replaced = {kind: [] for kind in KINDS}
        for offset in (fresh.get("text_replacement_offsets") or [[]])[0]:
            replaced[offset["type"]].append(offset["replacement"])
        ids = fresh["input_ids"][0].tolist()
        placeholder_ids = {processor.tokenizer.convert_tokens_to_ids(t) for t in tokens.values() if t}
        for kind in KINDS:
            if not new[kind]:
                continue
            if len(replaced[kind]) != len(new[kind]):  # a processor that does not say: its run and the family's wrap
                begin, end = contract.wrap(processor, kind)
                replaced[kind] = [begin + tokens[kind] * n + end for n in _runs(ids, processor.tokenizer.convert_tokens_to_ids(tokens[kind]))]
            for j, i in enumerate(new[kind]):
                text = replaced[kind][j]
                count = sum(t in placeholder_ids for t in processor.tokenizer(text, add_special_tokens=False)["input_ids"])
                self._seen[keys[kind][i]] = Seen(tokens=count, text=text, facts=contract.remember(fresh, kind, j))
        for name in contract.media_inputs:
            if name in fresh:
                result[name] = fresh[name]


def _runs(ids: list[int], token: int) -> list[int]:
    """Lengths of the runs of `token` in `ids`, in order."""
    runs, count = [], 0
    for value in ids + [None]:
        if value == token:
            count += 1
        elif count:
            runs.append(count)
            count = 0
    return runs
