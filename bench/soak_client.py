"""The soak's side of the wire (bench/soak.py): the app it starts and kills, the streamed questions it asks
through the OpenAI-compatible API, and the fresh media and archives it sends."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

# --- the app ------------------------------------------------------------------------------------------------


class App:
    """`python run.py --demo` on one port (so a restart is the same instance), in its own process group."""

    def __init__(self, data_dir: Path, port: int, max_new_tokens: int, orphan_grace_s: float):
        self.data_dir, self.port = data_dir, port
        self.base = f"http://127.0.0.1:{port}"
        self.args = ["--demo", "--data-dir", str(data_dir), "--port", str(port), "--max-new-tokens", str(max_new_tokens)]
        usage = subprocess.run([sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
        if "--orphan-grace" in usage:
            self.args += ["--orphan-grace", str(orphan_grace_s)]
        self.log = data_dir / "soak-app.log"
        self.proc: subprocess.Popen | None = None
        self.model = ""

    def start(self, timeout_s: float = 600) -> float:
        """Start it and wait until the model answers; returns the seconds that took."""
        began = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "run.py", *self.args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        while time.monotonic() - began < timeout_s:
            if self.proc.poll() is not None:
                raise SystemExit(f"error: the app exited with status {self.proc.returncode}; see {self.log}")
            try:
                model = httpx.get(self.base + "/v1/models", timeout=2).json()["data"][0]
                if "max_model_len" in model:  # present once the engine is loaded
                    self.model = model["id"]
                    return time.monotonic() - began
            except (httpx.HTTPError, ValueError, KeyError, IndexError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"error: the app was not ready after {timeout_s:.0f} s; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- clients ------------------------------------------------------------------------------------------------


@dataclass
class Asked:
    """One streamed question, as its client saw it."""

    tag: str  # unique text at the start of the question, to find it in the database
    content: object
    conversation: str | None = None
    sent_at: float = 0.0
    acked_at: float | None = None
    chunks: list[tuple[float, int]] = field(default_factory=list)  # (receive time, characters received so far)
    text: str = ""
    done: bool = False
    error: str | None = None
    acked: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


def ask(app: App, asked: Asked, max_tokens: int) -> Asked:
    """Send the question in a thread that streams the answer until it ends or the connection drops."""
    body = {"model": app.model, "stream": True, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": asked.content}]}

    def run() -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(600, connect=10)) as client, \
                    client.stream("POST", app.base + "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    asked.error = f"HTTP {response.status_code}: {response.read()[:200]!r}"
                    return
                asked.conversation = response.headers["x-conversation-id"]
                asked.acked_at = time.monotonic()
                asked.acked.set()
                pending = b""
                for raw in response.iter_raw():
                    now = time.monotonic()
                    # Lines end at b"\n" only: httpx's iter_lines also splits at U+2028 and U+0085, which JSON
                    # leaves unescaped and a random demo model does write.
                    *lines, pending = (pending + raw).split(b"\n")
                    for line in lines:
                        receive(asked, line.decode(), now)
        except (httpx.HTTPError, OSError, ValueError) as error:  # the kill: what was received is what counts
            asked.error = asked.error or type(error).__name__
        finally:
            asked.acked.set()  # also when it failed: the waiter looks at acked_at

    asked.sent_at = time.monotonic()
    asked.thread = threading.Thread(target=run, daemon=True)
    asked.thread.start()
    return asked


def receive(asked: Asked, line: str, now: float) -> None:
    """One line of the event stream."""
    if line == "data: [DONE]":
        asked.done = True
    elif line.startswith("data: "):
        data = json.loads(line[6:])
        if "error" in data:
            asked.error = str(data["error"].get("message"))[:200]
        for choice in data.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content") or ""
            if piece:
                asked.text += piece
                asked.chunks.append((now, len(asked.text)))


def question(kind: str, tag: str, rng: np.random.Generator) -> object:
    text = f"{tag} Tell me a long story about this." if kind != "text" else f"{tag} Tell me a long story."
    if kind == "text":
        return text
    if kind == "image":
        part = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png(rng, 320)).decode()}}
    else:
        part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav(rng, 3.0)).decode(), "format": "wav"}}
    return [{"type": "text", "text": text}, part]


def png(rng: np.random.Generator, side: int) -> bytes:
    """Noise (so it does not compress: `side` 900 is about 2.4 MB), different every call."""
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def wav(rng: np.random.Generator, seconds: float, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    signal_ = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) + 0.05 * rng.standard_normal(t.size)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(signal_, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def make_archive(path: Path, tag: str, rng: np.random.Generator, conversations: int = 4, images: int = 3) -> int:
    """An export in this app's own format (storage/exchange.py) with fresh noise images; returns its conversation count."""
    now = datetime.now(UTC).isoformat()
    manifest = {"format": "local-assistant", "version": 1, "exported_at": now, "conversations": []}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for c in range(conversations):
            attachments = []
            for i in range(images):
                data = png(rng, 900)
                sha = hashlib.sha256(data).hexdigest()
                archive.writestr(f"files/{sha}.png", data)
                attachments.append({"sha256": sha, "kind": "image", "mime": "image/png", "filename": f"noise-{i}.png",
                                    "size_bytes": len(data), "file": f"files/{sha}.png", "transcript": None})
            message = {"status": "complete", "error": None, "details": None, "created_at": now}
            manifest["conversations"].append({
                "id": str(c), "title": f"{tag} {c + 1}/{conversations}", "created_at": now, "updated_at": now,
                "pinned": False, "archived": False, "settings": None, "current_message_id": 2,
                "messages": [{**message, "id": 1, "parent_id": None, "role": "user", "text": "What are these?",
                              "attachments": attachments},
                             {**message, "id": 2, "parent_id": 1, "role": "assistant", "text": "Noise.", "attachments": []}],
            })
        archive.writestr("conversations.json", json.dumps(manifest))
    return conversations
