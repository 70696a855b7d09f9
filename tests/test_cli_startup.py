"""A fast start: ``coi --help`` and ``coi --version`` import none of the heavy libraries
(cryptography, SQLAlchemy, Alembic, psycopg, Textual, reportlab, Pillow, barcodes), which each
command imports only when it runs; ``coi demo --no-tui`` builds the demo without opening the UI.
The time itself is measured by ``bench/bench_startup.py`` against a same-run baseline, never
here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coi.cli.main import app

HEAVY = ("cryptography", "sqlalchemy", "sqlmodel", "alembic", "psycopg", "textual", "reportlab",
         "PIL", "qrcode", "zxingcpp", "fhir")

PROBE = """
import json, sys
args, watched = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
from coi.cli.main import run
sys.argv = ["coi", *args]
code = None
try:
    run()
except SystemExit as e:
    code = e.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & watched)
sys.stderr.write(json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["user", "--help"],
                                  ["verify", "--help"], ["report", "--help"]])
def test_help_and_version_import_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    assert report["heavy"] == [], f"coi {' '.join(args)} imported {report['heavy']}"
    if args == ["--version"]:
        assert done.stdout.startswith("coi ") and done.stdout.strip().split()[1][0].isdigit()


def test_version_in_process() -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("coi ")


def test_demo_without_the_ui_builds_shows_progress_and_verifies(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    runner = CliRunner()
    r = runner.invoke(app, ["demo", "--no-tui", "--products", "2", "--db", str(db)],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "product 2 of 2 enrolled" in r.stderr and "built in" in r.stderr
    assert "Demo users" in r.stdout and "maya-demo-2026" in r.stdout
    again = runner.invoke(app, ["demo", "--no-tui", "--db", str(db)])
    assert again.exit_code == 0 and "exists already" in again.stdout
    v = runner.invoke(app, ["verify", "--db", str(db)])
    assert v.exit_code == 0, v.output
    folder = runner.invoke(app, ["demo", "--no-tui", "--db", str(tmp_path)])
    assert folder.exit_code == 2 and "is a folder" in folder.stderr


def test_ledger_commands_load_no_orm_layer(tmp_path: Path) -> None:
    """The tables are plain SQLAlchemy Core: opening a ledger (``coi.service.chain``, which
    every ledger command imports) loads neither SQLModel nor pydantic, ~90 ms of start-up."""
    probe = ("import json, sys, coi.service.chain; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} "
             "& {'sqlmodel', 'pydantic', 'pydantic_core'})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
