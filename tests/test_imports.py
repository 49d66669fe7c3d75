"""The one-way import rule (DESIGN §2) and no import cycle among our modules, read from the source with `ast`.

Every import counts: at module level, inside functions (a lazy import hides a cycle, it does not remove
it) and under `TYPE_CHECKING` (the modules still depend on each other). So do the command handlers
jobs.comments resolves by name from github_app.commands.GRAMMAR at import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from github_app.commands import GRAMMAR

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clarity", "cli", "github_app", "jobs", "runner", "dashboard", "forge", "devstack", "bench", "tests")
EVERYTHING = frozenset((*PACKAGES, "app"))
# DESIGN §2: which packages of ours each package may import (besides itself).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "app": EVERYTHING,  # the composition root
    "cli": EVERYTHING,  # the command line, a composition root like app.py
    "devstack": EVERYTHING,  # a dev tool composing the whole stack, like app.py; product code never imports it
    "bench": EVERYTHING,
    "tests": EVERYTHING,
    "github_app": frozenset({"clarity"}),
    "jobs": frozenset({"github_app", "runner", "clarity"}),
    "runner": frozenset({"clarity"}),
    "dashboard": frozenset({"clarity"}),
    "clarity": frozenset(),
    "forge": frozenset(),
}
# Modules allowed to break §2, each until the change that moves it. None now: the CLI left the kernel for `cli`.
KNOWN_EXCEPTIONS: frozenset[str] = frozenset()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of ours, by dotted name."""
    found = {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}
    found["app"] = ROOT / "app.py"
    return found


def _imported(module: str, path: Path) -> Iterator[str]:
    """The dotted names a module imports, anywhere in it (`from a import b` is `a.b` when that is a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    known = modules()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base


def _ours(name: str) -> str | None:
    """The module of ours an imported name loads (`import jobs.x.y` loads at least `jobs.x`), if any."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules():
        parts.pop()
    return ".".join(parts) or None


@cache
def graph() -> dict[str, frozenset[str]]:
    """module → the modules of ours it imports."""
    edges: dict[str, frozenset[str]] = {}
    for module, path in modules().items():
        found = {_ours(name) for name in _imported(module, path)}
        edges[module] = frozenset(name for name in found if name is not None and name != module)
    handlers = {spec.handler.partition(":")[0] for spec in GRAMMAR}  # importlib, at jobs.comments' import
    edges["jobs.comments"] |= handlers
    return edges


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_graph_sees_module_level_function_level_and_type_checking_imports() -> None:
    edges = graph()
    assert "jobs.routes" in edges["jobs.intake"]  # module level
    assert "jobs.worker" in edges["cli.ops"]  # inside a function
    assert "clarity.models" in edges["clarity.numbers"]  # under TYPE_CHECKING
    assert "jobs.verbs" in edges["jobs.comments"]  # a handler GRAMMAR names


def test_the_cycle_finder_finds_a_cycle_hidden_behind_a_lazy_import() -> None:
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert cycles(edges) == [["a", "b", "c"]]


def test_no_import_cycle_among_our_modules() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_imports_follow_design_section_2(package: str) -> None:
    against = sorted(f"{module} -> {name}" for module, names in graph().items()
                     if module.split(".")[0] == package and module not in KNOWN_EXCEPTIONS
                     for name in names
                     if name.split(".")[0] not in MAY_IMPORT[package] | {package})
    assert against == []


def test_the_dashboard_does_not_speak_to_github() -> None:
    """DESIGN §2 keeps GitHub in github_app: sign-in reaches it through clarity.signin_port, passed in by app.py."""
    speaking = sorted(f"{module} -> {name}" for module, path in modules().items()
                      if module.split(".")[0] == "dashboard" for name in _imported(module, path)
                      if name.split(".")[0] == "githubkit" or name == "clarity.github_api")
    assert speaking == []


def test_every_known_exception_is_still_needed() -> None:
    """An exception whose module now keeps to §2 (or is gone) must leave KNOWN_EXCEPTIONS."""
    for module in KNOWN_EXCEPTIONS:
        package = module.split(".")[0]
        assert any(name.split(".")[0] not in MAY_IMPORT[package] | {package} for name in graph().get(module, ())), module


def test_the_kernel_imports_nothing_of_ours() -> None:
    """DESIGN §2: `clarity` imports no other package of ours, with no exception; the CLI and localredis left it."""
    assert not any(module.split(".")[0] == "clarity" for module in KNOWN_EXCEPTIONS)
    assert "clarity.cli" not in modules() and "clarity.localredis" not in modules()
