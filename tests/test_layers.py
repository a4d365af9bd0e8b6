"""The rows of docs/how-it-works.md ("Layers"), held against the code: a module imports only
modules of its own row or below it, packages do not import each other in a circle, and the TUI
reads the sidecar's data contract only (it talks to a sidecar over the admin API)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# top row first; a name is a package or a module of sidecar/
ROWS: list[tuple[str, set[str]]] = [
    ("entry", {"cli", "demo", "eval", "batch", "sizing", "init", "embedded", "__main__"}),
    ("wiring", {"server"}),
    ("adapters", {"proxy", "admin", "listener"}),
    ("core", {"search", "snapshot", "runtime"}),
    ("features", {"experiments", "fleet"}),
    ("parts", {"engine", "rewrite", "events", "upstream"}),
    (
        "data",
        {
            "config",
            "vocab",
            "language",
            "jsontext",
            "masking",
            "percentile",
            "docfiles",
            "credentials",
            "logs",
            "tracing",
            "patterns",
            "remote_apis",
            "documents",
            "__init__",
        },
    ),
]
ROW_OF = {name: i for i, (_, names) in enumerate(ROWS) for name in names}
# what the TUI may import of the sidecar: the data row and the event record the admin API serves
TUI_MAY = {name for name in ROWS[-1][1]} | {"events.event"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``sidecar.``/``tui.`` import in a file, under TYPE_CHECKING and
    inside functions too: a late import is still an arrow."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module in ("sidecar", "tui"):  # ``from sidecar import docfiles``: a module
                here = ROOT / node.module
                found += [
                    (node.lineno, f"{node.module}.{a.name}")
                    for a in node.names
                    if (here / f"{a.name}.py").exists() or (here / a.name).is_dir()
                ]
    return [(line, m) for line, m in found if m.split(".")[0] in ("sidecar", "tui")]


def _unit(module: str) -> str:
    """``sidecar.search.plan`` -> ``search``; ``sidecar.vocab`` -> ``vocab``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_module_of_the_sidecar_has_a_row() -> None:
    units = {_unit(".".join(p.relative_to(ROOT).with_suffix("").parts)) for p in _files("sidecar")}
    assert units - set(ROW_OF) == set(), "give each new package or module its row in ROWS"


def test_no_module_imports_a_row_above_its_own() -> None:
    upward = []
    for path in _files("sidecar"):
        mine = _unit(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for line, module in _imports(path):
            if module.startswith("tui"):  # the command line starts the TUI; nothing else may
                if ROW_OF[mine] == 0:
                    continue
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {module} (the TUI)")
                continue
            theirs = _unit(module)
            if ROW_OF[theirs] < ROW_OF[mine]:
                row, their_row = ROWS[ROW_OF[mine]][0], ROWS[ROW_OF[theirs]][0]
                upward.append(f"{path.relative_to(ROOT)}:{line} ({row}) imports {module} ({their_row})")
    assert upward == []


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


@pytest.mark.parametrize("package", ["sidecar", "tui"])
def test_the_packages_import_each_other_without_a_circle(package: str) -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in _files(package):
        parts = path.relative_to(ROOT).with_suffix("").parts
        mine = ".".join(parts[:2]) if package == "sidecar" else ".".join(parts[: min(len(parts), 3)])
        if mine.endswith(".__init__"):
            mine = mine[: -len(".__init__")]
        for _, module in _imports(path):
            if not module.startswith(package + "."):
                continue
            theirs = ".".join(module.split(".")[:2]) if package == "sidecar" else module
            if theirs != mine and not (package == "tui" and mine == "tui.screens"):
                edges[mine].add(theirs)
    assert _cycle(edges) is None


def test_the_tui_reads_only_the_data_contract_of_the_sidecar() -> None:
    found = []
    for path in _files("tui"):
        for line, module in _imports(path):
            if module.startswith("sidecar."):
                rest = module.removeprefix("sidecar.")
                if rest not in TUI_MAY and rest.split(".")[0] not in TUI_MAY:
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert found == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule itself: a data-row module importing the proxy is reported."""
    bad = tmp_path / "m.py"
    bad.write_text("from sidecar.proxy.app import ProxyApp\nimport sidecar.vocab\n")
    found = [(line, m, ROW_OF[_unit(m)]) for line, m in _imports(bad)]
    assert found == [(1, "sidecar.proxy.app", ROW_OF["proxy"]), (2, "sidecar.vocab", ROW_OF["vocab"])]
    assert ROW_OF["proxy"] < ROW_OF["config"]
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
