"""Weight memory of the real-size Qwen2.5-Omni Thinkers (7B, 3B) in bf16 and in our nf4 layout.

Builds the published shapes on the meta device (no weights, no download, no GPU) and counts bytes:
nf4 packs quantized Linear weights at 4 bits plus one absmax per 64-weight block (double-quantized:
8 bits per block plus an fp32 per 256 blocks); the audio/vision towers, embeddings and lm_head stay
bf16. Prints a table; the ratio is against bf16 measured in the same run.
Run: .venv/bin/python bench/weights_memory.py
"""

from __future__ import annotations

import torch
from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

from assistant.loader import UNQUANTIZED_MODULES

# The published vision tower (the config class default width, 3584, is not what was released).
VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16}
SIZES = {
    # Published Qwen2.5-Omni-7B thinker (otherwise the config class defaults).
    "7B": {"vision_config": {**VISION, "out_hidden_size": 3584}},
    # Published Qwen2.5-Omni-3B thinker.
    "3B": {
        "text_config": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                        "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936,
                        "tie_word_embeddings": True},
        "audio_config": {"output_dim": 2048},
        "vision_config": {**VISION, "out_hidden_size": 2048},
    },
}
NF4_BITS_PER_WEIGHT = 4 + 8 / 64 + 32 / (64 * 256)


def measure(name: str, overrides: dict) -> tuple[float, float, float]:
    config = Qwen2_5OmniThinkerConfig(**overrides)
    with torch.device("meta"):
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    total = quantized = 0
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(module_name.startswith(p) for p in UNQUANTIZED_MODULES):
            quantized += module.weight.numel()
    seen = set()
    for parameter in model.parameters():
        if id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    bf16 = total * 2
    nf4 = (total - quantized) * 2 + quantized * NF4_BITS_PER_WEIGHT / 8
    return total / 1e9, bf16 / 2**30, nf4 / 2**30


def main() -> None:
    print(f"{'thinker':8} {'params':>8} {'bf16 GiB':>9} {'nf4 GiB':>8} {'nf4/bf16':>9}")
    for name, overrides in SIZES.items():
        params, bf16, nf4 = measure(name, overrides)
        print(f"{name:8} {params:7.2f}B {bf16:9.2f} {nf4:8.2f} {nf4 / bf16:9.2f}")


if __name__ == "__main__":
    main()
