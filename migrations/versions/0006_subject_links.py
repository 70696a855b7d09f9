"""Index ledger entries by (subject, idx): each new entry names the previous one on its subject.

A version 2 statement's ``subject_prev`` is found under the append's write lock with one
descending lookup on this index (O(log n)); the old index on ``subject`` alone left the rows of
a subject to be sorted by index. Existing entries are unchanged: version 1 statements stay valid
and the next entry on each subject links to the last one (docs/ledger-format.md §3).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_entry_subject_idx", "ledger_entry", ["subject", "idx"])


def downgrade() -> None:
    raise RuntimeError("the ledger schema is never downgraded: records are kept for decades")
