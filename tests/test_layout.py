"""The code's shape, as issue 16 set it: layers point one way with no import cycle, the generic reuse code names no
model family, and no module, test or benchmark outgrows one job (at most 400 lines; run.py, which only wires, under 150)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from assistant.families import MODULES, families

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("domain", "storage", "assistant", "api", "ui", "cli")
# What each layer may import (imports inside functions included); run.py wires them all.
MAY_IMPORT = {
    "domain": set(),
    "storage": {"domain"},
    "assistant": {"domain", "storage"},
    "api": {"domain", "storage", "assistant"},
    "ui": {"domain", "storage", "assistant"},
    "cli": {"domain", "storage", "assistant", "ui"},
    "run": set(PACKAGES),
}


def modules() -> dict[str, Path]:
    found = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    }
    return found | {"run": ROOT / "run.py"}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The app's modules that this one imports, anywhere in it (`from a.b import c` counts a.b.c when it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known and f"{name}.__init__" not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name if name in known else f"{name}.__init__")
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_each_layer_imports_only_the_layers_below_it():
    wrong = [
        f"{name} imports {imported}"
        for name, imported_names in graph().items()
        for imported in imported_names
        if imported.split(".")[0] != name.split(".")[0] and imported.split(".")[0] not in MAY_IMPORT[name.split(".")[0]]
    ]
    assert not wrong


def test_no_import_cycle():
    edges, done = graph(), set()

    def visit(name: str, chain: list[str]) -> None:
        if name in chain:
            pytest.fail("import cycle: " + " → ".join(chain[chain.index(name) :] + [name]))
        if name in done:
            return
        for imported in sorted(edges.get(name, ())):
            visit(imported, chain + [name])
        done.add(name)

    for name in edges:
        visit(name, [])


@pytest.mark.parametrize("module", ["assistant/reuse.py", "assistant/incremental.py"])
def test_the_generic_reuse_code_names_no_family(module):
    words = {"qwen", "gemma", "omni", "deepstack"} | set(MODULES)
    for family in families().values():
        words |= {family.name, family.title}
    text = (ROOT / module).read_text().lower()
    assert not [word for word in words if re.search(re.escape(word.lower()), text)]


def sized() -> dict[str, Path]:
    """The app's modules, the tests' and the benchmarks'."""
    extra = {f"{path.parent.name}.{path.stem}": path for folder in ("tests", "bench") for path in sorted((ROOT / folder).glob("*.py"))}
    return modules() | extra


@pytest.mark.parametrize("name", list(sized()))
def test_no_module_over_400_lines(name):
    lines = len(sized()[name].read_text().splitlines())
    assert lines <= (150 if name == "run" else 400), f"{name}: {lines} lines"
