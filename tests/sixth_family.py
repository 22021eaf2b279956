"""A throwaway sixth family for tests/test_sixth_family.py: a second Qwen2.5-VL-shaped demo under another name.

Nothing in the app names it; it joins the registry only when ASSISTANT_EXTRA_FAMILIES=tests.sixth_family is set,
which is the point: one file makes a family, and the family-parametrised tests pick it up.
"""

from __future__ import annotations

from dataclasses import replace

from assistant.families import qwen25_vl

NAME = "qwen2.5-vl-twin"


# The same demo builder (so the same model type and layout), the same reuse; only the name is its own.
FAMILY = replace(qwen25_vl.FAMILY, name=NAME, title="Qwen2.5-VL twin")
