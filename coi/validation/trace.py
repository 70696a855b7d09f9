"""Requirements traced to tests: the requirements as data, the tests that name them, the matrix.

Owns reading ``requirements.toml`` (beside this module: each requirement's id, clause, source,
statement and how coi meets it), finding the tests that name a requirement with
``@pytest.mark.req("ID", …)`` (on a test function or method, or a module's ``pytestmark``),
read from the test files' source with :mod:`ast` so nothing is imported or run, and rendering
the trace matrix ``docs/compliance.md`` (requirement → tests → what each asserts: the first
sentence of its docstring, else its name in words).

``python -m coi.validation.trace --write`` regenerates ``docs/compliance.md``; ``--check`` exits 1
naming every requirement without a test, every test that names an unknown requirement, and a
stale matrix. ``tests/test_trace.py`` runs the same checks in the test suite.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

ID = re.compile(r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)*")
FIELDS = ("id", "clause", "source", "statement", "met_by")


class TraceError(ValueError):
    """The requirements file or a marker is malformed."""


@dataclass(frozen=True)
class Requirement:
    id: str
    clause: str
    source: str
    statement: str
    met_by: str


@dataclass(frozen=True)
class MarkedTest:
    """A test that names requirements: its pytest node id, what it asserts, and the ids."""

    node: str
    asserts: str
    requirements: tuple[str, ...]


def requirements_text() -> str:
    return resources.files("coi.validation").joinpath("requirements.toml").read_text("utf-8")


def load_requirements(text: str | None = None) -> list[Requirement]:
    """The requirements, in file order; TraceError naming the first malformed one."""
    try:
        data = tomllib.loads(requirements_text() if text is None else text)
    except tomllib.TOMLDecodeError as e:
        raise TraceError(f"requirements.toml is not valid TOML: {e}") from None
    items = data.get("requirement")
    if not isinstance(items, list) or not items or set(data) != {"requirement"}:
        raise TraceError("requirements.toml must hold one or more [[requirement]] tables only")
    out: list[Requirement] = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or set(item) != set(FIELDS):
            raise TraceError(f"requirement {n} must have exactly the fields {', '.join(FIELDS)}")
        if not all(isinstance(item[f], str) and item[f].strip() for f in FIELDS):
            raise TraceError(f"requirement {n}: every field must be non-empty text")
        if not ID.fullmatch(item["id"]):
            raise TraceError(f"requirement {n}: id {item['id']!r} is not UPPER-CASE-WORDS")
        out.append(Requirement(**{f: item[f] for f in FIELDS}))
    seen: set[str] = set()
    for r in out:
        if r.id in seen:
            raise TraceError(f"requirement id {r.id} is used twice")
        seen.add(r.id)
    return out


def _req_ids(node: ast.expr) -> list[str] | None:
    """The ids of a ``pytest.mark.req("A", "B")`` expression, or None if it is not one."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "req"):
        return None
    ids = []
    for arg in node.args:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise TraceError(f"line {node.lineno}: req() takes requirement ids as string literals")
        ids.append(arg.value)
    if not ids or node.keywords:
        raise TraceError(f"line {node.lineno}: req() takes one or more ids and nothing else")
    return ids


def _module_ids(tree: ast.Module) -> list[str]:
    """Ids given to every test of a module by ``pytestmark = …req(…)`` (or a list of marks)."""
    ids: list[str] = []
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == "pytestmark"):
            value = stmt.value
            marks = value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
            for mark in marks:
                ids += _req_ids(mark) or []
    return ids


def _asserts(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    doc = ast.get_docstring(fn)
    if doc:
        first = " ".join(doc.split("\n\n")[0].split())
        return first.split(". ")[0].rstrip(".") + "."
    words = fn.name.removeprefix("test_").replace("_", " ")
    return words[:1].upper() + words[1:] + "."


def _tests(body: Iterable[ast.stmt], prefix: str) -> Iterable[tuple[str, ast.FunctionDef |
                                                                   ast.AsyncFunctionDef]]:
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and \
                stmt.name.startswith("test"):
            yield prefix + stmt.name, stmt
        elif isinstance(stmt, ast.ClassDef) and stmt.name.startswith("Test"):
            yield from _tests(stmt.body, f"{prefix}{stmt.name}::")


def marked_tests(tests_dir: Path) -> list[MarkedTest]:
    """Every test under ``tests_dir`` that names at least one requirement, in file order."""
    out: list[MarkedTest] = []
    for path in sorted(tests_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        module_ids = _module_ids(tree)
        for name, fn in _tests(tree.body, f"{tests_dir.name}/{path.name}::"):
            ids = list(module_ids)
            for dec in fn.decorator_list:
                ids += _req_ids(dec) or []
            if ids:
                out.append(MarkedTest(node=name, asserts=_asserts(fn),
                                      requirements=tuple(dict.fromkeys(ids))))
    return out


def problems(reqs: Sequence[Requirement], tests: Sequence[MarkedTest]) -> list[str]:
    """Every requirement without a test and every test naming an unknown requirement."""
    known = {r.id for r in reqs}
    named = {i for t in tests for i in t.requirements}
    out = [f"requirement {r.id} ({r.clause}) has no test" for r in reqs if r.id not in named]
    out += [f"{t.node} names unknown requirement {i}" for t in tests for i in t.requirements
            if i not in known]
    return out


def render(reqs: Sequence[Requirement], tests: Sequence[MarkedTest]) -> str:
    """``docs/compliance.md``: the trace matrix, in the requirements' order."""
    lines = [
        "# Compliance: requirements traced to tests",
        "",
        "Generated by `python -m coi.validation.trace --write` from "
        "`coi/validation/requirements.toml` and the `@pytest.mark.req` markers of the tests; do "
        "not edit by hand (CI fails when it is stale). `coi validate` runs these tests against "
        "an installed coi and reports each requirement's outcome on that installation.",
        "",
        "| requirement | clause | tests |",
        "|---|---|---|",
    ]
    by_req = {r.id: [t for t in tests if r.id in t.requirements] for r in reqs}
    for r in reqs:
        lines.append(f"| [{r.id}](#{r.id.lower()}) | {r.clause} ({r.source}) | "
                     f"{len(by_req[r.id])} |")
    for r in reqs:
        lines += ["", f"## {r.id}", "", f"**{r.clause}** ({r.source}). {r.statement}", "",
                  f"How coi meets it: {r.met_by}", ""]
        lines += [f"- `{t.node}`: {t.asserts}" for t in by_req[r.id]]
    return "\n".join(lines) + "\n"


def repo_paths() -> tuple[Path, Path]:
    """``tests/`` and ``docs/compliance.md`` of the source checkout this module runs from."""
    root = Path(__file__).resolve().parents[2]
    return root / "tests", root / "docs" / "compliance.md"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coi.validation.trace",
                                     description="Check or write docs/compliance.md.")
    parser.add_argument("--write", action="store_true", help="regenerate docs/compliance.md")
    parser.add_argument("--check", action="store_true", help="exit 1 on any gap or a stale file")
    args = parser.parse_args(argv)
    tests_dir, doc = repo_paths()
    if not tests_dir.is_dir():
        print(f"coi: no tests folder at {tests_dir}: run this from a source checkout",
              file=sys.stderr)
        return 2
    try:
        reqs, tests = load_requirements(), marked_tests(tests_dir)
    except TraceError as e:
        print(f"coi: {e}", file=sys.stderr)
        return 1
    text = render(reqs, tests)
    found = problems(reqs, tests)
    if args.write:
        doc.write_text(text, encoding="utf-8")
    elif not doc.is_file() or doc.read_text(encoding="utf-8") != text:
        found.append(f"{doc} is stale: run python -m coi.validation.trace --write")
    for p in found:
        print(f"coi: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
