"""Build (once) the tiny, randomly initialised checkpoint of a model family that `--demo` and the tests use.

Each family's module knows how to build its own (assistant/families); this module caches the result in a
folder, marked with the family and builder version, so a changed builder rebuilds it. Its answers are
meaningless. Knows nothing of storage or UI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# Bump when a builder changes, so a cached demo checkpoint is rebuilt.
DEMO_VERSION = 3
DEFAULT_DEMO_FAMILY = "qwen2.5-omni"
MARKER = "demo_model.json"


def is_demo_checkpoint(path: Path) -> bool:
    marker = Path(path) / MARKER
    try:
        return marker.is_file() and json.loads(marker.read_text()).get("version") == DEMO_VERSION
    except (OSError, ValueError):
        return False


def ensure_demo_model(path: Path, family: str = DEFAULT_DEMO_FAMILY) -> Path:
    """Build the demo checkpoint of `family` at `path` unless a current one is already there."""
    from assistant.families import family_named

    path = Path(path)
    if is_demo_checkpoint(path) and json.loads((path / MARKER).read_text()).get("family") == family:
        return path
    builder = family_named(family)
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    builder.build_demo(tmp)
    (tmp / MARKER).write_text(
        json.dumps({"version": DEMO_VERSION, "family": family, "note": "random weights; answers are meaningless"})
    )
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)  # atomic: a crash mid-build never leaves a half-written checkpoint in place
    return path
