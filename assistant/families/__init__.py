"""The model families the app runs (see base.Family), and how a checkpoint's config picks one.

This registry is the one list of families: `--demo` choices and help, the messages naming what the app runs, and
the family-parametrised tests all read `families()`. A new family is a module defining `FAMILY` and one line in
MODULES. Further families can be added without editing this file by naming their modules, comma-separated, in
the environment variable ASSISTANT_EXTRA_FAMILIES (the tests add a throwaway one this way:
`ASSISTANT_EXTRA_FAMILIES=tests.sixth_family`). Each name must be a dotted Python module name (letters, digits,
underscores), imported with the ordinary import system from what is already importable; never a file path or a
URL, and nothing is fetched. Whoever can set the process's environment can already choose the code it runs
(PYTHONPATH), so this opens nothing new.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path

from assistant.families.base import Family
from assistant.families.capabilities import Capabilities
from assistant.families.demo_marker import demo_family
from domain.errors import ModelLoadError
from domain.i18n import t

__all__ = ["Capabilities", "Family", "families", "family_named", "family_of_checkpoint", "listing"]

# One module per family, in the order the README lists them; each defines FAMILY.
MODULES = ("qwen25_omni", "gemma4", "qwen25_vl", "qwen3_vl", "qwen2_audio")
EXTRA_FAMILIES_VARIABLE = "ASSISTANT_EXTRA_FAMILIES"
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _extra_modules() -> list[str]:
    names = [name.strip() for name in os.environ.get(EXTRA_FAMILIES_VARIABLE, "").split(",") if name.strip()]
    for name in names:
        if not _MODULE_NAME.fullmatch(name):
            raise ModelLoadError(t("family.bad_module_name", variable=EXTRA_FAMILIES_VARIABLE, name=name))
    return names


def families() -> dict[str, Family]:
    """By name, in the order people see them: the built-in ones, then any named in ASSISTANT_EXTRA_FAMILIES."""
    modules = [f"assistant.families.{module}" for module in MODULES] + _extra_modules()
    found: dict[str, Family] = {}
    for module in modules:
        try:
            family = getattr(importlib.import_module(module), "FAMILY", None)
        except ImportError as error:
            raise ModelLoadError(t("family.import_failed", module=module, error=str(error))) from None
        if not isinstance(family, Family) or family.name in found:
            raise ModelLoadError(t("family.not_defined", module=module))
        found[family.name] = family
    return found


def family_named(name: str) -> Family:
    try:
        return families()[name]
    except KeyError:
        raise ModelLoadError(t("family.unknown", name=name, supported=listing())) from None


def family_of_checkpoint(path: Path) -> Family:
    """The family whose `model_types` has the checkpoint's config.json `model_type`; for a demo checkpoint, the
    family that built it (two families may load the same model type)."""
    try:
        model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise ModelLoadError(t("family.config_unreadable", error=str(error))) from None
    known = families()
    builder = known.get(demo_family(path))
    if builder is not None and model_type in builder.model_types:
        return builder
    for family in known.values():
        if model_type in family.model_types:
            return family
    raise ModelLoadError(t("family.unsupported", model_type=model_type, supported=listing()))


def listing() -> str:
    """"Qwen2.5-Omni (qwen2.5-omni), Gemma 4 (gemma4), …": every family for people, as help and errors name them."""
    return ", ".join(f"{f.title} ({f.name})" for f in families().values())

