"""The Qwen2.5-VL family (text, images and videos) and the tiny random checkpoint `--demo qwen2.5-vl` and the tests load.

The demo checkpoint has the published `Qwen/Qwen2.5-VL-7B-Instruct` layout: a `qwen2_5_vl` config,
`Qwen2_5_VLForConditionalGeneration` weights, a `Qwen2_5_VLProcessor` with the published
image-processor settings and chat template, and the same special tokens in the same order. Only
the sizes are tiny and the weights random, so its answers are meaningless. Across turns (`Qwen25VLReuse`), its
3-D rotary positions are computed for the whole prompt from the token types and every image's grid, and images go
through the vision tower by their rows of patches. Knows nothing of storage, queueing or the UI.
"""

from __future__ import annotations

from pathlib import Path

from assistant.families.base import Family
from assistant.families.demo_parts import padded_vocab, qwen2_tokenizer, save_demo
from assistant.families.qwen_reuse import QwenVisionReuse
from assistant.families.video_inputs import qwen_vision_kwargs
from domain.types import MediaKind

# Bump when the builder changes, so a cached demo checkpoint is rebuilt.
DEMO_SEED = 2501

# Added tokens of the published tokenizer, ids 151643.. in this order; True where marked special.
ADDED_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]
# What Qwen2_5_VLProcessor reads off the tokenizer.
MODALITY_TOKENS = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}

# chat_template.json of Qwen/Qwen2.5-VL-7B-Instruct (the processor's template), unchanged.
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# preprocessor_config.json of the published checkpoints: 14px patches merged 2x2, 3136..12845056 pixels.
IMAGE_PROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
}
CONTEXT_TOKENS = 128000  # max_position_embeddings of the published 3B and 7B configs


def build_demo(path: Path) -> None:
    """Write the tiny random Qwen2.5-VL checkpoint to `path`."""
    tokenizer = _tokenizer()
    # As the published generation_config.json: either end token stops, <|endoftext|> pads (and begins).
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    save_demo(path, "Qwen2_5_VLForConditionalGeneration", _config(tokenizer), DEMO_SEED, _processor(tokenizer),
              ("<|im_end|>", "<|endoftext|>"), pad_id=pad, bos_id=pad)


def _tokenizer():
    return qwen2_tokenizer(ADDED_TOKENS, MODALITY_TOKENS, model_max_length=131072)


def _processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**IMAGE_PROCESSOR),
        # The published repository has no video_preprocessor_config.json: videos get the image settings.
        video_processor=Qwen2VLVideoProcessor(**IMAGE_PROCESSOR),
        tokenizer=tokenizer,
        chat_template=QWEN25_VL_CHAT_TEMPLATE,
    )


def _config(tokenizer):
    from transformers import Qwen2_5_VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token, _ in ADDED_TOKENS}
    text = 64
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": padded_vocab(tokenizer),
            "hidden_size": text,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": CONTEXT_TOKENS,
            "max_window_layers": 2,
            "rms_norm_eps": 1e-6,
            # Sections in the published 16:24:24 proportion, summing to head_dim / 2.
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "hidden_act": "silu",
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],  # the published tower: window attention, every 8th block full
            "tokens_per_second": 2,
            "out_hidden_size": text,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        # Separate head (as the 7B): zeroing head rows must leave the embeddings alone.
        tie_word_embeddings=False,
    )


class Qwen25VLReuse(QwenVisionReuse):
    """3-D rotary positions over the whole prompt, images and videos found by their token types and placed by their
    grids, a video's frames spaced by its seconds per grid."""

    video_seconds = "second_per_grid_ts"

    def positions(self, inner, inputs):
        return inner.get_rope_index(
            inputs["input_ids"], inputs["mm_token_type_ids"], inputs.get("image_grid_thw"), inputs.get("video_grid_thw"),
            inputs.get("second_per_grid_ts"), inputs["attention_mask"],
        )


FAMILY = Family(
    name="qwen2.5-vl", title="Qwen2.5-VL", accepts=frozenset({MediaKind.IMAGE, MediaKind.VIDEO}),
    context_tokens=CONTEXT_TOKENS,
    model_types=("qwen2_5_vl",),
    model_class="Qwen2_5_VLForConditionalGeneration",
    # The vision tower with its patch merger, and the head, stay in full precision.
    unquantized=("model.visual", "lm_head"),
    build_demo=build_demo,
    reuse=Qwen25VLReuse(),
    processor_kwargs=qwen_vision_kwargs,
)
