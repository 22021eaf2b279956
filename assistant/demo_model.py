"""Build (once) the tiny, randomly initialised checkpoint of a model family that `--demo` and the tests use.

Each family's module knows how to build its own (assistant/families); this module caches the result in a
folder, marked with the family and builder version, so a changed builder rebuilds it. Its answers are
meaningless. Knows nothing of storage or UI.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from assistant.families.demo_marker import demo_family, write_marker

DEFAULT_DEMO_FAMILY = "qwen2.5-omni"


def ensure_demo_model(path: Path, family: str = DEFAULT_DEMO_FAMILY) -> Path:
    """Build the demo checkpoint of `family` at `path` unless a current one is already there."""
    from assistant.families import family_named

    path = Path(path)
    if demo_family(path) == family:
        return path
    builder = family_named(family)
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    builder.build_demo(tmp)
    write_marker(tmp, family)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)  # atomic: a crash mid-build never leaves a half-written checkpoint in place
    return path
