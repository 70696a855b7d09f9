"""The storage seam, proved at run time: what an auditor runs and the verify pool load no storage.

import-linter checks the imports written in the code (pyproject.toml); these probes check what
a fresh interpreter actually loads: every module of ``coi.export`` and ``coi.verify_pool``
(found by walking the packages) pulls in no database library and nothing of ``coi.db``; and a
verify worker's reader (unpickled and opened as a worker does it) pulls in no SQLAlchemy.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

from tests.conftest import Ledger

STORAGE = ("sqlalchemy", "sqlmodel", "alembic", "psycopg", "coi.db", "coi.service")

PROBE = """
import importlib, json, pkgutil, sys
import coi.export, coi.verify_pool
names = []
for pkg in (coi.export, coi.verify_pool):
    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
        names.append(m.name)
storage = %r
loaded = sorted({n for n in sys.modules if any(n == s or n.startswith(s + ".") for s in storage)})
print(json.dumps({"modules": names, "loaded": loaded}))
"""

WORKER = """
import json, pickle, sys
source = pickle.loads(bytes.fromhex(sys.argv[1]))
reader = source.open()
rows = reader.rows(0, 3)
reader.close()
print(json.dumps({"rows": len(rows), "sqlalchemy": any(n.startswith("sqlalchemy")
                                                       for n in sys.modules)}))
"""


def test_export_and_the_verify_pool_load_no_storage(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE % (STORAGE,)], cwd=tmp_path,
                         capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(out.stdout)
    assert {"coi.export.bundle", "coi.export.verifier", "coi.verify_pool.pool",
            "coi.verify_pool.worker"} <= set(report["modules"])
    assert report["loaded"] == [], f"storage pulled in: {report['loaded']}"


def test_a_workers_reader_loads_no_sqlalchemy(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    source = sqlite_ledger.svc.db.reader_source()
    out = subprocess.run([sys.executable, "-c", WORKER, pickle.dumps(source).hex()],
                         cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == {"rows": 3, "sqlalchemy": False}
