"""The note a demo checkpoint carries: which family built it, with which builder version (assistant/demo_model.py
builds them). Read by the registry too, since two families may load the same model type."""

from __future__ import annotations

import json
from pathlib import Path

# Bump when a builder changes, so a cached demo checkpoint is rebuilt.
DEMO_VERSION = 4
MARKER = "demo_model.json"


def is_demo_checkpoint(path: Path) -> bool:
    return demo_family(path) is not None


def demo_family(path: Path) -> str | None:
    """The family that built the current demo checkpoint at `path`; None for any other folder."""
    marker = Path(path) / MARKER
    try:
        note = json.loads(marker.read_text()) if marker.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(note, dict) or note.get("version") != DEMO_VERSION:
        return None
    return note.get("family") or None


def write_marker(folder: Path, family: str) -> None:
    (Path(folder) / MARKER).write_text(
        json.dumps({"version": DEMO_VERSION, "family": family, "note": "random weights; answers are meaningless"})
    )
