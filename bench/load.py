"""Several users at once through the OpenAI-compatible API: N concurrent `openai` clients, each holding a T-turn
conversation (stateless follow-ups that repeat the history, as clients do), streaming each answer.

Prints throughput, p50/p95 time to first token and per answer, errors, and lost messages: what each client sent
and received compared with what the app stored (the conversation each exchange continued). Without --url it
starts the app itself with the demo model in a temporary data directory (or --data-dir), and reads its database
afterwards; with --url (another running app, or --engine openai in front of vLLM) pass --data-dir too for the
lost-message count.
Run: .venv/bin/python bench/load.py [--clients 16] [--turns 10] [--url http://127.0.0.1:7860] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def client_run(base_url: str, model: str, index: int, turns: int, max_tokens: int, results: dict) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="local", max_retries=0, timeout=600)
    history: list[dict] = []
    record = results[index] = {"ttft": [], "total": [], "errors": [], "conversation": None, "sent": []}
    for turn in range(turns):
        question = f"Client {index}, turn {turn + 1}: what comes next?"
        history.append({"role": "user", "content": question})
        started = time.perf_counter()
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=history, max_tokens=max_tokens, stream=True, temperature=0
            )
            conversation = raw.headers.get("x-conversation-id")
            answer, first = "", None
            for chunk in raw.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    first = first or time.perf_counter() - started
                    answer += chunk.choices[0].delta.content
        except openai.OpenAIError as error:
            record["errors"].append(f"turn {turn + 1}: {type(error).__name__}: {error}")
            history.pop()
            continue
        record["ttft"].append(first if first is not None else time.perf_counter() - started)
        record["total"].append(time.perf_counter() - started)
        if record["conversation"] not in (None, conversation):
            record["errors"].append(f"turn {turn + 1}: continued another conversation ({conversation})")
        record["conversation"] = conversation
        history.append({"role": "assistant", "content": answer})
        record["sent"].append((question, answer))


def lost_messages(data_dir: Path, results: dict) -> int:
    """Exchanges a client completed that its stored conversation does not hold, word for word."""
    from cli.data import open_storage

    repository = open_storage(data_dir, None).conversations
    lost = 0
    for record in results.values():
        if record["conversation"] is None:
            lost += len(record["sent"])
            continue
        stored = [m.text for m in repository.get_messages(record["conversation"])]
        expected = [text for pair in record["sent"] for text in pair]
        lost += sum(1 for a, b in zip(expected, stored) if a != b) + max(0, len(expected) - len(stored))
    return lost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--url", default=None, help="a running app (default: start one with the demo model)")
    parser.add_argument("--model", default=None, help="the model id (default: the first of /v1/models)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the app's data dir, to count lost messages")
    parser.add_argument("--app-args", default="", help="more options for the app this starts, e.g. '--no-reuse'")
    args = parser.parse_args()
    import openai

    app = None
    if args.url is None:
        from tests.helpers import AppProcess

        data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="assistant-load-"))
        app = AppProcess(["--demo", "--data-dir", str(data_dir), "--whisper-model", "none", *args.app_args.split()],
                         data_dir / "app.log")
        app.wait_for_page(timeout=300)
        app.wait_for_log("model ready", timeout=300)
        args.url, args.data_dir = app.url, data_dir
    try:
        model = args.model or openai.OpenAI(base_url=f"{args.url}/v1", api_key="local").models.list().data[0].id
        results: dict[int, dict] = {}
        threads = [threading.Thread(target=client_run, args=(args.url, model, i, args.turns, args.max_tokens, results))
                   for i in range(args.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        ttft = [t for r in results.values() for t in r["ttft"]]
        total = [t for r in results.values() for t in r["total"]]
        errors = [e for r in results.values() for e in r["errors"]]
        answers = len(total)
        lost = lost_messages(args.data_dir, results) if args.data_dir else None
        print(f"{args.clients} clients × {args.turns} turns against {args.url} ({model}), {args.max_tokens}-token answers")
        print(f"answers {answers} in {elapsed:.1f}s: {answers / elapsed:.2f} answers/s")
        print(f"time to first token: p50 {percentile(ttft, 0.5):.2f}s, p95 {percentile(ttft, 0.95):.2f}s")
        print(f"time per answer:     p50 {percentile(total, 0.5):.2f}s, p95 {percentile(total, 0.95):.2f}s, "
              f"mean {statistics.fmean(total) if total else float('nan'):.2f}s")
        print(f"errors {len(errors)}; lost messages {lost if lost is not None else 'not counted (no --data-dir)'}")
        for error in errors[:10]:
            print("  ", error)
    finally:
        if app is not None:
            app.kill()


if __name__ == "__main__":
    main()
