"""The import rules of docs/architecture.md, read from the source with `ast`: no cycles between
modules, and the math packages never reach Ray or RLlib."""

from __future__ import annotations

import ast
from pathlib import Path

import ray_macaw

PACKAGE = Path(ray_macaw.__file__).parent
MATH_PACKAGES = ("ray_macaw.nn", "ray_macaw.macaw", "ray_macaw.pearl")
# The layers of docs/architecture.md, bottom first: a module imports its own unit and units of
# lower layers only (never a layer above, nor another unit of its own layer).
LAYERS = (
    ("ray_macaw.version", "ray_macaw.errors", "ray_macaw.outputs"),
    ("ray_macaw.tasks", "ray_macaw.nn"),
    ("ray_macaw.data",),
    ("ray_macaw.macaw", "ray_macaw.pearl", "ray_macaw.runtime"),
    ("ray_macaw.collect",),
    ("ray_macaw.evaluation",),
    ("ray_macaw.algorithms", "ray_macaw.algorithms.common"),
    ("ray_macaw.algorithms.replica",),
    ("ray_macaw.algorithms.macaw", "ray_macaw.algorithms.pearl"),
    ("ray_macaw.training",),
    ("ray_macaw.tune", "ray_macaw.report"),
    ("ray_macaw.supervised",),
    ("ray_macaw.cli",),
    ("ray_macaw",),  # the public names (its __init__), from anywhere below
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith(
        "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that runs: top level and inside functions (a lazy import is a
    dependency too), but not the ones under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_only(node):
            stack.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + is_package]
    return ".".join([*base, *([node.module] if node.module else [])])


def targets(module: str) -> set[str]:
    """Names this module imports: its own package's modules and outside top-level packages."""
    tree = ast.parse(MODULES[module].read_text())
    names: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        source = _absolute(module, node)
        submodules = {f"{source}.{a.name}" for a in node.names} & MODULES.keys()
        names.update(submodules or {source})
    return names


def graph() -> dict[str, set[str]]:
    return {m: {t for t in targets(m) if t in MODULES and t != m} for m in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_walker_sees_imports_of_every_kind() -> None:
    """The reader itself: lazy imports count, TYPE_CHECKING ones do not, relative ones resolve."""
    edges = graph()
    # a top-level import, and a function-local one (cli/collect.py imports collection lazily)
    assert "ray_macaw.algorithms.common.config" in edges["ray_macaw.algorithms.macaw.config"]
    assert "ray_macaw.collect.run" in edges["ray_macaw.cli.collect"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules() -> None:
    found = cycles(graph())
    assert not found, "import cycles (break each by moving what both need below them): " + (
        "; ".join(" <-> ".join(c) for c in found)
    )


def unit(module: str) -> str:
    """The longest `LAYERS` entry that `module` is or lies in."""
    parts = module.split(".")
    return next(u for i in range(len(parts), 0, -1) if (u := ".".join(parts[:i])) in RANK)


def test_every_module_belongs_to_a_layer() -> None:
    assert all(unit(m) for m in MODULES)


def test_modules_import_only_downwards() -> None:
    upward = [
        f"{m} -> {t}"
        for m, targets_ in graph().items()
        for t in sorted(targets_)
        if unit(t) != unit(m) and RANK[unit(t)] >= RANK[unit(m)]
    ]
    assert not upward, "imports against the layers of docs/architecture.md: " + "; ".join(upward)


def test_math_packages_reach_neither_ray_nor_rllib() -> None:
    """nn/, macaw/ and pearl/ are the pure math: importing them, however indirectly, never
    imports Ray (so they run, and are tested, anywhere torch does)."""
    edges = graph()
    for start in (m for m in MODULES if m.startswith(MATH_PACKAGES)):
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            outside = {t.split(".")[0] for t in targets(module)} - {"ray_macaw"}
            assert "ray" not in outside, f"{start} reaches ray through {module}"
            todo.extend(edges[module])
