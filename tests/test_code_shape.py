"""The shape of ``coi.domain`` read from its source: no import cycle, imports at the top, small.

Read with :mod:`ast` rather than by importing, so an import made only for type checking (under
``if TYPE_CHECKING:``) or inside a function counts like any other: a cycle hidden that way is still
a cycle. No module is over 500 lines (issue 17: split along the seams instead). A new module is
covered without editing this test (the package directory is walked).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ROOT / "coi" / "domain"
MAX_LINES = 500


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package_dir: Path, root: Path | None = None) -> dict[str, Path]:
    """Module name -> file; names are relative to ``root`` (default: the package's parent)."""
    root = package_dir.parent if root is None else root
    return {_module_name(p, root): p for p in sorted(package_dir.rglob("*.py"))}


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Every module name an import statement may bind (submodules named in ``from`` included)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = module.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(package_dir: Path, root: Path | None = None) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports, wherever the import stands."""
    modules = _modules(package_dir, root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _imported(node, name, path.name == "__init__.py"):
                    if target in modules and target != name:
                        graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def late_imports(path: Path) -> list[int]:
    """Line numbers of imports that are not at the top of the module (after code, or nested)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top: set[int] = set()
    for i, stmt in enumerate(tree.body):
        if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # the docstring
        if not isinstance(stmt, ast.Import | ast.ImportFrom):
            break
        top.add(id(stmt))
    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top
    )


def test_domain_has_no_import_cycle() -> None:
    graph = import_graph(DOMAIN, ROOT)
    assert "coi.domain.scan" in graph and "coi.domain.isbt" in graph["coi.domain.scan"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in coi.domain: " + " -> ".join(cycle or [])


def test_domain_imports_stand_at_the_top_of_each_module() -> None:
    modules = _modules(DOMAIN, ROOT)
    late = {name: lines for name, path in modules.items() if (lines := late_imports(path))}
    assert late == {}, f"imports below the top of the module (line numbers): {late}"


def test_no_domain_module_is_over_500_lines() -> None:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in _modules(DOMAIN, ROOT).items()
    }
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert over == {}, f"modules over {MAX_LINES} lines: {over}"


def test_the_checks_see_cycles_hidden_under_type_checking_and_late_imports(
    tmp_path: Path,
) -> None:
    """The checker itself: a cycle made only of a TYPE_CHECKING import and a function-level
    import is found, and both imports are reported as not at the top."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""A package."""\n')
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        '"""A."""\nfrom typing import TYPE_CHECKING\n\n'
        "if TYPE_CHECKING:\n    from pkg.sub import b\n"
    )
    (pkg / "sub" / "b.py").write_text("def f() -> None:\n    from ..c import g\n")
    (pkg / "c.py").write_text("import os\n\nfrom . import a\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg", "pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    assert late_imports(pkg / "a.py") == [5]
    assert late_imports(pkg / "sub" / "b.py") == [2]
    assert late_imports(pkg / "c.py") == []
    del graph["pkg.c"]
    graph["pkg.sub.b"] = set()
    assert find_cycle(graph) is None


def test_every_package_of_coi_is_shipped_by_a_wheel() -> None:
    """A package missing from pyproject's list works in an editable install and is absent from a
    wheel: the installed coi would fail on its first import of it."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = set(project["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "coi").rglob("__init__.py")}
    assert on_disk - shipped == set()
