"""Weight memory of every supported family's published sizes, in bf16 and in our nf4 layout.

Builds the published shapes on the meta device (no weights, no download, no GPU) and counts bytes:
nf4 packs quantized Linear weights at 4 bits plus one absmax per 64-weight block (double-quantized:
8 bits per block plus an fp32 per 256 blocks); what the family keeps unquantized (towers, projectors,
embeddings, lm_head) stays bf16. Prints a table (the README's model table comes from it); the ratio is
against bf16 measured in the same run.
Run: .venv/bin/python bench/weights_memory.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from assistant.families import family_named  # noqa: E402

NF4_BITS_PER_WEIGHT = 4 + 8 / 64 + 32 / (64 * 256)
QWEN_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16}
GEMMA_ROPE = {
    "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1e6},
    "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
}
GEMMA_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=16, num_attention_heads=12,
                    num_key_value_heads=12, head_dim=64, global_head_dim=64, default_output_length=280,
                    pooling_kernel_size=3, use_clipped_linears=True)
GEMMA_E2B = dict(hidden_size=1536, hidden_size_per_layer_input=256, intermediate_size=6144, num_hidden_layers=35,
                 layer_types=(["sliding_attention"] * 4 + ["full_attention"]) * 7, num_attention_heads=8,
                 num_key_value_heads=1, num_global_key_value_heads=None, attention_k_eq_v=False,
                 num_kv_shared_layers=20, use_double_wide_mlp=True, final_logit_softcapping=30.0,
                 rope_parameters=GEMMA_ROPE)
GEMMA_E4B = {**GEMMA_E2B, "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 42,
             "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 7, "num_key_value_heads": 2,
             "global_head_dim": 512, "num_kv_shared_layers": 18, "use_double_wide_mlp": False}
QWEN3_VL_TEXT = dict(num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                     max_position_embeddings=262144,
                     rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                      "mrope_interleaved": True})

# family -> size -> (config class, config arguments, published context length)
SIZES = {
    "qwen2.5-omni": {
        "7B": ("Qwen2_5OmniThinkerConfig", {"vision_config": {**QWEN_VISION, "out_hidden_size": 3584}}, 32768),
        "3B": ("Qwen2_5OmniThinkerConfig", {
            "text_config": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                            "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936,
                            "tie_word_embeddings": True},
            "audio_config": {"output_dim": 2048},
            "vision_config": {**QWEN_VISION, "out_hidden_size": 2048}}, 32768),
    },
    "gemma4": {
        "E2B": ("Gemma4Config", {"text_config": GEMMA_E2B, "vision_config": GEMMA_VISION, "audio_config": {}}, 131072),
        "E4B": ("Gemma4Config", {"text_config": GEMMA_E4B, "vision_config": GEMMA_VISION, "audio_config": {}}, 131072),
    },
    "qwen2.5-vl": {
        "3B": ("Qwen2_5_VLConfig", {
            "text_config": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                            "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936,
                            "tie_word_embeddings": True},
            "vision_config": {**QWEN_VISION, "out_hidden_size": 2048, "fullatt_block_indexes": [7, 15, 23, 31]}}, 128000),
        "7B": ("Qwen2_5_VLConfig", {
            "text_config": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                            "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064},
            "vision_config": {**QWEN_VISION, "out_hidden_size": 3584, "fullatt_block_indexes": [7, 15, 23, 31]}}, 128000),
    },
    "qwen3-vl": {
        "4B": ("Qwen3VLConfig", {
            "text_config": {**QWEN3_VL_TEXT, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
                            "tie_word_embeddings": True},
            "vision_config": {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                              "out_hidden_size": 2560, "deepstack_visual_indexes": [5, 11, 17]},
            "tie_word_embeddings": True}, 262144),
        "8B": ("Qwen3VLConfig", {
            "text_config": {**QWEN3_VL_TEXT, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36},
            "vision_config": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                              "out_hidden_size": 4096, "deepstack_visual_indexes": [8, 16, 24]}}, 262144),
    },
    "qwen2-audio": {
        "7B": ("Qwen2AudioConfig", {
            "audio_config": {"model_type": "qwen2_audio_encoder"},
            "text_config": {"model_type": "qwen2", "vocab_size": 156032, "hidden_size": 4096, "intermediate_size": 11008,
                            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                            "max_position_embeddings": 8192, "tie_word_embeddings": False},
            "audio_token_index": 151646}, 8192),
    },
}


def measure(family_name: str, config_class: str, arguments: dict) -> tuple[float, float, float]:
    family = family_named(family_name)
    config = getattr(transformers, config_class)(**arguments)
    if family_name == "qwen2.5-omni":
        model_class = transformers.Qwen2_5OmniThinkerForConditionalGeneration  # the Thinker alone is loaded
    else:
        model_class = getattr(transformers, family.model_class)
    with torch.device("meta"):
        model = model_class(config)
    quantized = 0
    for name, module in model.named_modules():
        kept = any(name == p or name.startswith(p + ".") for p in family.unquantized)
        if isinstance(module, torch.nn.Linear) and not kept:
            quantized += module.weight.numel()
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    bf16 = total * 2
    nf4 = (total - quantized) * 2 + quantized * NF4_BITS_PER_WEIGHT / 8
    return total / 1e9, bf16 / 2**30, nf4 / 2**30


# Qwen2.5-Omni's own voice, loaded beside the Thinker with --speech on (auto on a GPU): the Talker, of the shape in the
# published config.json as recalled here (hidden 896, 24 layers; not read from the file: check it), taking the
# Thinker's hidden size; token2wav at transformers' defaults, which are the published DiT and BigVGAN.
TALKER = {"hidden_size": 896, "intermediate_size": 18944, "num_hidden_layers": 24, "num_attention_heads": 12,
          "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 8448}


def measure_voice(thinker_hidden: int) -> tuple[float, float, float]:
    """(parameters in billions, GiB in bf16 as loaded, GiB were the Talker's Linear layers in nf4) of Talker and token2wav."""
    config = transformers.Qwen2_5OmniTalkerConfig(**TALKER, embedding_size=thinker_hidden)
    with torch.device("meta"):
        talker = transformers.Qwen2_5OmniTalkerForConditionalGeneration(config)
        token2wav = transformers.Qwen2_5OmniToken2WavModel(transformers.Qwen2_5OmniToken2WavConfig())
    linear = sum(m.weight.numel() for m in talker.modules() if isinstance(m, torch.nn.Linear))
    total = sum(p.numel() for model in (talker, token2wav) for p in model.parameters())
    # token2wav runs in fp32, as transformers keeps it (its diffusion sampling in bf16 is audibly worse).
    vocoder = sum(p.numel() for p in token2wav.parameters())
    loaded = (total - vocoder) * 2 + vocoder * 4
    return total / 1e9, loaded / 2**30, (loaded - linear * (2 - NF4_BITS_PER_WEIGHT / 8)) / 2**30


def main() -> None:
    print(f"{'family':13} {'size':5} {'params':>8} {'bf16 GiB':>9} {'nf4 GiB':>8} {'nf4/bf16':>9} {'context':>8}")
    for family_name, sizes in SIZES.items():
        for size, (config_class, arguments, context) in sizes.items():
            params, bf16, nf4 = measure(family_name, config_class, arguments)
            print(f"{family_name:13} {size:5} {params:7.2f}B {bf16:9.2f} {nf4:8.2f} {nf4 / bf16:9.2f} {context:8}")
    print("\nQwen2.5-Omni's own voice (Talker bf16 + token2wav fp32, loaded unquantized), and were the Talker in nf4:")
    for size, hidden in (("7B", 3584), ("3B", 2048)):
        params, loaded, talker_nf4 = measure_voice(hidden)
        print(f"talker+token2wav {size}: {params:.2f}B parameters, {loaded:.2f} GiB as loaded, {talker_nf4:.2f} GiB with an nf4 Talker")


if __name__ == "__main__":
    main()
