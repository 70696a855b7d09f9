"""SQLite: make ``ledger_entry.idx`` the table's row id, so a range of indexes is a range read.

A ``BIGINT PRIMARY KEY`` is not SQLite's row id (only a column declared exactly ``INTEGER`` is):
the table had a hidden row id beside ``idx`` and a separate unique index on ``idx``. Every read
by index went through that index and back to the table, and the planner answered "entries of
these types from index N" by walking the type index over every such entry ever written, then
sorting (18.6 ms at 2·10^4 process entries, growing with the ledger, inside the write lock). With
``idx`` as the row id, the type index holds the index too, so the same question is one short
range per type, and reading entries in order is a walk of the table itself.

SQLite cannot change a column's type in place: the table is rebuilt in this transaction (its
rows copied in index order, its indexes and append-only triggers created again). Dropping the
old table does not fire its DELETE trigger. PostgreSQL is unchanged: its ``BIGINT`` primary key
is already the index range reads use. Runs once per ledger; a ledger already rebuilt (or created
after this revision) is left as it is.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = "idx, prev_hash, entry_hash, time_ms, type, subject, signer, statement, signatures"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    declared = {r[1]: str(r[2]).upper()
                for r in bind.exec_driver_sql("PRAGMA table_info(ledger_entry)")}
    if declared.get("idx") == "INTEGER":
        return
    op.execute(
        "CREATE TABLE ledger_entry_rowid ("
        "idx INTEGER NOT NULL, prev_hash VARCHAR(64) NOT NULL, entry_hash VARCHAR(64) NOT NULL, "
        "time_ms BIGINT NOT NULL, type VARCHAR(128) NOT NULL, subject VARCHAR(128) NOT NULL, "
        "signer VARCHAR(64) NOT NULL, statement BLOB NOT NULL, signatures BLOB NOT NULL, "
        "CONSTRAINT pk_ledger_entry PRIMARY KEY (idx), "
        "CONSTRAINT uq_ledger_entry_prev_hash UNIQUE (prev_hash), "
        "CONSTRAINT uq_ledger_entry_entry_hash UNIQUE (entry_hash))"
    )
    op.execute(f"INSERT INTO ledger_entry_rowid ({COLUMNS}) "
               f"SELECT {COLUMNS} FROM ledger_entry ORDER BY idx")
    op.execute("DROP TABLE ledger_entry")
    op.execute("ALTER TABLE ledger_entry_rowid RENAME TO ledger_entry")
    for col in ("type", "subject", "signer"):
        op.execute(f"CREATE INDEX ix_ledger_entry_{col} ON ledger_entry ({col})")
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER ledger_entry_no_{verb.lower()} BEFORE {verb} ON ledger_entry "
            f"BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only: {verb} refused'); END"
        )


def downgrade() -> None:
    raise RuntimeError("the ledger schema is never downgraded: records are kept for decades")
