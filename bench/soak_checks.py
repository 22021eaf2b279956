"""What survived a soak round (bench/soak.py), read straight from the database and the files folder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

from soak_client import Asked

# --- the database and files, read directly --------------------------------------------------------------------


def connect(db: Path) -> sqlite3.Connection:
    # Read-only: looking must not checkpoint or otherwise change what the restarted app will find.
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def integrity(db: Path) -> str:
    try:
        with closing(connect(db)) as con:
            rows = [row[0] for row in con.execute("PRAGMA integrity_check")]
    except sqlite3.Error as error:
        return f"error: {error}"
    return "ok" if rows == ["ok"] else "; ".join(rows)[:120]


def stored_files(data_dir: Path) -> list[Path]:
    root = data_dir / "files"
    return [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []


def orphans(data_dir: Path, db: Path) -> tuple[list[Path], list[str]]:
    """(files no attachment row refers to, attachment rows whose file is gone)."""
    with closing(connect(db)) as con:
        linked = {row[0] for row in con.execute("SELECT sha256 FROM attachment")}
    files = stored_files(data_dir)
    present = {p.name.split(".", 1)[0] for p in files}
    return [p for p in files if p.name.split(".", 1)[0] not in linked], sorted(linked - present)


def first_new_file(data_dir: Path, before: set[Path], proc: subprocess.Popen) -> float | None:
    """Wait until a file not in `before` appears under data_dir/files (its time.monotonic()), or `proc` ends (None)."""
    while proc.poll() is None:
        if set(stored_files(data_dir)) - before:
            return time.monotonic()
        time.sleep(0.005)
    return None


def backdate(data_dir: Path, seconds: float) -> None:
    then = time.time() - seconds
    for path in stored_files(data_dir):
        os.utime(path, (then, then))


def unmarked(db: Path) -> tuple[set[int], set[int]]:
    """(user messages with no answer under them, answers still streaming)."""
    with closing(connect(db)) as con:
        unanswered = {row[0] for row in con.execute(
            "SELECT u.id FROM message u WHERE u.role = 'user' AND NOT EXISTS "
            "(SELECT 1 FROM message a WHERE a.parent_id = u.id AND a.role = 'assistant')")}
        streaming = {row[0] for row in con.execute("SELECT id FROM message WHERE role = 'assistant' AND status = 'streaming'")}
    return unanswered, streaming


def find_question(con: sqlite3.Connection, asked: Asked) -> int | None:
    row = con.execute("SELECT id FROM message WHERE conversation_id = ? AND role = 'user' AND instr(content, ?) = 1",
                      (asked.conversation, asked.tag)).fetchone()
    return row[0] if row else None


def lost_questions(db: Path, acked: list[Asked]) -> list[Asked]:
    with closing(connect(db)) as con:
        return [a for a in acked if find_question(con, a) is None]


def text_lost(db: Path, asked: Asked, killed_at: float) -> tuple[int, float, bool]:
    """(characters received but not stored, their seconds of streaming, whether the stored text is not a prefix)."""
    with closing(connect(db)) as con:
        qid = find_question(con, asked)
        row = con.execute("SELECT content FROM message WHERE parent_id = ? AND role = 'assistant' ORDER BY id DESC LIMIT 1",
                          (qid,)).fetchone() if qid is not None else None
    stored = row[0] if row else ""
    if stored.startswith(asked.text):  # all received was stored (and maybe more, still on its way at the kill)
        return 0, 0.0, False
    if not asked.text.startswith(stored):
        return 0, 0.0, True
    chunks = [(t, n) for t, n in asked.chunks if t <= killed_at + 1.0]  # + bytes still in flight when it died
    lost = len(asked.text) - len(stored)
    if lost <= 0 or not chunks:
        return max(lost, 0), 0.0, False
    since = next((t for t, n in chunks if n >= len(stored)), chunks[-1][0]) if stored else chunks[0][0]
    return lost, chunks[-1][0] - since, False


def import_outcome(db: Path, tag: str, expected: int) -> str:
    with closing(connect(db)) as con:
        found = con.execute("SELECT count(*) FROM conversation WHERE instr(title, ?) = 1", (tag,)).fetchone()[0]
    return "none" if found == 0 else "all" if found == expected else f"partial {found}/{expected}"
