"""Alembic: the migrations match the models on both backends, found from the installed package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from coi.db import migrate
from coi.db.database import HEAD_REVISION, Database
from coi.db.engine import make_engine
from coi.db.url import DatabaseUrl

PROBE = """
import sys
from coi.db import migrate
from coi.db.engine import make_engine
from coi.db.url import DatabaseUrl
engine = make_engine(DatabaseUrl.parse(sys.argv[1]))
migrate.upgrade(engine)
migrate.check(engine)
assert migrate.current_revision(engine) == migrate.head_revision(engine) is not None
import coi._migrations
print(coi._migrations.__file__)
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "m.db")
    return str(request.getfixturevalue("pg_url"))


def test_alembic_check_is_clean(db_url: str) -> None:
    engine = make_engine(DatabaseUrl.parse(db_url))
    try:
        migrate.upgrade(engine)
        migrate.check(engine)  # raises if models and migrations disagree
        assert migrate.current_revision(engine) == migrate.head_revision(engine)
        migrate.upgrade(engine)  # idempotent
    finally:
        engine.dispose()


def test_the_head_a_ledger_is_checked_against_is_the_newest_migration(db_url: str) -> None:
    """Opening a ledger compares one row with ``HEAD_REVISION`` instead of loading Alembic: that
    constant must name the newest migration shipped, and ``revision`` read what Alembic wrote."""
    db = Database.open(DatabaseUrl.parse(db_url), env={})
    try:
        assert db.revision() is None and not db.schema_is_current()  # never migrated
        migrate.upgrade(db.engine)
        assert HEAD_REVISION == migrate.head_revision(db.engine)
        assert db.revision() == migrate.current_revision(db.engine) == HEAD_REVISION
        assert db.schema_is_current()
        with db.engine.begin() as conn:  # a ledger one migration behind
            conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))
        assert db.revision() == "0006" and not db.schema_is_current()
    finally:
        db.engine.dispose()


def test_migrations_found_from_another_directory(db_url: str, tmp_path: Path) -> None:
    """Run from a directory with no migrations/ and no alembic.ini: the package ships them."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", PROBE, db_url], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "_migrations" in out.stdout or "migrations" in out.stdout


def test_check_schema_module_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "coi.db.check_schema"], capture_output=True,
                         text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert "agree" in out.stdout
