"""What an import costs in memory: the peak RSS of `run.py import` on the archives issue 15 measured.

Each archive is built on disk here, then imported by a fresh process through the command line's own code
(cli.admin.command), which reports its peak RSS (resource.getrusage) and time. The cases:
  - baseline: a one-message export (what Python and the libraries cost by themselves);
  - 20 and 120 references: one 25 MB member (a valid WAV of noise, under the per-file limit) held by that many
    messages (before issue 15: 555 MB for 20, a MemoryError for 120);
  - 1.5 GB manifest: a zip of about 1.5 MB whose conversations.json unpacks to 1.5 GB (before: 3.1 GB RSS
    before the refusal);
  - 100,000 conversations: a zip of a few kB that holds 100,000 empty ChatGPT conversations (before: all
    created, in one transaction);
  - at the limits: 10,000 ChatGPT conversations of 24 messages (240,000 in all), the most one import takes; its
    time is about how long the import holds the database's write lock.
Run: .venv/bin/python bench/import_cost.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(archive: Path, data_dir: Path) -> None:
    """In the measured process: import through the command line's code, then report."""
    import contextlib

    from cli import admin

    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = admin.command(["import", str(archive), "--data-dir", str(data_dir)])
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    said = (out.getvalue() + err.getvalue()).strip().replace("\n", " ")
    print(json.dumps({"exit": code, "peak_mb": peak_mb, "seconds": seconds, "said": said}))


def wav_member(path: Path, target_bytes: int) -> Path:
    """A loud 48 kHz stereo WAV of noise, about `target_bytes` (a valid clip under the length limit; noise, so the
    zip cannot shrink it)."""
    rate, channels = 48_000, 2
    frames = (target_bytes - 44) // (2 * channels)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        left = frames
        while left:
            count = min(left, rate)
            out.writeframes(os.urandom(count * 2 * channels))
            left -= count
    return path


def ours(path: Path, conversations: list[dict], files: dict[str, Path]) -> Path:
    manifest = {"format": "local-assistant", "version": 1, "exported_at": "2024-05-01T10:00:00", "conversations": conversations}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations.json", json.dumps(manifest))
        for name, source in files.items():
            archive.write(source, name)
    return path


def references(path: Path, member: Path, count: int) -> Path:
    messages, parent = [], None
    for i in range(count):
        attachment = {"sha256": "0" * 64, "kind": "audio", "mime": "audio/wav", "filename": f"clip-{i}.wav", "size_bytes": 0,
                      "file": "files/clip.wav", "transcript": None}  # fmt: skip
        for offset, role in ((1, "user"), (2, "assistant")):
            messages.append({"id": 2 * i + offset, "parent_id": parent, "role": role, "text": f"{role} {i}", "status": "complete",
                             "error": None, "details": None, "created_at": None,
                             "attachments": [attachment] if role == "user" else []})  # fmt: skip
            parent = 2 * i + offset
    conversation = {"id": "c", "title": f"{count} references", "created_at": None, "updated_at": None, "pinned": False,
                    "archived": False, "settings": None, "current_message_id": parent, "messages": messages}  # fmt: skip
    return ours(path, [conversation], {"files/clip.wav": member})


def huge_manifest(path: Path, gigabytes: float = 1.5) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("conversations.json", "w", force_zip64=True) as out:
            out.write(b"[")
            block = b" " * (1 << 20)
            for _ in range(int(gigabytes * 1024)):
                out.write(block)
            out.write(b"]")
    return path


def many_conversations(path: Path, count: int = 100_000) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations.json", json.dumps([{"title": "x", "mapping": {}}] * count))
    return path


def at_the_limits(path: Path, conversations: int = 10_000, per: int = 24) -> Path:
    items = []
    for c in range(conversations):
        mapping, parent = {"root": {"message": None, "parent": None}}, "root"
        for i in range(per):
            content = {"content_type": "text", "parts": [f"message {i} of conversation {c}"]}
            author = {"role": "user" if i % 2 == 0 else "assistant"}
            mapping[f"n{i}"] = {"parent": parent, "message": {"author": author, "create_time": 1700000000 + i, "content": content}}
            parent = f"n{i}"
        items.append({"title": f"chat {c}", "create_time": 1700000000, "mapping": mapping, "current_node": parent})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations.json", json.dumps(items))
    return path


def measure(archive: Path, data_dir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(archive), str(data_dir)], capture_output=True, text=True, cwd=ROOT
    )
    if result.returncode != 0:
        return {"exit": result.returncode, "peak_mb": float("nan"), "seconds": float("nan"), "said": result.stderr.strip()[-300:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("ARCHIVE", "DATA_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help="build the archives in this folder and keep them")
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return

    from domain import limits

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        member = wav_member(folder / "clip.wav", limits.MAX_FILE_BYTES - 64 * 1024)
        cases = [
            ("baseline: no message", lambda p: references(p, member, 0), "—"),
            ("one 25 MB member, 20 references", lambda p: references(p, member, 20), "each member read once"),
            ("one 25 MB member, 120 references", lambda p: references(p, member, 120), "each member read once"),
            ("1.5 GB manifest in a small zip", huge_manifest, f"manifest ≤ {limits.MAX_JSON_BYTES // 2**20} MB, checked on its header"),
            ("100,000 empty conversations", many_conversations, f"≤ {limits.MAX_IMPORT_CONVERSATIONS:,} conversations, "
             f"≤ {limits.MAX_IMPORT_MESSAGES:,} messages per import"),
            ("at the limits: 10,000 × 24 messages", at_the_limits, "the largest import allowed: one transaction"),
        ]  # fmt: skip
        print(f"{'case':36} {'zip':>10} {'peak RSS':>10} {'time':>8}  limit / outcome")
        for i, (name, build, limit) in enumerate(cases):
            archive = build(folder / f"case-{i}.zip")
            result = measure(archive, Path(scratch) / f"data-{i}")
            size = archive.stat().st_size
            shown = f"{size / 2**20:.1f} MB" if size > 2**20 else f"{size / 1024:.0f} kB"
            outcome = result["said"] if len(result["said"]) < 160 else result["said"][:157] + "…"
            print(f"{name:36} {shown:>10} {result['peak_mb']:>7.0f} MB {result['seconds']:>7.1f}s  {limit}")
            print(f"{'':36} exit {result['exit']}: {outcome}")


if __name__ == "__main__":
    main()
