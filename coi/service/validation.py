"""``coi validate``: installation and operational qualification of this coi, as evidence filed.

Owns the run: the installation qualification (``qualification``), the operational
qualification (``coi.validation.oq``: the tests that name requirements, run against the
installed package on scratch ledgers, never the site's own), the judgement (the result is
PASSED only when every installation check passed or is a stated deviation and every requirement
in scope passed; PARTIAL when ``only`` left requirements out; FAILED otherwise), and the
evidence: ``DIR/validation.json`` and ``DIR/validation.pdf``, each written atomically, and,
with ``sign_as``, a ledger entry of the site (``validation.report``, meaning ``reviewed``)
that binds the JSON file's SHA-256 and the result to the person who reviewed it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coi.export.validation_pdf import write_validation_pdf
from coi.service.errors import ConfigError
from coi.service.files import write_atomically
from coi.service.ledger import LedgerService, Party, Unlocked
from coi.service.qualification import Check, installed_files, site_checks, time_zones, versions
from coi.validation import oq
from coi.validation.trace import load_requirements, marked_tests, repo_paths


@dataclass(frozen=True)
class Validation:
    result: str  # PASSED | PARTIAL | FAILED
    json_path: Path
    pdf_path: Path
    sha256: str  # of validation.json
    signed_index: int | None
    report: dict[str, Any]


def find_tests(tests: Path | None) -> Path:
    """The test suite to qualify with: ``tests``, else the source checkout's ``tests/``."""
    found = tests if tests is not None else repo_paths()[0]
    if not (found / "conftest.py").is_file():
        raise ConfigError(f"no coi test suite at {found}: pass --tests with the tests/ folder "
                          "of this coi release's source")
    return found


def _summary(installation: Sequence[Check], outcomes: Sequence[oq.RequirementOutcome],
             only: Sequence[str]) -> tuple[str, str, list[str]]:
    deviations = [f"{c.name}: {c.detail}" for c in installation if c.status == "deviation"]
    deviations += [f"{t.node} skipped: {t.detail}" for r in outcomes for t in r.tests
                   if t.outcome == "skipped"]
    in_scope = [r for r in outcomes if not only or r.requirement.id in only]
    failed = [r.requirement.id for r in in_scope if r.outcome != "passed"]
    failed += [c.name for c in installation if c.status == "failed"]
    if failed:
        return "FAILED", f"not passed: {', '.join(failed)}.", deviations
    passed = f"{len(in_scope)} requirement(s) passed; installation qualified."
    if only:
        left = len(outcomes) - len(in_scope)
        deviations.append(f"partial validation: {left} requirement(s) left out by --only")
        return "PARTIAL", passed + f" {left} requirement(s) were not in scope.", deviations
    return "PASSED", passed, deviations


def validate(out_dir: Path, *, db: str | None = None, log_key: str | None = None,
             tests: Path | None = None, postgres: str | None = None,
             only: Sequence[str] = (), executor: str | None = None,
             now: dt.datetime | None = None) -> Validation:
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir} exists and is not an empty folder: give a new folder")
    reqs = load_requirements()
    unknown = sorted(set(only) - {r.id for r in reqs})
    if unknown:
        raise ConfigError(f"unknown requirement(s) {', '.join(unknown)}: see "
                          "docs/compliance.md for the ids")
    tests_dir = find_tests(tests)
    out_dir.mkdir(parents=True, exist_ok=True)
    installation = [installed_files(), time_zones(None), *site_checks(db, log_key)]
    marked = marked_tests(tests_dir)
    with tempfile.TemporaryDirectory(prefix="coi-oq-", dir=out_dir) as work:
        report_xml = oq.run_marked_tests(tests_dir, Path(work), postgres=postgres, only=only)
        results = oq.read_junit(report_xml, tests_dir)
        (out_dir / "oq-pytest.log").write_bytes((Path(work) / "oq-pytest.log").read_bytes())
    outcomes = [r if not only or r.requirement.id in only else
                oq.RequirementOutcome(r.requirement, "not in scope", r.tests)
                for r in oq.judge(reqs, marked, results)]
    result, summary, deviations = _summary(installation, outcomes, only)
    when = (now or dt.datetime.now().astimezone()).isoformat(timespec="seconds")
    report: dict[str, Any] = {
        "format": "coi-validation/v1", "result": result, "summary": summary,
        "system": {"date": when, "executor": executor or getpass.getuser(),
                   "host": platform.node(), "tests": str(tests_dir),
                   "database": db or "(default)", **versions()},
        "installation": [asdict(c) for c in installation],
        "requirements": [{"id": r.requirement.id, "clause": r.requirement.clause,
                          "source": r.requirement.source, "statement": r.requirement.statement,
                          "outcome": r.outcome,
                          "tests": [asdict(t) for t in r.tests]} for r in outcomes],
        "deviations": deviations,
    }
    data = (json.dumps(report, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()
    json_path, pdf_path = out_dir / "validation.json", out_dir / "validation.pdf"
    write_atomically(json_path, data, overwrite=False)
    write_validation_pdf(report, pdf_path)
    return Validation(result=result, json_path=json_path, pdf_path=pdf_path,
                      sha256=hashlib.sha256(data).hexdigest(), signed_index=None, report=report)


def sign(svc: LedgerService, v: Validation, reviewer: Unlocked) -> int:
    """Record the reviewed result as a ledger entry of the site (meaning ``reviewed``)."""
    data = {"result": v.result, "validation_json_sha256": v.sha256,
            "coi": str(v.report["system"].get("coi", "")),
            "requirements": len(v.report["requirements"]),
            "passed": sum(r["outcome"] == "passed" for r in v.report["requirements"])}
    return svc.append("validation.report", svc.origin(), data, [Party(reviewer, "reviewed")]).index
