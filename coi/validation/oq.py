"""Operational qualification: the tests that name requirements, run against the installed coi.

Owns running pytest on the test suite's marked tests (``-m req``) in a child process, on scratch
ledgers under a folder of its own (the site's database and keys are never reached: the
variables that name them are removed from the child's environment). The release's ``tests/``
and ``docs/`` are copied into that folder with the release's pytest settings and run from
there, so that the code under test is the installed coi, never a source tree beside the tests.
It also owns reading the outcome of each
test from the JUnit XML report, and judging each requirement: **passed** when at least one of
its tests passed and none failed; **failed** when one failed; **not run** when none ran (all
skipped, e.g. PostgreSQL tests without a server, or left out with ``only``). Skipped tests are
listed with their reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coi.validation.trace import MarkedTest, Requirement

SITE_VARIABLES = ("COI_DATABASE_URL", "COI_READ_DATABASE_URL", "COI_LOG_KEY", "COI_PHI_KEY")


@dataclass(frozen=True)
class TestOutcome:
    node: str  # "tests/test_x.py::test_y" as in the trace matrix
    outcome: str  # passed | failed | skipped
    detail: str = ""  # the failure message or the skip reason, first line


@dataclass(frozen=True)
class RequirementOutcome:
    requirement: Requirement
    outcome: str  # passed | failed | not run
    tests: tuple[TestOutcome, ...] = field(default=())


def _node(classname: str, name: str, tests_dir: Path) -> str:
    """A JUnit test case as the trace matrix names it (parametrized cases fold into one)."""
    parts = classname.split(".")
    try:
        at = parts.index(tests_dir.name)
    except ValueError:
        at = 0
    module = parts[at:]
    cls = list(module[2:])
    path = "/".join(module[:2]) + ".py"
    return "::".join([path, *cls, name.split("[", 1)[0]])


def read_junit(report: Path, tests_dir: Path) -> dict[str, list[TestOutcome]]:
    """Each test node's outcomes (one per parametrized case) from a JUnit XML report."""
    out: dict[str, list[TestOutcome]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        node = _node(case.get("classname", ""), case.get("name", ""), tests_dir)
        outcome, detail = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, detail = "failed", (child.get("message") or "").split("\n")[0]
            elif child.tag == "skipped":
                outcome, detail = "skipped", (child.get("message") or "").split("\n")[0]
        out.setdefault(node, []).append(TestOutcome(node, outcome, detail[:300]))
    return out


def _stage(tests_dir: Path, work: Path) -> Path:
    """Copy the release's tests (and docs) into ``work`` with its pytest settings as pytest.ini;
    return the copied tests folder."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    staged = work / "tests"
    shutil.copytree(tests_dir, staged, ignore=skip)
    if (tests_dir.parent / "docs").is_dir():
        shutil.copytree(tests_dir.parent / "docs", work / "docs", ignore=skip)
    options: dict[str, object] = {}
    pyproject = tests_dir.parent / "pyproject.toml"
    if pyproject.is_file():
        options = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get(
            "pytest", {}).get("ini_options", {})
    lines = ["[pytest]"]
    for key, value in options.items():
        if key == "testpaths":
            continue
        if isinstance(value, list):
            lines.append(f"{key} =")
            lines += [f"    {v}" for v in value]
        else:
            lines.append(f"{key} = {value}")
    (work / "pytest.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return staged


def run_marked_tests(tests_dir: Path, work: Path, *, postgres: str | None = None,
                     only: Sequence[str] = (), timeout_s: int = 3600) -> Path:
    """Run the marked tests (all, or those naming a requirement in ``only``) in a child pytest;
    return the JUnit report's path. The child's temporary folders live under ``work``."""
    staged = _stage(tests_dir, work)
    env = {k: v for k, v in os.environ.items() if k not in SITE_VARIABLES}
    env.pop("COI_TEST_POSTGRES_URL", None)
    if postgres:
        env["COI_TEST_POSTGRES_URL"] = postgres
    report = work / "oq-junit.xml"
    args = [sys.executable, "-m", "pytest", str(staged), "-p", "no:cacheprovider", "-q",
            "--basetemp", str(work / "oq-scratch"), f"--junitxml={report}",
            "-o", "junit_family=xunit1", "-m", "req"]
    if only:
        args += ["-k", " or ".join(_test_names(tests_dir, only))]
    done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    (work / "oq-pytest.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if not report.is_file():
        raise RuntimeError(f"the operational qualification did not run (pytest exit "
                           f"{done.returncode}); see {work / 'oq-pytest.log'}")
    return report


def _test_names(tests_dir: Path, only: Sequence[str]) -> list[str]:
    from coi.validation.trace import marked_tests

    names = {t.node.rsplit("::", 1)[1] for t in marked_tests(tests_dir)
             if set(t.requirements) & set(only)}
    return sorted(names) or ["no_test_matches"]


def judge(reqs: Sequence[Requirement], marked: Sequence[MarkedTest],
          results: dict[str, list[TestOutcome]]) -> list[RequirementOutcome]:
    """Each requirement's outcome from its tests' outcomes (see the module docstring)."""
    out = []
    for r in reqs:
        runs = tuple(o for t in marked if r.id in t.requirements for o in results.get(t.node, []))
        if any(o.outcome == "failed" for o in runs):
            verdict = "failed"
        elif any(o.outcome == "passed" for o in runs):
            verdict = "passed"
        else:
            verdict = "not run"
        out.append(RequirementOutcome(r, verdict, runs))
    return out
