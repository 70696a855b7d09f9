"""Drop checkpoint.issued_ms: a value no signature covers is not evidence.

The checkpoint table keeps exactly what the log key signed (the note) and the size it is for.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain DROP COLUMN on both backends (SQLite ≥ 3.35): a batch rebuild would drop the
    # table's append-only triggers along with the table.
    op.execute("ALTER TABLE checkpoint DROP COLUMN issued_ms")


def downgrade() -> None:
    raise RuntimeError("the ledger schema is never downgraded: records are kept for decades")
