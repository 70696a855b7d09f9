"""The layering, proved at run time: the pure core imports no database, UI or CLI library.

A fresh interpreter imports every module of ``coi.ledger`` and ``coi.domain`` (found by walking
the packages, so a new module is covered without editing this test) and reports which of the
forbidden libraries ended up in ``sys.modules``; then import-linter checks the contracts
written in pyproject.toml.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("sqlalchemy", "sqlmodel", "alembic", "psycopg", "textual", "typer", "rich", "qrcode",
             "zxingcpp", "reportlab", "PIL")
ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib, json, pkgutil, sys
import coi.ledger, coi.domain
names = []
for pkg in (coi.ledger, coi.domain):
    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
        names.append(m.name)
forbidden = %r
loaded = sorted({n.split(".")[0] for n in sys.modules} & set(forbidden))
print(json.dumps({"modules": names, "loaded": loaded}))
"""


def test_core_imports_no_adapter_or_ui_library(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE % (FORBIDDEN,)], cwd=tmp_path,
                         capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(out.stdout)
    assert {"coi.ledger.jcs", "coi.ledger.entry", "coi.ledger.keys", "coi.ledger.registry",
            "coi.ledger.verify", "coi.ledger.merkle", "coi.ledger.note"} <= set(report["modules"])
    assert any(m.startswith("coi.domain.") for m in report["modules"])
    assert report["loaded"] == [], f"the pure core pulled in {report['loaded']}"


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
