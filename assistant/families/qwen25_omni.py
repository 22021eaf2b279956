"""Qwen2.5-Omni (its Thinker: text, images, audio, videos with their sound), and the tiny random checkpoint `--demo` builds of it.

The checkpoint follows the published `Qwen/Qwen2.5-Omni-7B` layout (a `qwen2_5_omni` config with
thinker/talker/token2wav parts, `thinker.*` weight names, the real processor classes, the real chat
template and the same special tokens), so loading it runs the same `from_pretrained` path as the
real model. Its weights are random: its answers are meaningless. Across turns (`OmniReuse`), its 3-D rotary
positions are computed for the whole prompt from every image's grid and every clip's feature length, images go
through the vision tower by their rows of patches and clips through the audio tower. Knows nothing of storage or UI.
"""

from __future__ import annotations

from pathlib import Path

from assistant.families.base import Family
from assistant.families.demo_parts import padded_vocab, qwen2_tokenizer
from assistant.families.qwen_reuse import QwenVisionReuse, audio_features
from assistant.families.video_inputs import OMNI_FPS, omni_kwargs
from assistant.video import VIDEO_TOTAL_PIXELS
from domain.types import MediaKind

DEMO_SEED = 1234

# Special tokens in the order (and with the roles) of the published Qwen2.5-Omni tokenizer.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|vision_pad|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
]
MODALITY_TOKENS = {
    "image_token": "<|IMAGE|>",
    "audio_token": "<|AUDIO|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
}

# The chat template shipped with Qwen/Qwen2.5-Omni-7B (chat_template.json), unchanged.
QWEN25_OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}"
    "<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

def build_demo(path: Path) -> None:
    import torch

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen2_tokenizer(SPECIAL_TOKENS, MODALITY_TOKENS)
    processor = _build_processor(tokenizer)
    config = _build_config(tokenizer)

    from transformers import Qwen2_5OmniForConditionalGeneration

    torch.manual_seed(DEMO_SEED)
    model = Qwen2_5OmniForConditionalGeneration(config).eval()
    # Random weights end most answers within a few tokens; zeroing the end-of-turn rows of the head
    # gives those tokens logit 0, below the best random logit, so the demo talks until
    # max_new_tokens and streaming and Stop are visible.
    with torch.no_grad():
        for token in ("<|im_end|>", "<|endoftext|>"):
            model.thinker.lm_head.weight[tokenizer.convert_tokens_to_ids(token)] = 0.0
        # Likewise the Talker's end codes: it speaks each sentence for as long as the sentence may take.
        for code in (config.talker_config.tts_codec_end_token_id, config.talker_config.tts_codec_pad_token_id):
            model.talker.codec_head.weight[code] = 0.0
    model.save_pretrained(path)
    processor.save_pretrained(path)
    _save_speakers(path, tokenizer, config)


def _speech_ids(tokenizer) -> dict[str, int]:
    """Ids past the tokenizer's, in the padded embedding rows, for what the published checkpoint keeps there: the
    Talker's text pad/start/end tokens and each speaker's start token."""
    first = len(tokenizer)
    names = ("text_pad", "text_start", "text_end", *SPEAKERS)
    assert first + len(names) <= padded_vocab(tokenizer)
    return {name: first + i for i, name in enumerate(names)}


# The published speakers (spk_dict.pt of Qwen/Qwen2.5-Omni-7B); the demo's are random, shaped like them.
SPEAKERS = ("Chelsie", "Ethan")


def _save_speakers(path: Path, tokenizer, config) -> None:
    """spk_dict.pt as published: per speaker its start token, its voice embedding and a reference mel."""
    import torch

    ids = _speech_ids(tokenizer)
    dit = config.token2wav_config.dit_config
    generator = torch.Generator().manual_seed(DEMO_SEED)
    speakers = {
        name: {
            "bos_token": ids[name],
            "cond": torch.randn(1, dit.enc_emb_dim, generator=generator),
            "ref_mel": torch.randn(1, 40, dit.mel_dim, generator=generator),
        }
        for name in SPEAKERS
    }
    torch.save(speakers, path / "spk_dict.pt")


def _build_processor(tokenizer):
    from transformers import (
        Qwen2_5OmniProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        WhisperFeatureExtractor,
    )

    return Qwen2_5OmniProcessor(
        # The published preprocessor settings: 14px patches merged 2x2, 3136..12845056 pixels.
        image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2),
        video_processor=Qwen2VLVideoProcessor(),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000),
        tokenizer=tokenizer,
        chat_template=QWEN25_OMNI_CHAT_TEMPLATE,
    )


def _build_config(tokenizer):
    from transformers import Qwen2_5OmniConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    speech = _speech_ids(tokenizer)
    vocab_size = padded_vocab(tokenizer)
    text = 64
    thinker = {
        "audio_config": {
            "d_model": 32,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "num_mel_bins": 128,
            "max_source_positions": 1500,
            "n_window": 100,
            "output_dim": text,
        },
        "vision_config": {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "out_hidden_size": text,
        },
        "text_config": {
            "vocab_size": vocab_size,
            "hidden_size": text,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "tie_word_embeddings": False,
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        "audio_token_index": ids["<|AUDIO|>"],
        "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"],
        "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"],
        "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"],
        "user_token_id": tokenizer.convert_tokens_to_ids("user"),
        "position_id_per_seconds": 25,
        "seconds_per_chunk": 2,
        "bos_token_id": ids["<|im_start|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    talker = {
        "vocab_size": 128,
        "embedding_size": text,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        "audio_token_index": ids["<|AUDIO|>"],
        "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"],
        "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"],
        "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"],
        "tts_text_pad_token_id": speech["text_pad"],
        "tts_text_start_token_id": speech["text_start"],
        "tts_text_end_token_id": speech["text_end"],
        "tts_codec_start_token_id": 120,
        "tts_codec_end_token_id": 121,
        "tts_codec_pad_token_id": 122,
        "tts_codec_mask_token_id": 123,
    }
    token2wav = {
        "dit_config": {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "head_dim": 16,
            "ff_mult": 2,
            "emb_dim": 16,
            "num_embeds": 128,
            "mel_dim": 80,
            "enc_emb_dim": 16,
            "enc_dim": 16,
            "enc_channels": [16, 16, 16, 16, 48],
            "enc_attention_channels": 8,
            "enc_se_channels": 8,
            "look_ahead_layers": [1],
            "look_backward_layers": [0],
        },
        "bigvgan_config": {
            "mel_dim": 80,
            "upsample_initial_channel": 128,  # halved at each of the six upsamplings, as published (1536 → 24)
            "upsample_rates": [5, 3, 2, 2, 2, 2],
            "upsample_kernel_sizes": [11, 7, 4, 4, 4, 4],
        },
    }
    return Qwen2_5OmniConfig(
        thinker_config=thinker, talker_config=talker, token2wav_config=token2wav, enable_audio_output=True
    )


class OmniReuse(QwenVisionReuse):
    """Images and videos by grid, audio through its tower; the 3-D positions need every image's and video's grid and
    every clip's feature length, old ones included (kept by the incremental processor). A video heard with its sound
    track (`use_audio_in_video`) has its frames' and its sound's tokens interleaved in its placeholder; its encoder
    output is its frames' rows, then its sound's."""

    media_inputs = ("pixel_values", "pixel_values_videos", "input_features", "feature_attention_mask")
    video_seconds = "video_second_per_grid"

    def positions(self, inner, inputs):
        import torch

        sounds = inputs.get("video_sound_lengths")
        heard = sounds is not None and bool((sounds > 0).any())
        return inner.get_rope_index(
            inputs["input_ids"], inputs.get("image_grid_thw"), inputs.get("video_grid_thw"), inputs["attention_mask"],
            heard, _audio_lengths(inner.config, inputs, torch), inputs.get("video_second_per_grid"),
        )

    def encode(self, inner, inputs, kind: str, j: int, float_dtype):
        if kind == "audio":
            return audio_features(inner, inputs, j, float_dtype)
        frames = super().encode(inner, inputs, kind, j, float_dtype)
        if kind != "video" or "video_sound_lengths" not in inputs:
            return frames
        import torch

        # The feature rows: the new clips', then the sound tracks of the new videos that have one, in order.
        heard = [int(inputs["video_sound_lengths"][i]) > 0 for i in inputs["new_videos"]]
        if not heard[j]:
            return frames
        row = len(inputs["new_audios"]) + sum(heard[:j])
        return torch.cat([frames, audio_features(inner, inputs, row, float_dtype).to(frames.dtype)])

    def remember(self, fresh, kind: str, j: int) -> dict:
        if kind == "audio":
            return {"feature_length": int(fresh["feature_attention_mask"][j].sum())}
        facts = super().remember(fresh, kind, j)
        if kind == "video":
            # Which new videos came with their sound (their placeholders hold audio tokens), and where its features are.
            replaced = [o for o in fresh.get("text_replacement_offsets", [[]])[0]]
            heard = [MODALITY_TOKENS["audio_token"] in o["replacement"] for o in replaced if o["type"] == "video"]
            if j < len(heard) and heard[j]:
                row = sum(o["type"] == "audio" for o in replaced) + sum(heard[:j])
                facts["sound_length"] = int(fresh["feature_attention_mask"][row].sum())
        return facts

    def position_inputs(self, kind: str, remembered: list[dict]) -> dict:
        import torch

        if kind == "audio" and remembered:
            return {"audio_feature_lengths": torch.tensor([facts["feature_length"] for facts in remembered])}
        result = super().position_inputs(kind, remembered)
        if kind == "video" and remembered:
            result["video_sound_lengths"] = torch.tensor([facts.get("sound_length", 0) for facts in remembered])
        return result


def _audio_lengths(config, inputs, torch):
    """Every clip's and every heard video's sound track's feature length, in the order their tokens come."""
    clips, sounds = inputs.get("audio_feature_lengths"), inputs.get("video_sound_lengths")
    if sounds is None or not bool((sounds > 0).any()):
        return clips
    ids = inputs["input_ids"][0].tolist()
    clips, sounds = iter((clips if clips is not None else torch.zeros(0)).tolist()), iter(sounds.tolist())
    lengths = []
    for n, token in enumerate(ids[:-1]):
        if token == config.vision_start_token_id and ids[n + 1] in (config.video_token_id, config.audio_start_token_id):
            sound = next(sounds)  # a video, with its sound track where its tokens begin with the audio start
            if ids[n + 1] == config.audio_start_token_id:
                lengths.append(sound)
        elif token == config.audio_start_token_id and ids[n + 1] == config.audio_token_id:
            lengths.append(next(clips))
    return torch.tensor(lengths, dtype=torch.long)


def own_voice(model, processor):
    """The whole Omni model loaded: its Thinker writes the answers, its Talker speaks them."""
    from assistant.omni_talker import OmniTalker

    model.token2wav.float()  # as transformers keeps it: its diffusion sampling in bf16 is audibly worse
    return model.thinker, OmniTalker(model, processor)


FAMILY = Family(
    name="qwen2.5-omni",
    title="Qwen2.5-Omni",
    accepts=frozenset({MediaKind.IMAGE, MediaKind.AUDIO, MediaKind.VIDEO}),
    context_tokens=32768,  # the published Thinker's max_position_embeddings,
    # The published checkpoints hold the whole Omni model; without speech only its Thinker is loaded.
    model_types=("qwen2_5_omni", "qwen2_5_omni_thinker"),
    model_class="Qwen2_5OmniThinkerForConditionalGeneration",
    processor_class="Qwen2_5OmniProcessor",
    unquantized=("model.audio_tower", "model.visual", "lm_head"),
    # With speech on, the whole model: the Talker and token2wav stay unquantized (2.6 GB in bf16 for the 7B).
    speech_model_class="Qwen2_5OmniForConditionalGeneration",
    speech_unquantized=("thinker.model.audio_tower", "thinker.model.visual", "thinker.lm_head", "talker", "token2wav"),
    own_voice=own_voice,
    build_demo=build_demo,
    reuse=OmniReuse(),
    # A video's sound track is heard in the same item, interleaved with its frames two seconds at a time.
    processor_kwargs=omni_kwargs,
    video_model_inputs=(("use_audio_in_video", True),),
    # Its processor times every video at one rate (video_inputs.OMNI_FPS) and pairs frames with sound by it: all of a
    # clip at that rate, its frames sharing qwen-vl-utils' pixel budget; past 768 frames (qwen-vl-utils'
    # FPS_MAX_FRAMES, 384 s, only if --max-video-seconds allows) a clip is cut rather than sampled sparser.
    video_fps=OMNI_FPS,
    video_max_frames=768,
    video_total_pixels=VIDEO_TOTAL_PIXELS,
)
