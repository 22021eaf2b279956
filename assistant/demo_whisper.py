"""Build the tiny, randomly initialised Whisper checkpoint used by `--demo` and the tests.

openai-whisper's own `ModelDimensions`/`Whisper` classes, saved in its checkpoint format (a dict with
`dims` and `model_state_dict`) and loaded with `whisper.load_model(path)`, so the real transcription
code runs offline. Multilingual vocabulary (language detection runs), 80 mel bins like `base`. Its
transcripts are meaningless text.
"""

from __future__ import annotations

from pathlib import Path

DEMO_WHISPER_SEED = 4321
DEMO_WHISPER_NAME = "demo Whisper (random weights)"
# Greedy only: sampling at Whisper's fallback temperatures can meet all-masked logits in a random model, and one
# fixed answer per clip keeps the demo deterministic.
DEMO_WHISPER_OPTIONS = {"temperature": 0.0}
DIMENSIONS = dict(
    n_mels=80,
    n_audio_ctx=1500,  # 30 s of 10 ms frames, halved by the encoder's stride: fixed by Whisper's design
    n_audio_state=32,
    n_audio_head=2,
    n_audio_layer=1,
    n_vocab=51865,  # the multilingual tokenizer's size
    n_text_ctx=64,  # at most 32 tokens per 30 s window
    n_text_state=32,
    n_text_head=2,
    n_text_layer=1,
)


def ensure_demo_whisper(path: Path) -> Path:
    """The checkpoint file at `path`, built unless already there (written to a temporary name, then renamed)."""
    path = Path(path)
    if path.is_file():
        return path
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(DEMO_WHISPER_SEED)
    dims = ModelDimensions(**DIMENSIONS)
    model = Whisper(dims)
    tokenizer = whisper.tokenizer.get_tokenizer(True, num_languages=model.num_languages)
    with torch.no_grad():
        # The output layer is the token embedding (tied); zero rows give logit 0, below the best random logit,
        # so the random model says something instead of ending at once or calling every clip silence.
        for token in (tokenizer.eot, tokenizer.no_speech):
            model.decoder.token_embedding.weight[token] = 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"dims": DIMENSIONS, "model_state_dict": model.state_dict()}, partial)
    partial.replace(path)
    return path
