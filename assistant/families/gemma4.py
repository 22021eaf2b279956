"""The Gemma 4 family (google/gemma-4-E2B-it, gemma-4-E4B-it): text, images, audio and video in, text out.

Its demo checkpoint follows the published layout: a `gemma4` config (vision tower, audio tower,
their embedders, and the language model with per-layer embeddings and shared KV layers),
`Gemma4Processor` with the published image-processor, feature-extractor and video-processor
settings, the published chat template and Gemma 4's special tokens (turn, channel, tool, and the
image/audio soft and boundary tokens) in a GemmaTokenizer. Weights are random and the vocabulary
is a small byte-fallback BPE trained on the spot. Across turns (`Gemma4Reuse`), positions are plain 1-D ones,
the prefill gets per-layer embeddings of the token ids (and every token's type where image tokens attend both
ways), earlier media are rewritten with the begin/end tokens the processor adds, and a model whose every token
attends both ways keeps nothing. Knows nothing of storage or the UI.
"""

from __future__ import annotations

import json
from pathlib import Path

from assistant.families.base import Family
from assistant.families.demo_parts import CORPUS, DEMO_VOCAB_SIZE, padded_vocab, save_demo
from assistant.families.reuse_contract import ReuseContract
from assistant.families.video_inputs import sampled_kwargs
from domain.types import MediaKind

# Bump when the builder changes, so a cached demo checkpoint is rebuilt.
DEMO_SEED = 1234
CONTEXT_TOKENS = 131_072  # max_position_embeddings of the published E2B and E4B configs

# Gemma's fixed head of the vocabulary (pad 0, eos 1, bos 2, unk 3, mask 4), then the control
# tokens, then the 256 byte-fallback tokens; the multimodal tokens come after the learned merges,
# as in the published vocabulary (<|image> 255999 ... <|video|> 258884).
HEAD_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
CONTROL_TOKENS = [
    "<|think|>",
    "<|channel>",
    "<channel|>",
    "<|turn>",
    "<turn|>",
    "<|tool>",
    "<tool|>",
    "<|tool_call>",
    "<tool_call|>",
    "<|tool_response>",
    "<tool_response|>",
    '<|"|>',
]
MULTIMODAL_TOKENS = ["<|image>", "<|audio>", "<|image|>", "<|audio|>", "<image|>", "<audio|>", "<|video|>"]
# The named special tokens of the published tokenizer_config.json; Gemma4Processor reads these.
NAMED_TOKENS = {
    "image_token": "<|image|>",
    "boi_token": "<|image>",
    "eoi_token": "<image|>",
    "audio_token": "<|audio|>",
    "boa_token": "<|audio>",
    "eoa_token": "<audio|>",
    "sot_token": "<|turn>",
    "eot_token": "<turn|>",
    "soc_token": "<|channel>",
    "eoc_token": "<channel|>",
    "think_token": "<|think|>",
    "escape_token": '<|"|>',
    "str_token": "<|tool_response>",
    "etr_token": "<tool_response|>",
    "stc_token": "<|tool_call>",
    "etc_token": "<tool_call|>",
    "std_token": "<|tool>",
    "etd_token": "<tool|>",
}
# The published generation_config.json stops on <eos>, <turn|> and <|tool_response>.
END_OF_TURN = ("<eos>", "<turn|>", "<|tool_response>")

# The chat template of google/gemma-4-E2B-it and gemma-4-E4B-it (the revision that also reads a system message
# given as a list of text parts), rebuilt offline from public copies: a published Gemma 4 template matched by
# size and md5, less the three lines that open an empty thought channel after the generation prompt, which the
# E2B/E4B template does not have (compared by eye with a copy labelled E4B, not by checksum). 17 KB of Jinja,
# kept beside this module.
CHAT_TEMPLATE_FILE = Path(__file__).with_name("gemma4_chat_template.jinja")


def build_demo(path: Path) -> None:
    """Write a tiny random Gemma 4 checkpoint (config, weights, processor) to `path`."""
    tokenizer = _train_tokenizer()
    processor = _build_processor(tokenizer)  # adds nothing: <|video|> is already in the vocabulary
    # The published head is tied to the embeddings; the demo config unties it, so zeroing end rows leaves inputs alone.
    save_demo(path, "Gemma4ForConditionalGeneration", _build_config(tokenizer), DEMO_SEED, processor, END_OF_TURN,
              pad_id=tokenizer.pad_token_id, bos_id=tokenizer.bos_token_id)


def _train_tokenizer():
    """A GemmaTokenizer over a byte-fallback BPE trained on the demo corpus, Gemma's special tokens included."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    # The same normalizer and pre-tokenizer as GemmaTokenizer builds around its vocabulary.
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    fixed = HEAD_TOKENS + CONTROL_TOKENS + [f"<0x{byte:02X}>" for byte in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=DEMO_VOCAB_SIZE, special_tokens=fixed, show_progress=False)
    bpe.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab = dict(state["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    for token in MULTIMODAL_TOKENS:
        vocab.setdefault(token, len(vocab))
    return GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        add_bos_token=False,  # the chat template writes <bos>
        padding_side="left",
        extra_special_tokens=NAMED_TOKENS,
    )


def _build_processor(tokenizer):
    from transformers import Gemma4AudioFeatureExtractor, Gemma4ImageProcessor, Gemma4Processor, Gemma4VideoProcessor

    # The published settings: 16 px patches pooled 3x3 into at most 280 soft tokens per image,
    # pixels scaled in the model (no normalisation); 128-bin log-mel audio at 16 kHz, at most 30 s
    # (750 soft tokens, 40 ms each) per clip.
    image_processor = Gemma4ImageProcessor(
        image_seq_length=280, do_normalize=False, max_soft_tokens=280, pooling_kernel_size=3
    )
    return Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(),
        image_processor=image_processor,
        video_processor=Gemma4VideoProcessor(),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE_FILE.read_text(encoding="utf-8"),
        image_seq_length=280,
    )


def _build_config(tokenizer):
    from transformers import Gemma4Config

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in HEAD_TOKENS + MULTIMODAL_TOKENS}
    vocab_size = padded_vocab(tokenizer)
    text = 64
    return Gemma4Config(
        text_config={
            "vocab_size": vocab_size,
            "vocab_size_per_layer_input": vocab_size,
            "hidden_size": text,
            "hidden_size_per_layer_input": 64,  # see the head sizes below
            "intermediate_size": 2 * text,
            "num_hidden_layers": 4,
            # E2B's shape in small: sliding and global layers, the last ones reusing earlier KV caches,
            # double-wide MLPs there, and a final logit soft-cap.
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            "num_kv_shared_layers": 2,
            "use_double_wide_mlp": True,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            # bitsandbytes' CPU nf4 kernel needs each quantized projection's rows in multiples of 32
            # and its columns in multiples of 64, hence these head sizes and the per-layer width.
            "head_dim": 32,
            "global_head_dim": 64,
            "sliding_window": 512,
            "final_logit_softcapping": 30.0,
            "max_position_embeddings": CONTEXT_TOKENS,
            "tie_word_embeddings": False,
            "pad_token_id": ids["<pad>"],
            "eos_token_id": ids["<eos>"],
            "bos_token_id": ids["<bos>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "global_head_dim": 16,
            "patch_size": 16,  # must match the image processor
            "pooling_kernel_size": 3,
            "default_output_length": 280,
            "use_clipped_linears": True,
        },
        audio_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            # The first conv keeps 128 channels: the projection after the two convs reads
            # channels[0] // 4 as the 32 mel bins left of 128.
            "subsampling_conv_channels": [128, 8],
            "output_proj_dims": 32,
        },
        boi_token_id=ids["<|image>"],
        eoi_token_id=ids["<image|>"],
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        boa_token_id=ids["<|audio>"],
        eoa_token_index=ids["<audio|>"],
        audio_token_id=ids["<|audio|>"],
        tie_word_embeddings=False,
    )


class Gemma4Reuse(ReuseContract):
    """1-D positions (the defaults); per-layer embeddings of the token ids in the prefill; media wrapped in their
    begin/end tokens by the processor. Its sliding-window layers keep every token (assistant/reuse.py), so the cache
    can be cut anywhere."""

    media_inputs = (
        "pixel_values", "image_position_ids", "input_features", "input_features_mask",
        "pixel_values_videos", "video_position_ids", "num_frames_per_video",
    )  # fmt: skip

    def supports(self, model) -> bool:
        """Not where every token attends both ways (`use_bidirectional_attention="all"`): a cached token would
        depend on later ones."""
        return getattr(model.config.get_text_config(), "use_bidirectional_attention", None) != "all"

    def encode(self, inner, inputs, kind: str, j: int, float_dtype):
        if kind == "image":  # one row of patches per image
            output = inner.get_image_features(inputs["pixel_values"][j : j + 1].to(float_dtype), inputs["image_position_ids"][j : j + 1])
            return output.pooler_output[0]
        if kind == "video":  # its frames' rows of patches, counted per video
            counts = inputs["num_frames_per_video"]
            first, frames = int(counts[:j].sum()), int(counts[j])
            rows = slice(first, first + frames)
            output = inner.get_video_features(
                inputs["pixel_values_videos"][rows].to(float_dtype), inputs["video_position_ids"][rows], num_frames_per_video=counts[j : j + 1]
            )
            return output.pooler_output[0]
        if kind == "audio":  # the tokens of the clip's valid frames
            output = inner.get_audio_features(inputs["input_features"][j : j + 1].to(float_dtype), inputs["input_features_mask"][j : j + 1])
            return output.pooler_output[output.attention_mask.to(output.pooler_output.device)]
        return super().encode(inner, inputs, kind, j, float_dtype)

    def prefill(self, inner, segment) -> None:
        """Per-layer embeddings of the token ids, padding where the media are, as its forward makes them; and where
        its image tokens see each other both ways, every token's type from the start of the prompt (the mask finds
        each image block by its place in the whole sequence)."""
        text_config = inner.config.get_text_config()
        if not getattr(text_config, "hidden_size_per_layer_input", None):
            inner(**segment.args)
            return
        args = dict(segment.args)
        if getattr(text_config, "use_bidirectional_attention", None) == "vision":
            args["mm_token_type_ids"] = segment.inputs["mm_token_type_ids"][:, : segment.end]
        inner(**args, per_layer_inputs=inner.language_model.get_per_layer_inputs(segment.text_ids, None))

    def wrap(self, processor, kind: str) -> tuple[str, str]:
        if kind == "image":
            return processor.boi_token, processor.eoi_token
        if kind == "audio":
            return processor.boa_token, processor.eoa_token
        return "", ""


FAMILY = Family(
    name="gemma4",
    title="Gemma 4",
    accepts=frozenset({MediaKind.IMAGE, MediaKind.AUDIO, MediaKind.VIDEO}),
    context_tokens=CONTEXT_TOKENS,
    # The published video processor takes 32 frames of a clip (70 soft tokens each, timestamped): 1 a second up to 32.
    video_fps=1.0,
    video_max_frames=32,
    processor_kwargs=sampled_kwargs,
    # The feature extractor cuts clips at 480,000 samples (30 s, 750 soft tokens).
    audio_window_s=30.0,
    model_types=("gemma4",),
    model_class="Gemma4ForConditionalGeneration",
    # transformers 5.x matches these by module path; lm_head is named because a list replaces the defaults.
    unquantized=("model.vision_tower", "model.embed_vision", "model.audio_tower", "model.embed_audio", "lm_head"),
    build_demo=build_demo,
    reuse=Gemma4Reuse(),
)
