"""Time to first chunk and decode speed of the real engine, per quantization, in one run.

Uses the demo checkpoint (tiny: this measures our pipeline's overhead and the relative cost of
bnb nf4 kernels, not a real model's speed; on a GPU pass --model for a real checkpoint).
Run: .venv/bin/python bench/engine_speed.py [--model PATH] [--quant none 4bit] [--tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from assistant.demo_model import ensure_demo_model
from assistant.loader import ModelSpec, Quant, load_engine
from assistant.prompt import ModelInput


def one_run(engine, model_input) -> tuple[float, int, float]:
    start = time.perf_counter()
    first = None
    chunks = 0
    for _ in engine.stream(model_input, threading.Event()):
        chunks += 1
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return first or total, chunks, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--quant", nargs="+", default=["none", "4bit"])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = args.model or str(ensure_demo_model(Path(tempfile.gettempdir()) / "assistant-bench-demo"))
    rng = np.random.default_rng(0)
    model_input = ModelInput(
        conversation=[{"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "Describe both."}]}],
        images=[Image.fromarray(rng.integers(0, 255, (448, 448, 3), dtype=np.uint8))],
        audios=[(0.1 * rng.standard_normal(16000 * 5)).astype(np.float32)],
    )
    print(f"model: {model}\n{'quant':6} {'first chunk s':>14} {'chunks/s':>9} {'vs none':>8}")
    baseline = None
    for quant in args.quant:
        engine = load_engine(ModelSpec(model, Quant(quant)), lambda *_: None, max_new_tokens=args.tokens,
                             generation_kwargs={"do_sample": False, "min_new_tokens": args.tokens})
        one_run(engine, model_input)  # warm-up
        runs = [one_run(engine, model_input) for _ in range(args.repeats)]
        first = statistics.median(r[0] for r in runs)
        rate = statistics.median(r[1] / (r[2] - r[0]) for r in runs)
        baseline = baseline or rate
        print(f"{quant:6} {first:14.3f} {rate:9.1f} {rate / baseline:8.2f}")


if __name__ == "__main__":
    main()
