"""Reuse pieces the Qwen families share (see reuse_contract): images as rows of patches counted by their grids,
audio through `get_audio_features`, and what their 3-D positions need of items seen before. No torch at import."""

from __future__ import annotations

from assistant.families.reuse_contract import ReuseContract


def image_output(inner, inputs, j: int, float_dtype):
    """The vision tower's output for the `j`-th new image: its rows of `pixel_values` are counted by the grids."""
    new = inputs["new_images"]
    grids = inputs["image_grid_thw"][new]
    rows = grids.prod(-1).tolist()
    first = sum(rows[:j])
    pixels = inputs["pixel_values"][first : first + rows[j]].to(float_dtype)
    return inner.get_image_features(pixels, grids[j : j + 1])


def audio_features(inner, inputs, j: int, float_dtype):
    """The `j`-th new clip through the audio tower and projector: (tokens, hidden)."""
    features = inputs["input_features"][j : j + 1].to(float_dtype)
    mask = inputs["feature_attention_mask"][j : j + 1]
    return inner.get_audio_features(features, mask).last_hidden_state


class QwenVisionReuse(ReuseContract):
    """Images by grid; every image's grid kept for the 3-D positions (`image_grid_thw` of the whole prompt)."""

    media_inputs = ("pixel_values",)

    def encode(self, inner, inputs, kind: str, j: int, float_dtype):
        if kind != "image":
            return super().encode(inner, inputs, kind, j, float_dtype)
        return image_output(inner, inputs, j, float_dtype).pooler_output[0]

    def remember(self, fresh, kind: str, j: int) -> dict:
        return {"grid": fresh["image_grid_thw"][j]} if kind == "image" else {}

    def position_inputs(self, kind: str, remembered: list[dict]) -> dict:
        import torch

        if kind == "image" and remembered:
            return {"image_grid_thw": torch.stack([facts["grid"] for facts in remembered])}
        return {}
