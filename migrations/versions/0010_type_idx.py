"""Index ledger entries by (type, idx); drop the single-column indexes it and (subject, idx) cover.

Reading the entries of one type in index order (the catch-up after another writer's appends,
the newest hand-off receipts first) was a range on SQLite, where the index on ``type`` carries
the row id, but not on PostgreSQL, whose planner then walked the primary key filtering on the
type or sorted the type's rows. An index on (type, idx) makes it one index range on both. The
index on ``type`` alone is a prefix of it, and the one on ``subject`` alone a prefix of
(subject, idx) (migration 0006): both are dropped, so an append maintains one index fewer.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_entry_type_idx", "ledger_entry", ["type", "idx"])
    op.drop_index("ix_ledger_entry_type", table_name="ledger_entry")
    op.drop_index("ix_ledger_entry_subject", table_name="ledger_entry")


def downgrade() -> None:
    raise RuntimeError("the ledger schema is never downgraded: records are kept for decades")
