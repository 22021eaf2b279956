"""Where the app's decode speed goes: the same prompt and forced answer length through plain `model.generate`
on the calling thread, in a new worker thread (also with one CPU intra-op thread), in one long-lived thread, in
a worker thread with our streamer and stop criterion, through `TransformersEngine.stream` (with and without reuse) and through the dialogue manager
(storage included), in rounds so that drift shows. Tokens per second are (N - 1) / (time(N) - time(1)); the
engine's and the dialogue's are the app's own figure (first to last token).
Run: .venv/bin/python bench/decode_overhead.py --size small [--tokens 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from assistant.engine import TransformersEngine  # noqa: E402
from assistant.engine_contract import GenerationReport  # noqa: E402
from assistant.loader import ModelSpec, Quant, load_engine  # noqa: E402
from assistant.prompt import ModelInput  # noqa: E402
from assistant.reuse import Reuse  # noqa: E402
from assistant.streaming import ChunkStreamer, StopOnEvent  # noqa: E402
from bench.multiturn import checkpoint  # noqa: E402
from transformers import StoppingCriteriaList  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def prompt(turn: int) -> ModelInput:
    text = " ".join(f"word{i}" for i in range(150)) + f" turn {turn}"
    return ModelInput([{"role": "user", "content": [{"type": "text", "text": text}]}], [], [])


def rate(timed, tokens: int) -> float:
    return (tokens - 1) / max(timed(tokens) - timed(1), 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=["demo", "small", "3b", "7b"], default="small")
    parser.add_argument("--quant", choices=["none", "4bit"], default="none")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "assistant-multiturn")
    args = parser.parse_args()
    base = load_engine(ModelSpec(str(checkpoint(args.size, args.work)), Quant(args.quant), demo=True), lambda *_: None)
    model = base.model
    inputs = base.prepare(prompt(0))
    greedy = {"do_sample": False}

    def generate(n: int, streamer=None) -> None:
        extra = {}
        if streamer is not None:
            extra = {"streamer": streamer, "stopping_criteria": StoppingCriteriaList([StopOnEvent(threading.Event())])}
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, **greedy, **extra)

    def main_thread(n: int) -> float:
        sync()
        start = time.perf_counter()
        generate(n)
        sync()
        return time.perf_counter() - start

    def worker(n: int, streamed: bool = False, cpu_threads: int | None = None) -> float:
        streamer = ChunkStreamer(base.processor.tokenizer, timeout=60) if streamed else None
        sync()
        start = time.perf_counter()

        def target() -> None:
            before = torch.get_num_threads()
            if cpu_threads is not None:
                torch.set_num_threads(cpu_threads)
            try:
                generate(n, streamer)
            finally:
                torch.set_num_threads(before)

        thread = threading.Thread(target=target)
        thread.start()
        if streamer is not None:
            for _ in streamer:
                pass
        thread.join()
        sync()
        return time.perf_counter() - start

    from concurrent.futures import ThreadPoolExecutor

    persistent = ThreadPoolExecutor(max_workers=1)  # one thread for every generation, as opposed to a new one each

    def long_lived(n: int) -> float:
        sync()
        start = time.perf_counter()
        persistent.submit(generate, n).result()
        sync()
        return time.perf_counter() - start

    def app(engine: TransformersEngine, key: str | None, turn: int) -> float:
        report = GenerationReport()
        for _ in engine.stream(prompt(turn), threading.Event(), report=report, reuse_key=key):
            pass
        return report.tokens_per_s or 0.0

    plain = TransformersEngine(model, base.processor, base.info, base.family, max_new_tokens=args.tokens,
                               generation_kwargs={**greedy, "min_new_tokens": args.tokens})
    reusing = TransformersEngine(model, base.processor, base.info, base.family, max_new_tokens=args.tokens,
                                 generation_kwargs={**greedy, "min_new_tokens": args.tokens},
                                 reuse=Reuse(1.0, args.work / "decode-overhead-encoders"))
    def dialogue_rate(turn: int) -> float:
        """Through the dialogue manager, as the page and the API call it (storage included)."""
        from assistant.dialogue import DialogueManager
        from assistant.media import MediaLoader
        from assistant.model_host import ModelHost
        from assistant.turn_queue import TurnQueue
        from storage.blobs import BlobStore
        from storage.database import open_database, sqlite_url
        from storage.repository import ConversationRepository

        folder = args.work / f"decode-overhead-{time.time_ns()}"
        folder.mkdir(parents=True)
        repository = ConversationRepository(open_database(sqlite_url(folder / "db.sqlite3")), BlobStore(folder / "files"))
        host = ModelHost(lambda progress: plain).start()
        host.wait()
        manager = DialogueManager(repository, host, MediaLoader(), TurnQueue())
        text = prompt(turn).conversation[0]["content"][0]["text"]
        events = list(manager.send(None, text, [], threading.Event()))
        return events[-1].message.details.tokens_per_s or 0.0

    main_thread(2)  # warm-up
    print(f"size {args.size}, {base.info.quant}, {base.info.device}, {args.tokens} tokens; tokens/s:")
    for round_ in range(args.rounds):
        figures = {
            "main thread": rate(main_thread, args.tokens),
            "worker thread": rate(worker, args.tokens),
            # A second thread's CPU thread pool (MKL, OpenMP): on a 2-core CPU the demo model decoded 20-25% slower
            # in any thread but the one that loaded it, and as fast with one intra-op thread there.
            "worker, 1 CPU thread": rate(lambda n: worker(n, cpu_threads=1), args.tokens),
            "long-lived thread": rate(long_lived, args.tokens),
            "worker+streamer": rate(lambda n: worker(n, True), args.tokens),
            "engine.stream": app(plain, None, 0),
            "engine.stream reuse": app(reusing, "c", round_),
            "dialogue": dialogue_rate(round_),
            "main thread after": rate(main_thread, args.tokens),
        }
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {value:.1f}" for name, value in figures.items()), flush=True)


if __name__ == "__main__":
    main()
