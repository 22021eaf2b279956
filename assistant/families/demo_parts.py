"""What every family's demo checkpoint is built from: a small tokenizer trained offline, and the saving step."""

from __future__ import annotations

import json

DEMO_VOCAB_SIZE = 640  # learned entries before special tokens

CORPUS = """\
system user assistant You are a helpful assistant.
Hello! How can I help you today? What is in this picture? The picture shows a red car parked on a street.
What colour was the car in the first picture? It was red. The second image shows a blue sky over green hills.
Please describe the audio. The speaker asks a question about the weather. It will rain tomorrow afternoon.
Can you summarise this for me? Sure, here is a short summary of the main points, in three sentences.
Numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14. Punctuation: commas, full stops; question marks? Yes!
Café, naïve, façade, 東京, 😀 — unicode text appears in chats too, and it must never be split mid-character.
"""


def train_byte_bpe(special_tokens: list[str], vocab_size: int = DEMO_VOCAB_SIZE) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of a Qwen2-style byte-level BPE trained on CORPUS; special tokens appended in order."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    vocab = dict(state["vocab"])
    for token in special_tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def qwen2_tokenizer(
    special_tokens: list[str | tuple[str, bool]], extra_special_tokens: dict[str, str] | None = None, **kwargs
):
    """A Qwen2Tokenizer over the trained vocabulary, <|im_end|> ending turns, as the Qwen families use.

    Every listed token is an added token, so `<|im_start|>` is one id (as published), never split into bytes;
    a (token, special) pair gives the published "special" flag (False: kept by skip_special_tokens).
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    pairs = [(token, True) if isinstance(token, str) else token for token in special_tokens]
    vocab, merges = train_byte_bpe([token for token, _ in pairs])
    options = dict(
        unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768
    )
    options.update(kwargs)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, extra_special_tokens=extra_special_tokens or {}, **options)
    tokenizer.add_tokens([AddedToken(token, special=special, normalized=False) for token, special in pairs])
    return tokenizer


def padded_vocab(tokenizer, multiple: int = 64) -> int:
    """The embedding rows for a tokenizer, padded like the published checkpoints (152064 = 64 × 2376)."""
    return -(-len(tokenizer) // multiple) * multiple


def save_demo(
    path, model_class: str, config, seed: int, processor, end_tokens, pad_id: int, bos_id: int | None = None
) -> None:
    """Build `model_class` (a transformers class name) with random weights seeded by `seed`, and save it, made to
    talk until max_new_tokens, with its processor to `path`.

    Random weights end most answers within a few tokens; zeroing the end-of-turn rows of the (untied) head gives
    those tokens logit 0, below the best random logit (a final soft-cap keeps 0 at 0), so streaming and Stop
    stay visible. As in the published generation configs, any of `end_tokens` ends a turn.
    """
    from pathlib import Path

    import torch
    import transformers

    Path(path).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config).eval()
    end_ids = [processor.tokenizer.convert_tokens_to_ids(token) for token in end_tokens]
    with torch.no_grad():
        model.get_output_embeddings().weight[end_ids] = 0.0
    model.generation_config.eos_token_id = list(end_ids)
    model.generation_config.pad_token_id = pad_id
    if bos_id is not None:
        model.generation_config.bos_token_id = bos_id
    model.save_pretrained(path)
    processor.save_pretrained(path)
