"""``coi validate`` end to end: the installation checked, the marked tests run on scratch ledgers,
validation.json and validation.pdf written (the PDF read back as text), the result e-signed as a
ledger entry of the site, and the exit code 0 only when every requirement passed.

The operational qualification here runs the tests of two requirements (``--only``): the whole
set runs in ``coi validate`` itself (minutes), not inside the test suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.service.ledger import LedgerService
from coi.service.validation import validate
from coi.validation.trace import repo_paths
from tests.conftest import PASSWORDS, Ledger

runner = CliRunner()


def _pdf_text(pdf: Path) -> str:
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext (poppler-utils) is needed: .ci/run installs it"
    return subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_validate_writes_the_evidence_and_signs_it(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORDS["admin"] + "\n")
    out = tmp_path / "evidence"
    done = runner.invoke(app, ["validate", "-o", str(out), "--only", "LOCKOUT", "--only",
                               "SIG-LINK", "--db", sqlite_ledger.db, "--log-key",
                               str(sqlite_ledger.log_key), "--sign-as", "admin",
                               "--password-file", str(pw)])
    assert done.exit_code == 1, done.output  # PARTIAL: not every requirement was run
    assert done.output.startswith("PARTIAL: 2 requirement(s) passed")
    report = json.loads((out / "validation.json").read_text())
    by_id = {r["id"]: r for r in report["requirements"]}
    assert by_id["LOCKOUT"]["outcome"] == by_id["SIG-LINK"]["outcome"] == "passed"
    assert {t["outcome"] for t in by_id["SIG-LINK"]["tests"]} == {"passed"}
    assert len({t["node"] for t in by_id["SIG-LINK"]["tests"]}) == 3
    assert by_id["AUDIT-TRAIL"]["outcome"] == "not in scope"
    checks = {c["name"]: c["status"] for c in report["installation"]}
    assert checks["database schema"] == checks["log key file"] == checks["PHI key file"] \
        == "passed"
    assert checks["installed files"] in ("passed", "deviation")
    text = _pdf_text(out / "validation.pdf")
    for needed in ("coi validation report", "PARTIAL", "LOCKOUT (11.300(d), 21 CFR Part 11)",
                   "test_lockout_after_five_failures_is_recorded_and_stops_signing", "PASSED",
                   "Installation qualification", "Deviations", "NOT IN SCOPE"):
        assert needed in text, needed
    # the e-signature: a ledger entry binding the JSON file's hash, meaning "reviewed"
    svc = LedgerService.open(sqlite_ledger.db, str(sqlite_ledger.log_key))
    rows = [r for r in svc.store.rows_for_subject(svc.origin()) if r.type == "validation.report"]
    assert len(rows) == 1 and f"entry {rows[0].index}" in done.output
    statement = json.loads(rows[0].statement)
    assert statement["signers"][0]["meaning"] == "reviewed"
    assert statement["data"]["validation_json_sha256"] in done.output
    assert statement["data"]["result"] == "PARTIAL"
    svc.verify()


def test_a_world_readable_key_fails_the_installation_check(sqlite_ledger: Ledger,
                                                           tmp_path: Path) -> None:
    assert sqlite_ledger.log_key is not None
    os.chmod(sqlite_ledger.log_key, 0o644)
    v = validate(tmp_path / "ev", db=sqlite_ledger.db, log_key=str(sqlite_ledger.log_key),
                 only=["SIG-LINK"])
    assert v.result == "FAILED"
    check = next(c for c in v.report["installation"] if c["name"] == "log key file")
    assert check["status"] == "failed" and "chmod 600" in check["detail"]


def test_a_group_readable_or_missing_phi_key_fails_the_installation_check(
        sqlite_ledger: Ledger, tmp_path: Path) -> None:
    phi_key = Path(sqlite_ledger.db + ".phikey")
    os.chmod(phi_key, 0o640)
    v = validate(tmp_path / "ev", db=sqlite_ledger.db, log_key=str(sqlite_ledger.log_key),
                 only=["SIG-LINK"])
    assert v.result == "FAILED"
    check = next(c for c in v.report["installation"] if c["name"] == "PHI key file")
    assert check["status"] == "failed" and "mode 0640" in check["detail"]
    assert "chmod 600" in check["detail"]
    phi_key.unlink()
    v = validate(tmp_path / "ev2", db=sqlite_ledger.db, log_key=str(sqlite_ledger.log_key),
                 only=["SIG-LINK"])
    check = next(c for c in v.report["installation"] if c["name"] == "PHI key file")
    assert v.result == "FAILED" and check["status"] == "failed" and "missing" in check["detail"]


def test_usage_errors_write_nothing(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    done = runner.invoke(app, ["validate", "-o", str(tmp_path / "full")])
    assert done.exit_code == 2 and "not an empty folder" in done.output
    done = runner.invoke(app, ["validate", "-o", str(tmp_path / "a"), "--only", "NO-SUCH"])
    assert done.exit_code == 2 and "unknown requirement" in done.output
    done = runner.invoke(app, ["validate", "-o", str(tmp_path / "b"), "--tests",
                               str(tmp_path)])
    assert done.exit_code == 2 and "no coi test suite" in done.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_source_checkout_is_found(tmp_path: Path) -> None:
    assert (repo_paths()[0] / "conftest.py").is_file()


@pytest.fixture(autouse=True)
def _no_site_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """The qualification must never reach a site named by the environment."""
    monkeypatch.delenv("COI_DATABASE_URL", raising=False)
