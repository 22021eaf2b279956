"""Does background transcription delay the first token? Time to first token of an answer that hears a clip,
alone and while Whisper transcribes concurrently, in one run.

Models: a Qwen2.5-Omni Thinker with the demo's processor and towers but a wider language model (random
weights, about --lm-width wide and --lm-layers deep), and an openai-whisper model of the published `base`
shape with random weights (greedy decoding, as the demo's). On a CPU both compete for the same cores.
Run: .venv/bin/python bench/transcript_overlap.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from assistant.demo_model import ensure_demo_model  # noqa: E402
from assistant.engine import TransformersEngine  # noqa: E402
from assistant.engine_contract import EngineInfo  # noqa: E402
from assistant.families import family_named  # noqa: E402
from assistant.prompt import ModelInput  # noqa: E402

BASE = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=512, n_audio_head=8, n_audio_layer=6, n_vocab=51865,
            n_text_ctx=448, n_text_state=512, n_text_head=8, n_text_layer=6)


def build_engine(width: int, layers: int) -> TransformersEngine:
    from transformers import AutoConfig, AutoProcessor, Qwen2_5OmniThinkerForConditionalGeneration

    demo = ensure_demo_model(Path(tempfile.gettempdir()) / "assistant-bench-demo")
    config = AutoConfig.from_pretrained(demo).thinker_config
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = width, width * 4, layers
    text.num_attention_heads, text.num_key_value_heads = width // 64, 2
    text.layer_types = ["full_attention"] * layers
    text.head_dim = 64
    text.rope_parameters = {**text.rope_parameters, "mrope_section": [8, 12, 12]}
    config.audio_config.output_dim = config.vision_config.out_hidden_size = width
    torch.manual_seed(0)
    model = Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    info = EngineInfo(model=f"random Qwen2.5-Omni LM {width}x{layers}", quant="none", device="CPU")
    return TransformersEngine(model, AutoProcessor.from_pretrained(demo), info, family_named("qwen2.5-omni"),
                              max_new_tokens=8, generation_kwargs={"do_sample": False})


def first_token_s(engine, model_input, first_token: threading.Event | None = None) -> float:
    start = time.perf_counter()
    try:
        for _ in engine.stream(model_input, threading.Event()):
            return time.perf_counter() - start
        return time.perf_counter() - start
    finally:
        if first_token is not None:
            first_token.set()


def overlapped(engine, model_input, transcribe, repeats: int, gated: bool) -> tuple[float, float]:
    """(median first token s, median s until the transcript is done), Whisper starting with the answer or,
    gated as in the app (Transcriber.submit's not_before), at its first token."""
    firsts, transcripts = [], []
    for _ in range(repeats):
        first_token = threading.Event()

        def run():
            if gated:
                first_token.wait()
            transcribe()

        start = time.perf_counter()
        worker = threading.Thread(target=run)
        worker.start()  # the message was just saved
        firsts.append(first_token_s(engine, model_input, first_token))
        worker.join()
        transcripts.append(time.perf_counter() - start)
    return statistics.median(firsts), statistics.median(transcripts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lm-width", type=int, default=768)
    parser.add_argument("--lm-layers", type=int, default=12)
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import whisper
    from whisper.model import ModelDimensions, Whisper

    engine = build_engine(args.lm_width, args.lm_layers)
    torch.manual_seed(0)
    transcriber = Whisper(ModelDimensions(**BASE)).eval()
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(int(16000 * args.clip_seconds))).astype(np.float32)
    model_input = ModelInput([{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "What did I say?"}]}], [], [clip])

    def transcribe() -> float:
        start = time.perf_counter()
        whisper.transcribe(transcriber, clip, fp16=False, temperature=0.0, verbose=None)
        return time.perf_counter() - start

    first_token_s(engine, model_input)  # warm-up
    transcribe()
    alone = [first_token_s(engine, model_input) for _ in range(args.repeats)]
    whisper_alone = transcribe()
    a = statistics.median(alone)
    o, o_done = overlapped(engine, model_input, transcribe, args.repeats, gated=False)
    g, g_done = overlapped(engine, model_input, transcribe, args.repeats, gated=True)
    print(f"LM {engine.info.model}, {sum(p.numel() for p in engine.model.parameters()) / 1e6:.0f}M params; "
          f"Whisper base shape; clip {args.clip_seconds:.0f} s; {torch.get_num_threads()} threads")
    print(f"{'case':44} {'first token s':>13} {'ratio':>6} {'transcript done s':>18}")
    print(f"{'answer alone':44} {a:13.3f} {1.0:6.2f} {'':>18}")
    print(f"{'Whisper starts with the answer':44} {o:13.3f} {o / a:6.2f} {o_done:18.2f}")
    print(f"{'Whisper starts at the first token (the app)':44} {g:13.3f} {g / a:6.2f} {g_done:18.2f}")
    print(f"Whisper alone: {whisper_alone:.2f} s")


if __name__ == "__main__":
    main()
