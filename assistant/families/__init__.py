"""The model families the app runs, and how a checkpoint's config picks one (see base.Family)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from assistant.families.base import Family
from domain.errors import ModelLoadError


# One module per family, in the order the README lists them; each defines FAMILY.
MODULES = ("qwen25_omni", "gemma4", "qwen25_vl", "qwen3_vl", "qwen2_audio")


def families() -> dict[str, Family]:
    """By name."""
    found = [importlib.import_module(f"assistant.families.{module}").FAMILY for module in MODULES]
    return {family.name: family for family in found}


def family_named(name: str) -> Family:
    try:
        return families()[name]
    except KeyError:
        raise ModelLoadError(f"There is no model family “{name}”; the supported ones are {_names()}.") from None


def family_of_checkpoint(path: Path) -> Family:
    """The family whose `model_types` has the checkpoint's config.json `model_type`."""
    try:
        model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"The checkpoint's config.json cannot be read ({error}).") from None
    for family in families().values():
        if model_type in family.model_types:
            return family
    raise ModelLoadError(f"The checkpoint is a “{model_type}” model, which this app does not run; it runs {_names()}.")


def _names() -> str:
    return ", ".join(f"{f.title} ({f.name})" for f in families().values())
