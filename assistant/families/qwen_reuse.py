"""Reuse pieces the Qwen families share (see reuse_contract): images and videos as rows of patches counted by their
grids, audio through `get_audio_features`, and what their 3-D positions need of items seen before. No torch at import."""

from __future__ import annotations

from assistant.families.reuse_contract import ReuseContract

# kind -> (its pixels, its grids) in the processor's output
VISION_INPUTS = {"image": ("pixel_values", "image_grid_thw"), "video": ("pixel_values_videos", "video_grid_thw")}


def vision_output(inner, inputs, kind: str, j: int, float_dtype):
    """The vision tower's output for the `j`-th new image or video: its rows of pixels are counted by the grids."""
    pixels_name, grids_name = VISION_INPUTS[kind]
    grids = inputs[grids_name][inputs[f"new_{kind}s"]]
    rows = grids.prod(-1).tolist()
    first = sum(rows[:j])
    pixels = inputs[pixels_name][first : first + rows[j]].to(float_dtype)
    features = inner.get_image_features if kind == "image" else inner.get_video_features
    return features(pixels, grids[j : j + 1])


def audio_features(inner, inputs, j: int, float_dtype):
    """The clip in row `j` of the audio features through the audio tower and projector: (tokens, hidden)."""
    features = inputs["input_features"][j : j + 1].to(float_dtype)
    mask = inputs["feature_attention_mask"][j : j + 1]
    return inner.get_audio_features(features, mask).last_hidden_state


class QwenVisionReuse(ReuseContract):
    """Images and videos by grid; every item's grid (and a video's seconds per grid, under the name its processor
    gives them, `video_seconds`) kept for the 3-D positions of the whole prompt."""

    media_inputs = ("pixel_values", "pixel_values_videos")
    video_seconds: str | None = None

    def encode(self, inner, inputs, kind: str, j: int, float_dtype):
        if kind not in VISION_INPUTS:
            return super().encode(inner, inputs, kind, j, float_dtype)
        return vision_output(inner, inputs, kind, j, float_dtype).pooler_output[0]

    def remember(self, fresh, kind: str, j: int) -> dict:
        if kind not in VISION_INPUTS:
            return {}
        facts = {"grid": fresh[VISION_INPUTS[kind][1]][j]}
        if kind == "video" and self.video_seconds in fresh:
            facts["seconds"] = fresh[self.video_seconds][j]
        return facts

    def position_inputs(self, kind: str, remembered: list[dict]) -> dict:
        import torch

        if kind not in VISION_INPUTS or not remembered:
            return {}
        result = {VISION_INPUTS[kind][1]: torch.stack([facts["grid"] for facts in remembered])}
        if kind == "video" and all("seconds" in facts for facts in remembered):
            result[self.video_seconds] = torch.stack([torch.as_tensor(facts["seconds"]) for facts in remembered])
        return result
