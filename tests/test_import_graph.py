"""The package's import graph (read from the source with `ast`, imports inside functions included, those only a
type checker reads left out) has no cycle, and no import runs back up: training stands beside the index and
search, below the server and the CLI; no CLI verb is more than seven imports above the leaves."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "emsearch"

# A module of each part may import only the parts named here (and the shared modules at the top of emsearch/).
MAY_IMPORT = {
    "emsearch.train": set(),
    "emsearch.index": set(),
    "emsearch.search": {"emsearch.index"},
    "emsearch.interop": {"emsearch.index"},
    "emsearch.server": {"emsearch.index", "emsearch.search"},
}
PARTS = ("emsearch.train", "emsearch.index", "emsearch.search", "emsearch.interop", "emsearch.server",
         "emsearch.cli")


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(path: Path, package: str, known: set[str]) -> set[str]:
    """The emsearch modules `path` imports; `from P import name` counts as P.name where that is a module, and a
    package's lazy exports (`lazy_exports(__name__, {name: module})`) as imports of their modules."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            found |= {v.value for v in node.args[1].values}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in found if m in known}


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` but those under `if TYPE_CHECKING:`, which never run."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
            continue
        yield child
        yield from _runtime_nodes(child)


def graph() -> dict[str, set[str]]:
    names = module_names()
    known = set(names)
    edges = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        # A package's own submodules and its parents are not dependencies of a module, only paths to it.
        edges[name] = {m for m in imports(path, package, known) if m != name and not name.startswith(m + ".")}
    return edges


def part(module: str) -> str | None:
    return next((p for p in PARTS if module == p or module.startswith(p + ".")), None)


def longest_path(edges: dict[str, set[str]], start: str, memo: dict[str, int]) -> int:
    """Modules on the longest import chain from `start` down to a leaf."""
    if start not in memo:
        memo[start] = 1 + max((longest_path(edges, m, memo) for m in edges[start]), default=0)
    return memo[start]


def test_the_import_graph_has_no_cycle():
    edges, state, cycles = graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


@pytest.mark.parametrize("lower", sorted(MAY_IMPORT))
def test_no_import_runs_back_up(lower):
    edges = graph()
    allowed = MAY_IMPORT[lower] | {lower}
    upward = sorted((a, b) for a, targets in edges.items() if part(a) == lower
                    for b in targets if part(b) is not None and part(b) not in allowed)
    assert not upward, upward


def test_training_never_imports_search_index_server_or_cli():
    edges = graph()
    reached, todo = set(), [m for m in edges if part(m) == "emsearch.train"]
    while todo:  # everything training loads, however indirectly
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(edges[module])
    assert not {m for m in reached if part(m) in ("emsearch.search", "emsearch.index", "emsearch.server",
                                                  "emsearch.cli")}
    assert "emsearch.train.loop" in reached and "emsearch.evaluate" in reached


VERBS = sorted(p.stem for p in (ROOT / "cli").glob("*.py") if p.stem not in ("__init__", "__main__", "app"))


@pytest.mark.parametrize("verb", VERBS)
def test_a_cli_verb_is_at_most_seven_imports_above_the_leaves(verb):
    edges, memo = graph(), {}
    assert longest_path(edges, f"emsearch.cli.{verb}", memo) - 1 <= 7


SCRIPTS = sorted(p for folder in ("benchmarks", "training") for p in (ROOT.parent / folder).glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_name_a_script_takes_from_the_package_exists(script):
    """The benchmarks and training scripts are not run by the tests; a package change must not leave them broken."""
    names = names_imported(script)
    missing = [f"{module}.{name}" for module, name in names
               if not hasattr(importlib.import_module(module), name) and not _is_module(f"{module}.{name}")]
    assert not missing, missing


def names_imported(path: Path) -> list[tuple[str, str]]:
    return [(node.module, alias.name) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "emsearch"
            for alias in node.names]


def _is_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None
