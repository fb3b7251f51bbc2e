"""The package layout: every module imports, and no import (lazy ones included) closes a circle,
between modules or between the stage sub-packages of src/vaeok."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "vaeok"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """vaeok modules `name` imports anywhere in its body (function-level imports included;
    `if TYPE_CHECKING:` blocks left out: they never run)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # `from vaeok.x import name` -> vaeok.x
                t = t.rpartition(".")[0]
            if t and t != name and t != "vaeok":
                out.add(t)
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the directed graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _stage(module: str) -> str:
    """vaeok.study.sweep -> study; vaeok.cli -> cli."""
    return module.split(".")[1] if "." in module else module


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"vaeok.__main__"}))  # __main__ runs the CLI
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_no_import_circle_between_modules() -> None:
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH) or [])


def test_no_import_circle_between_stage_packages() -> None:
    stages: dict[str, set[str]] = {}
    for name, deps in GRAPH.items():
        stages.setdefault(_stage(name), set()).update(_stage(d) for d in deps if _stage(d) != _stage(name))
    assert _cycle(stages) is None, " -> ".join(_cycle(stages) or [])


def test_the_cycle_check_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_stage_is_a_folder_and_the_top_level_is_thin() -> None:
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "cli.py", "experiment.py"], top
