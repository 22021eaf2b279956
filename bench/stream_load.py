"""Streaming under load: how big attachments in a chat's history slow the streamed answer, Stop, and the server.

Starts `python run.py` on the demo checkpoint (--max-new-tokens 4000, so the answer streams until stopped) and
drives the real page in headless Chromium, twice in one run:
  BASELINE  a fresh conversation: one text-only turn (stopped once streaming), then "Tell me a long story";
  LOADED    the same, but the first turn attaches --files WAVs of about --mb MiB each (96 kHz stereo s16,
            under 30 s), uploaded through the page, so every later update carries them in the chat history.
During the second turn's streaming it measures, over --window seconds:
  updates/s   distinct texts of the last answer bubble, seen by a MutationObserver in the page (+ chars/s);
  /info, /    response times of GET /gradio_api/info and GET /, polled every ~100 ms from a Python thread;
then clicks Stop and times, with performance.now() in the page, until the bubble says "Stopped" and #stop is
disabled again ("stop"), and until the composer is enabled and empty, ready for the next turn ("unlock").
Prints a table with LOADED/BASELINE ratios. Exit status is nonzero only when a step fails or times out.
Run: .venv/bin/python bench/stream_load.py [--window 5] [--mb 10] [--files 4] [--work-dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
RATE, CHANNELS, SAMPLE_BYTES = 96_000, 2, 2
LAST_BOT = "(() => { const b = document.querySelectorAll('#chat .message-row.bot-row'); return b[b.length - 1]; })()"
STREAMING = """(n) => { const s = document.querySelector('#stop');
    const b = document.querySelectorAll('#chat .message-row.bot-row');
    return b.length === n && s && !s.disabled && b[n - 1].textContent.trim().length > 10; }"""
TURN_OVER = """(n) => { const s = document.querySelector('#stop'), box = document.querySelector('#composer textarea');
    const b = document.querySelectorAll('#chat .message-row.bot-row');
    return b.length === n && s && s.disabled && box && !box.disabled && box.value === ''; }"""
WINDOW_START = f"""() => {{  // counts distinct texts of the last answer bubble from now on
    const w = window.__win = {{t0: performance.now(), n: 0, last: {LAST_BOT}.textContent}};
    w.c0 = w.last.length;
    w.observer = new MutationObserver(() => {{
        const text = {LAST_BOT}.textContent;
        if (text !== w.last) {{ w.last = text; w.n += 1; }}
    }});
    w.observer.observe(document.querySelector('#chat'), {{subtree: true, childList: true, characterData: true}});
}}"""
WINDOW_END = """() => { const w = window.__win; w.observer.disconnect();
    return {n: w.n, dt: (performance.now() - w.t0) / 1000, chars: w.last.length - w.c0}; }"""
CLICK_STOP = f"""() => {{
    const r = window.__stop = {{t0: performance.now(), disabled: null, unlock: null}};
    const check = () => {{
        const now = performance.now(), s = document.querySelector('#stop');
        const box = document.querySelector('#composer textarea'), bot = {LAST_BOT};
        if (r.disabled === null && s.disabled && bot.textContent.includes('Stopped')) r.disabled = now - r.t0;
        if (r.disabled !== null && r.unlock === null && !box.disabled && box.value === '') r.unlock = now - r.t0;
        if (r.unlock === null) requestAnimationFrame(check); else observer.disconnect();
    }};
    const observer = new MutationObserver(check);
    observer.observe(document.body, {{subtree: true, childList: true, characterData: true, attributes: true}});
    document.querySelector('#stop').click();
    check();
}}"""


def make_wavs(folder: Path, count: int, mib: float) -> list[Path]:
    frames = int(mib * 2**20 / (CHANNELS * SAMPLE_BYTES))
    if frames / RATE > 29.5:
        raise SystemExit(f"--mb {mib} needs {frames / RATE:.1f} s of 96 kHz stereo audio; the app takes at most 30 s")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"load-{i}-{mib:g}MiB.wav"
        if not path.exists() or path.stat().st_size < frames * CHANNELS * SAMPLE_BYTES:
            rng = np.random.default_rng(i)  # different content per file: no two files hash alike
            t = np.arange(frames) / RATE
            tone = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t)
            samples = np.stack([tone, tone], axis=1) + 0.05 * rng.standard_normal((frames, CHANNELS))
            with wave.open(str(path), "wb") as w:
                w.setnchannels(CHANNELS), w.setsampwidth(SAMPLE_BYTES), w.setframerate(RATE)
                w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
        paths.append(path)
    return paths


class Poller(threading.Thread):
    """GET /gradio_api/info and GET / every ~100 ms while in a `with` block; response times in seconds."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.halt, self.errors = url, threading.Event(), 0
        self.times: dict[str, list[float]] = {"/gradio_api/info": [], "/": []}

    def run(self) -> None:
        while not self.halt.is_set():
            tick = time.perf_counter()
            for path, out in self.times.items():
                start = time.perf_counter()
                try:
                    with urllib.request.urlopen(self.url + path, timeout=60) as response:
                        response.read()
                    out.append(time.perf_counter() - start)
                except OSError:
                    self.errors += 1
            self.halt.wait(max(0.0, 0.1 - (time.perf_counter() - tick)))

    def __enter__(self) -> "Poller":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.halt.set()
        self.join(timeout=120)


def stats(values: list[float]) -> dict:
    ms = sorted(v * 1000 for v in values) or [float("nan")]
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
    return {"median": statistics.median(ms), "p95": p95, "max": ms[-1], "n": len(values)}


def wait(page, script: str, arg, timeout_s: float, what: str) -> None:
    try:
        page.wait_for_function(script, arg=arg, timeout=timeout_s * 1000, polling=50)
    except Exception as error:
        state = page.evaluate("""() => ({bots: document.querySelectorAll('#chat .message-row.bot-row').length,
            stop_disabled: document.querySelector('#stop')?.disabled,
            toasts: [...document.querySelectorAll('[data-testid="toast-text"]')].map(t => t.textContent)})""")
        raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}; page: {state}") from error


def scenario(browser, url: str, files: list[Path], window: float) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)
    try:
        page.goto(url, wait_until="load")
        page.wait_for_selector("#composer textarea")
        page.wait_for_function("() => document.querySelector('#model-status')?.textContent.includes('Model ready')")
        box = page.locator("#composer textarea")
        # Turn 1: puts the attachments (if any) into the history; stopped once it streams.
        box.fill(f"Here are {len(files)} recordings." if files else "Here is some text.")
        if files:
            page.set_input_files("#composer input[type=file]", [str(f) for f in files])
            wait(page, "(n) => document.querySelectorAll('#composer [aria-label=\"File thumbnail\"]').length === n"
                 " && !document.querySelector('#composer .loader')", len(files), 120, "the uploads")
        start = time.perf_counter()
        box.press("Enter")
        wait(page, STREAMING, 1, 300, "the first answer to stream")
        first_answer_s = time.perf_counter() - start
        page.locator("#stop").click()
        wait(page, TURN_OVER, 1, 900, "the first answer to stop")
        # Turn 2: the measured one.
        box.fill("Tell me a long story")
        box.press("Enter")
        wait(page, STREAMING, 2, 300, "the second answer to stream")
        with Poller(url) as poller:
            page.evaluate(WINDOW_START)
            time.sleep(window)
            seen = page.evaluate(WINDOW_END)
        page.evaluate(CLICK_STOP)
        wait(page, "() => window.__stop.unlock !== null", None, 900, "Stop to end the answer")
        wait(page, TURN_OVER, 2, 60, "the page to unlock after Stop")
        stop = page.evaluate("window.__stop")
        row = {"answer updates/s in the page": (seen["n"] / seen["dt"], "{:.1f}"),
               f"  updates seen in {window:g} s": (seen["n"], "{:d}"),
               "  answer chars/s in the page": (seen["chars"] / seen["dt"], "{:.0f}"),
               "Stop: click -> 'Stopped', #stop disabled (s)": (stop["disabled"] / 1000, "{:.2f}"),
               "Stop: click -> composer unlocked (s)": (stop["unlock"] / 1000, "{:.2f}"),
               "turn 1: Enter -> streaming (s)": (first_answer_s, "{:.2f}")}
        for path, times in poller.times.items():
            for key, value in stats(times).items():
                row[f"GET {path} {key}" + (" (ms)" if key != "n" else "")] = (value, "{:.1f}" if key != "n" else "{:d}")
        row["GETs failed or timed out"] = (poller.errors, "{:d}")
        return row
    finally:
        page.close()


def report(results: dict[str, dict]) -> None:
    base, loaded = results["BASELINE"], results["LOADED"]
    print(f"\n{'':46} {'BASELINE':>10} {'LOADED':>10} {'LOADED/BASE':>12}")
    for name, (b, fmt) in base.items():
        l = loaded[name][0]
        print(f"{name:46} {fmt.format(b):>10} {fmt.format(l):>10} {f'{l / b:.2f}' if b else '-':>12}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=5.0, help="seconds of streaming measured (default 5)")
    parser.add_argument("--mb", type=float, default=10.0, help="MiB per WAV file (default 10)")
    parser.add_argument("--files", type=int, default=4, help="WAV files in the LOADED history (default 4)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "stream_load_bench",
                        help="caches the demo checkpoint and the WAVs")
    parser.add_argument("--keep", action="store_true", help="keep this run's data dir and app log")
    args = parser.parse_args()

    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    model = work / "models" / "demo"
    built = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from assistant.demo_model"
                            " import ensure_demo_model; ensure_demo_model(Path(sys.argv[1]))", str(model)],
                           cwd=ROOT, capture_output=True, text=True)
    if built.returncode:
        raise SystemExit(f"building the demo checkpoint failed:\n{built.stdout[-2000:]}{built.stderr[-3000:]}")
    files = make_wavs(work / "wavs", args.files, args.mb)
    print(f"{len(files)} WAVs: " + ", ".join(f"{f.stat().st_size / 2**20:.1f} MiB" for f in files)
          + f", {(files[0].stat().st_size - 44) / (RATE * CHANNELS * SAMPLE_BYTES):.1f} s each, 96 kHz stereo s16")
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    log_path = run_dir / "app.log"
    with socket.socket() as sock:
        port = sock.bind(("127.0.0.1", 0)) or sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    app = None
    try:
        with open(log_path, "ab") as log:
            app = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--model", str(model), "--data-dir",
                                    str(run_dir / "data"), "--port", str(port), "--max-new-tokens", "4000"],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 180
        while "model ready" not in log_path.read_text(errors="replace"):
            if app.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not get ready (exit {app.poll()}):\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        with Poller(url) as idle:  # the server with no answer running, for reference
            time.sleep(2)
        print("idle server: " + ", ".join(f"GET {path} median {stats(v)['median']:.1f} ms, max {stats(v)['max']:.1f} ms"
                                          f" ({len(v)} requests)" for path, v in idle.times.items()))
        results = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            for name, attach in (("BASELINE", []), ("LOADED", files)):
                print(f"{name}: measuring…", flush=True)
                results[name] = scenario(browser, url, attach, args.window)
            browser.close()
        report(results)
        return 0
    except Exception as error:
        args.keep = True
        print(f"FAILED: {error}\napp log tail:\n{log_path.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        return 1
    finally:
        if app is not None and app.poll() is None:
            app.kill()
            app.wait(timeout=30)
        if args.keep:
            print(f"kept {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
