"""Processor outputs for a prompt whose earlier media need no processing again (with reuse; see assistant.reuse).

The chat template leaves one placeholder per image and per audio window. Media whose encoder output is at hand
(`known`) are not resized, patched or turned into log-mel features again: their placeholders are expanded from
what they took the first time (token count, image grid, audio feature length). Only new media go through the
processor. The result has what reuse needs: `input_ids`, `attention_mask`, every image's grid and every clip's
feature length (for the 3-D positions), and pixels and features of the new media only, with their places.
Knows nothing of storage or the UI.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from assistant.prompt import ModelInput
from assistant.reuse import media_key


@dataclass(frozen=True)
class Seen:
    tokens: int
    grid: torch.Tensor | None = None  # images: (t, h, w)
    feature_length: int | None = None  # audio: valid log-mel frames


class IncrementalProcessor:
    def __init__(self, processor, media_kwargs: Callable[[list, list], dict]):
        self._processor = processor
        self._media_kwargs = media_kwargs
        self._seen: dict[str, Seen] = {}

    def __call__(self, model_input: ModelInput, known: Callable[[str], bool]) -> dict:
        processor = self._processor
        image_token, audio_token = getattr(processor, "image_token", None), getattr(processor, "audio_token", None)
        image_keys = [media_key("image", k) for k in model_input.image_keys]
        audio_keys = [media_key("audio", k) for k in model_input.audio_keys]
        new_images = [i for i, k in enumerate(image_keys) if not (k in self._seen and known(k))]
        new_audios = [i for i, k in enumerate(audio_keys) if not (k in self._seen and known(k))]
        result: dict = {"new_images": new_images, "new_audios": new_audios}
        if new_images or new_audios:
            # One per line, so that each item's tokens form a run of their own.
            placeholders = "\n".join([image_token] * len(new_images) + [audio_token] * len(new_audios))
            media = self._media_kwargs([model_input.images[i] for i in new_images], [model_input.audios[i] for i in new_audios])
            fresh = processor(text=[placeholders], **media, return_tensors="pt", padding=True)
            ids = fresh["input_ids"][0].tolist()
            image_runs = _runs(ids, processor.tokenizer.convert_tokens_to_ids(image_token)) if new_images else []
            grids = fresh.get("image_grid_thw")  # Qwen's; Gemma 4 has patch positions instead
            for j, i in enumerate(new_images):
                self._seen[image_keys[i]] = Seen(tokens=image_runs[j], grid=None if grids is None else grids[j])
            audio_runs = _runs(ids, processor.tokenizer.convert_tokens_to_ids(audio_token)) if new_audios else []
            lengths = fresh.get("feature_attention_mask")  # Qwen2.5-Omni's positions need each clip's
            for j, i in enumerate(new_audios):
                length = None if lengths is None else int(lengths[j].sum())
                self._seen[audio_keys[i]] = Seen(tokens=audio_runs[j], feature_length=length)
            for name in ("pixel_values", "image_position_ids", "input_features", "feature_attention_mask", "input_features_mask"):
                if name in fresh:
                    result[name] = fresh[name]
        text = processor.apply_chat_template(model_input.conversation, add_generation_prompt=True, tokenize=False)
        counters = {"image": 0, "audio": 0}
        # Gemma 4's processor also wraps each run in begin/end tokens; the Qwen templates already hold theirs.
        wraps = {
            "image": (getattr(processor, "boi_token", None) or "", getattr(processor, "eoi_token", None) or ""),
            "audio": (getattr(processor, "boa_token", None) or "", getattr(processor, "eoa_token", None) or ""),
        }

        def expand(match: re.Match) -> str:
            kind = "image" if match.group(0) == image_token else "audio"
            keys = image_keys if kind == "image" else audio_keys
            seen = self._seen[keys[counters[kind]]]
            counters[kind] += 1
            begin, end = wraps[kind]
            return begin + match.group(0) * seen.tokens + end

        pattern = "|".join(re.escape(t) for t in (image_token, audio_token) if t)
        expanded = re.sub(pattern, expand, text)
        tokens = processor.tokenizer([expanded], return_tensors="pt")
        result["input_ids"], result["attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
        if image_keys and self._seen[image_keys[0]].grid is not None:
            result["image_grid_thw"] = torch.stack([self._seen[k].grid for k in image_keys])
        if audio_keys and self._seen[audio_keys[0]].feature_length is not None:
            result["audio_feature_lengths"] = torch.tensor([self._seen[k].feature_length for k in audio_keys])
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
