"""Reads by ledger index are range reads on both backends (issue 21, item 2).

On SQLite ``ledger_entry.idx`` is the table's row id (migration 0004), so "the entries from index
N" is a walk of the table from N and "the entries of these types from index N" is one short range
per type in the type index; neither visits what came before N. The plans are read back with
``EXPLAIN`` on each backend, and a ledger with the old layout is rebuilt by ``coi migrate`` with
every entry kept and the ledger still verifying.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from coi.db import migrate
from coi.db.engine import make_engine
from coi.db.url import DatabaseUrl
from tests.conftest import Ledger

RANGE = "SELECT idx, type FROM ledger_entry WHERE idx >= :lo AND idx < :hi ORDER BY idx"
TYPED = ("SELECT * FROM ledger_entry WHERE idx >= :lo AND type IN ('user.add', 'note') "
         "ORDER BY idx")



def _sqlite_plan(db: str, sql: str) -> str:
    with sqlite3.connect(db) as c:
        sql = sql.replace(":lo", "?").replace(":hi", "?")
        args = (5, 10) if sql.count("?") == 2 else (5,)
        return " | ".join(r[3] for r in c.execute("EXPLAIN QUERY PLAN " + sql, args))


def _declared_idx_type(db: str) -> str:
    with sqlite3.connect(db) as c:
        return next(str(r[2]).upper() for r in c.execute("PRAGMA table_info(ledger_entry)")
                    if r[1] == "idx")


def test_sqlite_reads_a_range_of_indexes_through_the_row_id(sqlite_ledger: Ledger) -> None:
    sqlite_ledger.svc.engine.dispose()
    assert _declared_idx_type(sqlite_ledger.db) == "INTEGER"
    plan = _sqlite_plan(sqlite_ledger.db, RANGE)
    assert "INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in plan, plan
    typed = _sqlite_plan(sqlite_ledger.db, TYPED)
    # One range per type (revision 0010's (type, idx) index): only entries from N are visited
    # and sorted, never every entry of those types ever written.
    assert "ix_ledger_entry_type_idx (type=? AND idx>?)" in typed, typed


@pytest.mark.postgres
def test_postgres_reads_a_range_of_indexes_through_the_primary_key(pg_url: str) -> None:
    engine = make_engine(DatabaseUrl.parse(pg_url))
    try:
        migrate.upgrade(engine)
        with engine.begin() as c:
            c.execute(text("SET enable_seqscan = off"))  # an empty table: ask what it *can* use
            plan = "\n".join(r[0] for r in c.execute(text("EXPLAIN " + RANGE),
                                                        {"lo": 5, "hi": 10}))
        assert "pk_ledger_entry" in plan, plan
    finally:
        engine.dispose()


def test_migrate_rebuilds_an_old_sqlite_ledger_keeping_every_entry(
        sqlite_ledger: Ledger, tmp_path: Path) -> None:
    svc = sqlite_ledger.svc
    before = svc.verify().size
    svc.engine.dispose()
    # A ledger as revision 0003 left it: the schema migrated that far, then this ledger's rows.
    old = tmp_path / "old.db"
    engine = make_engine(DatabaseUrl.parse(str(old)))
    command.upgrade(migrate.alembic_config(engine), "0003")
    engine.dispose()
    with sqlite3.connect(old) as c:
        c.execute("ATTACH DATABASE ? AS new", (sqlite_ledger.db,))
        for table in ("ledger_entry", "tree_node", "ledger_head", "checkpoint", "user_key",
                      "account"):
            c.execute(f"INSERT INTO main.{table} SELECT * FROM new.{table}")
        rows = c.execute("SELECT * FROM main.ledger_entry ORDER BY idx").fetchall()
        c.commit()
        c.execute("DETACH DATABASE new")
    shutil.copy(old, sqlite_ledger.db)
    for suffix in ("-wal", "-shm"):
        Path(sqlite_ledger.db + suffix).unlink(missing_ok=True)
    assert _declared_idx_type(sqlite_ledger.db) == "BIGINT"
    assert "sqlite_autoindex" in _sqlite_plan(sqlite_ledger.db, RANGE)

    engine = make_engine(DatabaseUrl.parse(sqlite_ledger.db))
    migrate.upgrade(engine)
    migrate.check(engine)
    engine.dispose()

    assert _declared_idx_type(sqlite_ledger.db) == "INTEGER"
    with sqlite3.connect(sqlite_ledger.db) as c:
        assert c.execute("SELECT * FROM ledger_entry ORDER BY idx").fetchall() == rows
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            c.execute("DELETE FROM ledger_entry WHERE idx = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            c.execute("UPDATE ledger_entry SET subject = 'x' WHERE idx = 1")
    reopened = sqlite_ledger.reopen()
    assert reopened.verify().size == before
    reopened.engine.dispose()
