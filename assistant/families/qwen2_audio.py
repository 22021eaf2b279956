"""The Qwen2-Audio family (Qwen/Qwen2-Audio-7B-Instruct): text and audio in, text out.

Its demo checkpoint follows the published layout: a `qwen2_audio` config (Whisper-style audio
tower, linear projector, Qwen2 language model), `Qwen2AudioProcessor` with the published
WhisperFeatureExtractor settings, the published chat template and special tokens. Weights are
random and the vocabulary is a small BPE trained on the spot. Across turns (`Qwen2AudioReuse`), positions are
plain 1-D ones and each clip goes through the tower and projector as its forward would merge it. Knows nothing of
storage or the UI.
"""

from __future__ import annotations

from pathlib import Path

from assistant.families.base import Family
from assistant.families.demo_parts import padded_vocab, qwen2_tokenizer, save_demo
from assistant.families.reuse_contract import ReuseContract
from domain.types import MediaKind

# Bump when the builder changes, so a cached demo checkpoint is rebuilt.
DEMO_SEED = 1234
CONTEXT_TOKENS = 8192  # max_position_embeddings of the published config
SAMPLING_RATE = 16_000  # what the published WhisperFeatureExtractor expects

# Special tokens in the order (and so the relative ids) of the published tokenizer: 151643..151648.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
MODALITY_TOKENS = {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"}
END_OF_TURN = ("<|im_end|>", "<|endoftext|>")

# The chat template of Qwen/Qwen2-Audio-7B-Instruct, unchanged (transformers keeps the same text
# as Qwen2AudioProcessor.default_chat_template). It adds a default system turn when none is given.
QWEN2_AUDIO_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content or message['type'] == 'audio' or content['type'] == 'audio' %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% endif %}"
)


def build_demo(path: Path) -> None:
    """Write a tiny random Qwen2-Audio checkpoint (config, weights, processor) to `path`."""
    tokenizer = qwen2_tokenizer(SPECIAL_TOKENS, MODALITY_TOKENS, model_max_length=CONTEXT_TOKENS)
    # <|im_end|> ends a turn as in the published generation_config.json; <|endoftext|> pads, and stops too.
    save_demo(path, "Qwen2AudioForConditionalGeneration", _build_config(tokenizer), DEMO_SEED,
              _build_processor(tokenizer), END_OF_TURN, pad_id=tokenizer.pad_token_id)


def _build_processor(tokenizer):
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    # The published preprocessor_config.json: 128 mel bins, 16 kHz, 30 s windows, hop 160, n_fft 400.
    feature_extractor = WhisperFeatureExtractor(
        feature_size=128,
        sampling_rate=SAMPLING_RATE,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
        padding_value=0.0,
        return_attention_mask=True,
    )
    return Qwen2AudioProcessor(
        feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=QWEN2_AUDIO_CHAT_TEMPLATE
    )


def _build_config(tokenizer):
    from transformers import Qwen2AudioConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    return Qwen2AudioConfig(
        audio_config={
            "model_type": "qwen2_audio_encoder",
            "d_model": 32,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "num_mel_bins": 128,
            "max_source_positions": 1500,  # 30 s of 10 ms frames after the stride-2 conv, as published
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": padded_vocab(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": CONTEXT_TOKENS,
            "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "tie_word_embeddings": False,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        audio_token_index=ids["<|AUDIO|>"],
    )


class Qwen2AudioReuse(ReuseContract):
    """1-D positions (the defaults); each clip through the audio tower and projector."""

    media_inputs = ("input_features", "feature_attention_mask")

    def encode(self, inner, inputs, kind: str, j: int, float_dtype):
        """Qwen2-Audio merges audio inside its forward and has no get_audio_features: the same steps for one clip
        (tower over the valid frames, projector), cut to the tokens its placeholder run holds."""
        if kind != "audio":
            return super().encode(inner, inputs, kind, j, float_dtype)
        import torch
        from transformers.masking_utils import create_bidirectional_mask

        features = inputs["input_features"][j : j + 1].to(float_dtype)
        mask = inputs["feature_attention_mask"][j : j + 1]
        tower = inner.audio_tower
        feature_lengths, output_lengths = tower._get_feat_extract_output_lengths(mask.sum(-1))
        frames = (features.shape[-1] - 2) // 2 + 1
        valid = (torch.arange(frames, device=features.device) < feature_lengths.to(features.device).unsqueeze(1)).long()
        dummy = torch.zeros((1, frames, 1), dtype=features.dtype, device=features.device)
        attention = create_bidirectional_mask(config=tower.config, inputs_embeds=dummy, attention_mask=valid)
        hidden = tower(features, attention_mask=attention).last_hidden_state
        return inner.multi_modal_projector(hidden)[0, : int(output_lengths[0])]


FAMILY = Family(
    name="qwen2-audio",
    title="Qwen2-Audio",
    accepts=frozenset({MediaKind.AUDIO}),
    context_tokens=CONTEXT_TOKENS,
    # The feature extractor pads or cuts every clip to 30 s (3000 mel frames, 750 audio tokens).
    audio_window_s=30.0,
    model_types=("qwen2_audio",),
    model_class="Qwen2AudioForConditionalGeneration",
    # transformers 5.x matches these by module path; lm_head is named because a list replaces the defaults.
    unquantized=("model.audio_tower", "model.multi_modal_projector", "lm_head"),
    build_demo=build_demo,
    reuse=Qwen2AudioReuse(),
    # Qwen2AudioProcessor has no image part; the rate is passed so a wrong one raises instead of
    # silently producing wrong features.
    processor_kwargs=lambda images, audios, videos, sounds=None: {"audio": audios or None, "sampling_rate": SAMPLING_RATE},
)
