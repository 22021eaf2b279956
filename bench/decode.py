"""Decode speed side by side, in one run: plain eager `model.generate` on the main thread; the app's answer through
the dialogue manager (storage, queue and streaming included), eager and (with --compile) compiled; and the limit
the hardware sets: at batch size 1 every language-model weight is read once per token, so tokens/s cannot pass
memory bandwidth ÷ LM weight bytes. Bandwidth is measured here (a device-to-device copy) and, for GPUs whose
figure is published, also taken from the data sheet. The answers are forced to --tokens tokens (min_new_tokens),
greedy, so compiled and eager answers can be compared token for token.
Summary: app_vs_main_thread (eager app ÷ main thread; target ≥ 0.95), compiled_speedup (compiled app ÷ eager app;
target ≥ 2 on a GPU), bandwidth_fraction (best app ÷ limit, from the data sheet where known, else the measured
copy bandwidth), identical (compiled answers equal eager ones).
Run: .venv/bin/python bench/decode.py --size demo|small|3b|7b [--quant none|4bit] [--compile] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from assistant.dialogue import DialogueManager  # noqa: E402
from assistant.engine import TransformersEngine  # noqa: E402
from assistant.media import MediaLoader  # noqa: E402
from assistant.model_host import ModelHost  # noqa: E402
from assistant.reuse import Reuse  # noqa: E402
from assistant.turn_queue import TurnQueue  # noqa: E402
from bench.multiturn import load_checkpoint  # noqa: E402

# Peak memory bandwidth from the vendors' data sheets, bytes/s, by the device's name (the longest name that it
# contains wins: "L40S" before "L4").
DATA_SHEET = {"H200": 4.8e12, "H100 NVL": 3.9e12, "H100": 3.35e12, "A100-SXM4-80GB": 2.039e12, "A100": 1.555e12,
              "L40S": 0.864e12, "L40": 0.864e12, "RTX 4090": 1.008e12, "RTX 3090": 0.936e12, "A10G": 0.6e12,
              "L4": 0.3e12}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def question(turn: int) -> str:
    return " ".join(f"word{i}" for i in range(150)) + f" question {turn}"


def main_thread_rate(engine: TransformersEngine, tokens: int, repeats: int) -> float:
    """Plain generate on this thread: (N - 1) tokens over time(N) - time(1), the median of `repeats`."""
    from assistant.prompt import ModelInput

    inputs = engine.prepare(ModelInput([{"role": "user", "content": [{"type": "text", "text": question(0)}]}]))

    def timed(n: int) -> float:
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            engine.model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        sync()
        return time.perf_counter() - start

    timed(2)  # warm-up
    return statistics.median((tokens - 1) / max(timed(tokens) - timed(1), 1e-9) for _ in range(repeats))


def app_rates(engine: TransformersEngine, folder: Path, repeats: int) -> tuple[float, list[str], float]:
    """The app's own tokens/s (first to last token, as the ⓘ details show it) over `repeats` new conversations after
    one warm-up answer: (median tokens/s, the answers, median time to first token)."""
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository

    folder.mkdir(parents=True)
    repository = ConversationRepository(open_database(sqlite_url(folder / "db.sqlite3")), BlobStore(folder / "files"))
    host = ModelHost(lambda progress: engine).start()
    host.wait()
    manager = DialogueManager(repository, host, MediaLoader(), TurnQueue())
    rates, answers, firsts = [], [], []
    for turn in range(repeats + 1):
        answer = list(manager.send(None, question(turn), [], threading.Event()))[-1].message
        if turn:
            rates.append(answer.details.tokens_per_s or 0.0)
            firsts.append(answer.details.first_token_s or 0.0)
            answers.append(answer.text)
    return statistics.median(rates), answers, statistics.median(firsts)


def lm_weight_bytes(engine: TransformersEngine) -> int:
    """Bytes of the weights one decode step reads: every parameter but the encoders' (towers) and the embedding table
    (one row per token); 4-bit weights count as stored (packed, with their scales)."""
    towers = tuple(f"{path}." for path in engine.family.unquantized if path != "lm_head")
    total = 0
    for name, parameter in engine.model.named_parameters():
        if name.startswith(towers) or "embed_tokens" in name:
            continue
        total += parameter.numel() * parameter.element_size()
        state = getattr(parameter, "quant_state", None)
        if state is not None and getattr(state, "absmax", None) is not None:
            total += state.absmax.numel() * state.absmax.element_size()
    return total


def copy_bandwidth() -> float:
    """Bytes/s a device-to-device copy moves (read plus write), the best of a few."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = 2**30 if device == "cuda" else 2**28
    source, target = torch.empty(size, dtype=torch.uint8, device=device), torch.empty(size, dtype=torch.uint8, device=device)
    best = float("inf")
    for _ in range(5):
        sync()
        start = time.perf_counter()
        target.copy_(source)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size / best


def data_sheet_bandwidth() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    matches = [part for part in DATA_SHEET if part in name]
    return DATA_SHEET[max(matches, key=len)] if matches else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=["demo", "small", "3b", "7b"], default="small")
    parser.add_argument("--quant", choices=["none", "4bit"], default="none")
    parser.add_argument("--compile", action="store_true", help="also the compiled decode (assistant/compiled.py)")
    parser.add_argument("--tokens", type=int, default=64, help="answer length (forced)")
    parser.add_argument("--repeats", type=int, default=3, help="answers per figure (median)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "assistant-multiturn")
    args = parser.parse_args()
    base = load_checkpoint(args.size, args.quant, args.work)
    forced = {"do_sample": False, "min_new_tokens": args.tokens}

    def engine(compiled: bool) -> TransformersEngine:
        reuse = Reuse(None, None)  # as the app runs: reuse on, the default KV budget
        return TransformersEngine(base.model, base.processor, base.info, base.family, max_new_tokens=args.tokens,
                                  generation_kwargs=forced, reuse=reuse, compile_decode=compiled)

    figures: dict = {"size": args.size, "quant": base.info.quant, "device": base.info.device, "tokens": args.tokens,
                     "parameters_stored": sum(p.numel() for p in base.model.parameters())}  # 4-bit: two per element

    def save() -> None:  # after each figure: a run cut short by its time limit keeps what it measured
        if args.json:
            args.json.write_text(json.dumps({"summary": summary(), "figures": figures}, indent=1))

    def summary() -> dict:
        eager, compiled = figures.get("app_eager_tokens_per_s"), figures.get("app_compiled_tokens_per_s")
        limit = figures.get("limit_tokens_per_s")
        best = max(eager or 0, compiled or 0) if figures.get("compiled") else eager
        return {
            "app_vs_main_thread": eager / figures["main_thread_tokens_per_s"] if eager else None,
            # Only when the compiled path really ran: a failed compilation answers eagerly, alike and as fast.
            "compiled_speedup": compiled / eager if figures.get("compiled") and compiled and eager else None,
            "bandwidth_fraction": best / limit if best and limit else None,
            "identical": figures.get("identical") if figures.get("compiled") else None,
        }

    figures["main_thread_tokens_per_s"] = main_thread_rate(base, args.tokens, args.repeats)
    save()
    print(f"main thread, plain generate: {figures['main_thread_tokens_per_s']:.1f} t/s", flush=True)
    runs = args.work / "decode-runs" / str(time.time_ns())
    eager_rate, eager_answers, eager_first = app_rates(engine(False), runs / "eager", args.repeats)
    figures.update(app_eager_tokens_per_s=eager_rate, app_eager_first_token_s=eager_first)
    print(f"app, eager: {eager_rate:.1f} t/s, first token {eager_first:.3f}s", flush=True)
    save()
    if args.compile:
        compiled = engine(True)
        started = time.perf_counter()
        warmed = compiled.warm_up()
        figures["compile_s"] = time.perf_counter() - started
        print(f"compiled decode: {'ready' if warmed else 'failed: ' + str(compiled.compiled.failure)} "
              f"after {figures['compile_s']:.0f}s", flush=True)
        rate, answers, first = app_rates(compiled, runs / "compiled", args.repeats)
        figures.update(app_compiled_tokens_per_s=rate, app_compiled_first_token_s=first, compiled=warmed)
        figures["identical"] = answers == eager_answers
        # bf16 and 4-bit: compiled kernels add in another order, and a near-tie may flip a greedy token.
        figures["identical_fraction"] = sum(a == b for a, b in zip(answers, eager_answers)) / len(answers)
        print(f"app, compiled: {rate:.1f} t/s, first token {first:.3f}s, identical to eager: {figures['identical']}", flush=True)
        save()
    weight_bytes = lm_weight_bytes(base)
    measured, sheet = copy_bandwidth(), data_sheet_bandwidth()
    limit = (sheet or measured) / weight_bytes
    figures.update(lm_weight_bytes=weight_bytes, copy_bandwidth=measured, data_sheet_bandwidth=sheet, limit_tokens_per_s=limit)
    print(f"LM weights {weight_bytes / 2**30:.2f} GiB; bandwidth {measured / 1e9:.0f} GB/s measured"
          f"{f', {sheet / 1e9:.0f} GB/s data sheet' if sheet else ''}; limit {limit:.0f} t/s", flush=True)
    if torch.cuda.is_available():
        figures["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    save()
    print(json.dumps({**summary(), "figures": figures}, indent=1), flush=True)


if __name__ == "__main__":
    main()
