"""storage/ and api/ stay layered: no import cycle among their modules (imports inside functions included) and
none over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("storage", "api")


def imports(path: Path) -> set[str]:
    """The modules of storage/ and api/ that this module imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in PACKAGES and module_path(name).exists()}
    return found


def module_path(name: str) -> Path:
    return ROOT / (name.replace(".", "/") + ".py")


def modules() -> dict[str, Path]:
    return {f"{p}.{f.stem}": f for p in PACKAGES for f in sorted((ROOT / p).glob("*.py")) if f.stem != "__init__"}


def test_no_import_cycle_in_storage_or_api():
    graph = {name: imports(path) - {name} for name, path in modules().items()}
    done: set[str] = set()

    def visit(name: str, chain: list[str]) -> None:
        if name in chain:
            pytest.fail("import cycle: " + " → ".join(chain[chain.index(name):] + [name]))
        if name in done:
            return
        for imported in sorted(graph.get(name, ())):
            visit(imported, chain + [name])
        done.add(name)

    for name in graph:
        visit(name, [])


@pytest.mark.parametrize("name", list(modules()))
def test_no_module_over_400_lines(name):
    assert len(modules()[name].read_text().splitlines()) <= 400, name
