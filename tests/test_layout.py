"""The library's layout: no import cycles, small modules, the library apart from domains."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"
MAX_LINES = 1000
# modules allowed over MAX_LINES, with their size when allowed; split them, then drop them
LONG_MODULES = {
    "hortus/domains/plantshop/simulate.py": 1721,  # example domain: the web shop simulator
}
# library modules allowed to import an example domain (DESIGN: domains and stages use the
# library, never the reverse; they read the project definition, hortus.yaml, instead)
DOMAIN_IMPORTS_ALLOWED: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted((LIB / "hortus").rglob("*.py")):
        parts = list(f.relative_to(LIB).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == (
        "TYPE_CHECKING"
    )


def _walk(node: ast.AST):
    """Every node, imports inside functions included; not `if TYPE_CHECKING:` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child.test):
            for c in child.orelse:
                yield c
                yield from _walk(c)
            continue
        yield child
        yield from _walk(child)


def import_graph() -> dict[str, set[str]]:
    """Return {module: hortus modules it imports} for lib/hortus."""
    modules = _modules()

    def resolve(target: str) -> str | None:
        parts = target.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in modules:
                return ".".join(parts[:i])
        return None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in _walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found |= {resolve(a.name) for a in node.names if a.name.startswith("hortus")}
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([mod] if mod else []))
                if mod == "hortus" or mod.startswith("hortus."):
                    for a in node.names:
                        sub = f"{mod}.{a.name}"
                        found.add(sub if sub in modules else resolve(mod))
        graph[name] = found - {None}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the import cycles: strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_library_has_no_import_cycles():
    """Check that no two library modules import each other, even inside functions."""
    assert cycles(import_graph()) == []


def test_cycle_check_finds_a_cycle():
    """Check that the cycle check reports a cycle (it would pass vacuously otherwise)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_modules_stay_small():
    """Check that no module grows past MAX_LINES lines, and allowed ones do not grow."""
    too_long = {}
    for f in (LIB / "hortus").rglob("*.py"):
        rel = f.relative_to(LIB).as_posix()
        n = len(f.read_text().splitlines())
        if n > max(MAX_LINES, LONG_MODULES.get(rel, 0)):
            too_long[rel] = n
    assert too_long == {}, f"split these modules by idea: {too_long}"


def test_library_does_not_import_domains():
    """Check that no library module imports an example domain."""
    offenders = {
        m
        for m, deps in import_graph().items()
        if not m.startswith("hortus.domains") and any(d.startswith("hortus.domains") for d in deps)
    }
    assert offenders <= DOMAIN_IMPORTS_ALLOWED, sorted(offenders - DOMAIN_IMPORTS_ALLOWED)


def test_old_names_are_the_new_modules():
    """Check that the compatibility names are the moved modules themselves."""
    import hortus.drift
    import hortus.lakehouse.tables
    import hortus.modeling
    import hortus.models.modeling
    import hortus.monitoring.drift
    import hortus.tables
    from hortus import modeling

    assert hortus.tables is hortus.lakehouse.tables
    assert hortus.modeling is modeling is hortus.models.modeling
    assert hortus.drift is hortus.monitoring.drift


def test_area_packages_export_their_names():
    """Check that every lazily re-exported name of an area package resolves."""
    import importlib

    areas = ("lakehouse", "features", "models", "checks", "monitoring", "governance")
    for area in (*areas, "publishing"):
        package = importlib.import_module(f"hortus.{area}")
        for name in package.__all__:
            assert getattr(package, name) is not None, f"hortus.{area}.{name}"
