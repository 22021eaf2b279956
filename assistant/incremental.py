"""Processor outputs for a prompt whose earlier media need no processing again (with reuse; see assistant.reuse).

The chat template leaves one placeholder per image and per audio window. Media whose encoder output is at hand
(`known`) are not resized, patched or turned into log-mel features again: their placeholders are expanded from
what they took the first time (their token count, and what the family's positions need of them, such as an image
grid or a clip's feature length). Only new media go through the processor. The result has what reuse needs:
`input_ids`, `attention_mask`, what the positions need of every item, and the pixels and features of the new
media only, with their places. What differs between families comes from their `ReuseContract`
(assistant/families/reuse_contract.py); this module names no family. Knows nothing of storage or the UI.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from assistant.families.base import Family
from assistant.prompt import ModelInput
from assistant.reuse import media_key


@dataclass(frozen=True)
class Seen:
    tokens: int
    facts: dict = field(default_factory=dict)  # what the family's positions need of the item (ReuseContract.remember)


class IncrementalProcessor:
    def __init__(self, processor, family: Family):
        self._processor = processor
        self._media_kwargs = family.processor_kwargs
        self._contract = family.reuse
        self._seen: dict[str, Seen] = {}

    def __call__(self, model_input: ModelInput, known: Callable[[str], bool]) -> dict:
        processor, contract = self._processor, self._contract
        tokens = {"image": getattr(processor, "image_token", None), "audio": getattr(processor, "audio_token", None)}
        keys = {
            "image": [media_key("image", k) for k in model_input.image_keys],
            "audio": [media_key("audio", k) for k in model_input.audio_keys],
        }
        new = {kind: [i for i, k in enumerate(keys[kind]) if not (k in self._seen and known(k))] for kind in keys}
        result: dict = {"new_images": new["image"], "new_audios": new["audio"]}
        if new["image"] or new["audio"]:
            # One per line, so that each item's tokens form a run of their own.
            placeholders = "\n".join([tokens["image"]] * len(new["image"]) + [tokens["audio"]] * len(new["audio"]))
            media = self._media_kwargs(
                [model_input.images[i] for i in new["image"]], [model_input.audios[i] for i in new["audio"]], []
            )
            fresh = processor(text=[placeholders], **media, return_tensors="pt", padding=True)
            ids = fresh["input_ids"][0].tolist()
            for kind in keys:
                runs = _runs(ids, processor.tokenizer.convert_tokens_to_ids(tokens[kind])) if new[kind] else []
                for j, i in enumerate(new[kind]):
                    self._seen[keys[kind][i]] = Seen(tokens=runs[j], facts=contract.remember(fresh, kind, j))
            for name in contract.media_inputs:
                if name in fresh:
                    result[name] = fresh[name]
        text = processor.apply_chat_template(model_input.conversation, add_generation_prompt=True, tokenize=False)
        counters = {"image": 0, "audio": 0}
        # Some processors also wrap each run in begin/end tokens that the chat template does not write.
        wraps = {kind: contract.wrap(processor, kind) for kind in keys}

        def expand(match: re.Match) -> str:
            kind = "image" if match.group(0) == tokens["image"] else "audio"
            seen = self._seen[keys[kind][counters[kind]]]
            counters[kind] += 1
            begin, end = wraps[kind]
            return begin + match.group(0) * seen.tokens + end

        pattern = "|".join(re.escape(t) for t in tokens.values() if t)
        expanded = re.sub(pattern, expand, text)
        encoded = processor.tokenizer([expanded], return_tensors="pt")
        result["input_ids"], result["attention_mask"] = encoded["input_ids"], encoded["attention_mask"]
        for kind in keys:
            result.update(contract.position_inputs(kind, [self._seen[k].facts for k in keys[kind]]))
        if hasattr(processor, "create_mm_token_type_ids"):
            result["mm_token_type_ids"] = torch.as_tensor(processor.create_mm_token_type_ids(result["input_ids"].tolist()))
        return result


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
