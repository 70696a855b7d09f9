"""Every identifier and type pattern in coi is matched against the whole value.

A pattern anchored with ``^``/``$`` and used with ``match`` accepts a value with a final
newline (``$`` matches before it), which is how ``step.qa_release\\n`` once passed the role
rules. The house rule: whole-value checks use ``fullmatch`` and patterns carry no anchors.
This test reads coi's source and its loaded modules, and fails on:

* a call of ``re.match`` (or ``from re import match``);
* ``.match(value)`` on a name bound to ``re.compile(...)`` in the same module (a match at a
  position, ``.match(text, pos)``, scans a text and is allowed);
* a regular expression with an unescaped ``^`` or ``$`` outside a character class, whether
  written as a literal in a call of ``re`` or built at import time (every ``re.Pattern`` held by
  a module of coi).

It checks itself first on sources that break each rule, and that it met enough patterns to be
reading the real source, so that it cannot pass by looking at nothing.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import coi

ROOT = Path(coi.__file__).parent
_RE_FUNCS = {"compile", "match", "fullmatch", "search", "sub", "subn", "split", "findall",
             "finditer"}


def has_anchor(pattern: str | bytes) -> bool:
    """An unescaped ``^`` or ``$`` outside a character class."""
    p = pattern.decode("latin-1") if isinstance(pattern, bytes) else pattern
    i = 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i += 1
            if i < len(p) and p[i] == "^":
                i += 1
            if i < len(p) and p[i] == "]":
                i += 1
            while i < len(p) and p[i] != "]":
                i += 2 if p[i] == "\\" else 1
        elif c in "^$":
            return True
        i += 1
    return False


def _is_re_call(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "re" \
            and f.attr in _RE_FUNCS:
        return f.attr
    return None


def source_problems(source: str, where: str) -> tuple[list[str], int]:
    """The rule breaks in one module's source, and how many regex literals it holds."""
    tree = ast.parse(source)
    compiled: set[str] = set()
    for node in ast.walk(tree):  # names bound to re.compile(...)
        value = getattr(node, "value", None)
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(value, ast.Call) \
                and _is_re_call(value) == "compile":
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    compiled.add(t.id)
                elif isinstance(t, ast.Attribute):
                    compiled.add(t.attr)
    problems: list[str] = []
    literals = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "re" and any(
                a.name == "match" for a in node.names):
            problems.append(f"{where}:{node.lineno}: from re import match")
        if not isinstance(node, ast.Call):
            continue
        fn = _is_re_call(node)
        if fn == "match":
            problems.append(f"{where}:{node.lineno}: re.match (use re.fullmatch)")
        if fn is not None and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str | bytes):
            literals += 1
            if has_anchor(node.args[0].value):
                problems.append(f"{where}:{node.lineno}: pattern anchored with ^ or $")
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "match" and len(node.args) < 2:
            obj = f.value
            name = obj.id if isinstance(obj, ast.Name) else (
                obj.attr if isinstance(obj, ast.Attribute) else None)
            if name in compiled:
                problems.append(f"{where}:{node.lineno}: {name}.match (use fullmatch)")
    return problems, literals


def test_the_checker_catches_each_kind_of_break() -> None:
    bad = [
        'import re\nre.match(r"[a-z]+", x)\n',
        'from re import match\n',
        'import re\nP = re.compile(r"[a-z]+")\nP.match(x)\n',
        'import re\nclass C:\n    def f(self):\n        self.p = re.compile("a")\n'
        '        return self.p.match(x)\n',
        'import re\nP: Final = re.compile(r"^[a-z]+")\n',
        'import re\nP = re.compile(r"[a-z]+$")\n',
        'import re\nre.search(b"x$", y)\n',
        'import re\nre.fullmatch("(a|^b)", y)\n',
    ]
    for src in bad:
        assert source_problems(src, "t")[0], src
    fine = [
        'import re\nP = re.compile(r"[a-z]+")\nP.fullmatch(x)\nP.match(text, 5)\n',
        'import re\nre.compile(r"[$^]\\^\\$[^a]")\n',
        'matcher.match(title)\n',
    ]
    for src in fine:
        assert not source_problems(src, "t")[0], src
    assert has_anchor("^a") and has_anchor("a$") and not has_anchor(r"\$[^$]")


def test_no_partial_or_anchored_match_in_coi_source() -> None:
    files = sorted(ROOT.rglob("*.py"))
    problems: list[str] = []
    literals = 0
    for f in files:
        p, n = source_problems(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT.parent)))
        problems += p
        literals += n
    assert len(files) > 50 and literals >= 30  # the real source, not nothing
    assert problems == []


def test_no_anchored_pattern_built_at_import() -> None:
    """Patterns built from pieces (f-strings, concatenation) are checked as compiled."""
    seen = 0
    problems = []
    for mod in pkgutil.walk_packages([str(ROOT)], "coi."):
        if mod.name == "coi.__main__":
            continue  # runs the command line
        m = importlib.import_module(mod.name)
        for name, value in vars(m).items():
            if isinstance(value, re.Pattern) and getattr(m, "__name__", "") == mod.name:
                seen += 1
                if has_anchor(value.pattern):
                    problems.append(f"{mod.name}.{name}: {value.pattern!r}")
    assert seen >= 30
    assert problems == []
