"""The Qwen3-VL family (text, images and videos) and the tiny random checkpoint `--demo qwen3-vl` and the tests load.

The demo checkpoint has the published `Qwen/Qwen3-VL-8B-Instruct` layout: a `qwen3_vl` config,
`Qwen3VLForConditionalGeneration` weights (a vision tower with DeepStack mergers feeding the first
language layers, interleaved M-RoPE), a `Qwen3VLProcessor` with the published image and video
settings and chat template, and the same special tokens in the same order. Only the sizes are tiny
and the weights random, so its answers are meaningless. Across turns (`Qwen3VLReuse`), each image's DeepStack
levels are kept with its features and added in the first language layers when its tokens are prefilled.
Knows nothing of storage, queueing or the UI.
"""

from __future__ import annotations

from pathlib import Path

from assistant.families.base import Family
from assistant.families.demo_parts import padded_vocab, qwen2_tokenizer, save_demo
from assistant.families.qwen_reuse import VISION_INPUTS, QwenVisionReuse, vision_output
from assistant.families.video_inputs import qwen_vision_kwargs
from domain.types import MediaKind

# Bump when the builder changes, so a cached demo checkpoint is rebuilt.
DEMO_SEED = 3008

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
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
]
# What Qwen3VLProcessor reads off the tokenizer.
MODALITY_TOKENS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}

# The chat template of Qwen/Qwen3-VL-8B-Instruct, unchanged (5292 bytes, SHA-256 3636d0f0...a489e4,
# the template Qwen ships in Qwen/Qwen3-VL-8B-Instruct-GGUF).
QWEN3_VL_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' }}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {%- if message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content_item in message.content %}
                {%- if 'text' in content_item %}
                    {{- content_item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and message.content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# preprocessor_config.json and video_preprocessor_config.json of the published checkpoints:
# 16px patches merged 2x2, mean and std 0.5, images 65536..16777216 pixels, video frames 4096..25165824.
IMAGE_PROCESSOR = {
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}
VIDEO_PROCESSOR = {**IMAGE_PROCESSOR, "size": {"shortest_edge": 4096, "longest_edge": 25165824}}
CONTEXT_TOKENS = 262144  # max_position_embeddings of the published 4B and 8B configs


def build_demo(path: Path) -> None:
    """Write the tiny random Qwen3-VL checkpoint to `path`."""
    tokenizer = _tokenizer()
    # As the published generation_config.json: either end token stops, <|endoftext|> pads (and begins).
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    save_demo(path, "Qwen3VLForConditionalGeneration", _config(tokenizer), DEMO_SEED, _processor(tokenizer),
              ("<|im_end|>", "<|endoftext|>"), pad_id=pad, bos_id=pad)


def _tokenizer():
    return qwen2_tokenizer(ADDED_TOKENS, MODALITY_TOKENS, model_max_length=262144)


def _processor(tokenizer):
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**IMAGE_PROCESSOR),
        video_processor=Qwen3VLVideoProcessor(**VIDEO_PROCESSOR),
        tokenizer=tokenizer,
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )


def _config(tokenizer):
    from transformers import Qwen3VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token, _ in ADDED_TOKENS}
    text = 64
    return Qwen3VLConfig(
        text_config={
            "vocab_size": padded_vocab(tokenizer),
            "hidden_size": text,
            "intermediate_size": 128,
            # One language layer per DeepStack level, as the published 36 layers take 3 levels in 0..2.
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "hidden_act": "silu",
            "attention_bias": False,
            "max_position_embeddings": CONTEXT_TOKENS,
            "rms_norm_eps": 1e-6,
            # Interleaved T/H/W sections in the published 24:20:20 proportion, summing to head_dim / 2.
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [6, 5, 5],
                "mrope_interleaved": True,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 4,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "hidden_act": "gelu_pytorch_tanh",
            "in_channels": 3,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,  # the published 48x48 learned grid, resampled per image
            "deepstack_visual_indexes": [0, 1, 2],  # three intermediate blocks, as the published [8, 16, 24] of 27
            "out_hidden_size": text,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        # Separate head (as the 8B): zeroing head rows must leave the embeddings alone.
        tie_word_embeddings=False,
    )


class Qwen3VLReuse(QwenVisionReuse):
    """Interleaved 3-D positions; each image's or video's DeepStack levels kept with its features and added in the
    first layers."""

    def positions(self, inner, inputs):
        return inner.get_rope_index(
            inputs["input_ids"], inputs["mm_token_type_ids"], inputs.get("image_grid_thw"), inputs.get("video_grid_thw"),
            inputs["attention_mask"],
        )

    def encode(self, inner, inputs, kind: str, j: int, float_dtype):
        """An item's merged features and each DeepStack level's, kept together: (levels, tokens, hidden)."""
        if kind not in VISION_INPUTS:
            return super().encode(inner, inputs, kind, j, float_dtype)
        import torch

        output = vision_output(inner, inputs, kind, j, float_dtype)
        levels = getattr(output, "deepstack_features", None)
        if levels:
            return torch.stack([output.pooler_output[0], *(level[0] for level in levels)])
        return output.pooler_output[0]

    def prefill(self, inner, segment) -> None:
        """The language model adds each item's levels to its tokens' hidden states in the first layers: where the
        segment's image and video tokens are, and their levels in order."""
        if not segment.levels:
            inner(**segment.args)
            return
        import torch

        embeds = segment.args["inputs_embeds"]
        where = torch.zeros(segment.text_ids.shape, dtype=torch.bool, device=segment.text_ids.device)
        ordered = []
        for block_start, block_end, *_ in segment.blocks:
            if block_start in segment.levels:
                where[0, block_start - segment.start : block_end - segment.start] = True
                ordered.append(segment.levels[block_start])
        levels = torch.cat(ordered, dim=1).to(embeds.device, embeds.dtype)  # (levels, tokens of every item, hidden)
        inner.language_model(**segment.args, visual_pos_masks=where, deepstack_visual_embeds=list(levels))


FAMILY = Family(
    name="qwen3-vl", title="Qwen3-VL", accepts=frozenset({MediaKind.IMAGE, MediaKind.VIDEO}),
    context_tokens=CONTEXT_TOKENS,
    model_types=("qwen3_vl",),
    model_class="Qwen3VLForConditionalGeneration",
    # The vision tower with its merger and DeepStack mergers, and the head, stay in full precision.
    unquantized=("model.visual", "lm_head"),
    build_demo=build_demo,
    reuse=Qwen3VLReuse(),
    processor_kwargs=qwen_vision_kwargs,
)
