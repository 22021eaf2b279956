"""A throwaway sixth family for tests/test_sixth_family.py: a second Qwen2.5-VL-shaped demo under another name.

Nothing in the app names it; it joins the registry only when ASSISTANT_EXTRA_FAMILIES=tests.sixth_family is set,
which is the point: one file makes a family, and the family-parametrised tests pick it up.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from assistant.families import qwen25_vl
from assistant.families.base import Family

NAME = "qwen2.5-vl-twin"


def build_demo(path: Path) -> None:
    """The Qwen2.5-VL demo checkpoint: the same layout (so the same model type), built by this family."""
    qwen25_vl.build_demo(path)


FAMILY = Family(
    capabilities=replace(qwen25_vl.FAMILY.capabilities, name=NAME, title="Qwen2.5-VL twin"),
    model_types=qwen25_vl.FAMILY.model_types,
    model_class=qwen25_vl.FAMILY.model_class,
    unquantized=qwen25_vl.FAMILY.unquantized,
    build_demo=build_demo,
    reuse=qwen25_vl.Qwen25VLReuse(),
)
