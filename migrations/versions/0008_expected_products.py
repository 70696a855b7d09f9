"""Products expected here as a column of the projection: ``product_state.expected_index``.

The index of the ``handoff.received`` entry that made the product expected at this site (received
by hand-off, no step recorded on it here since), NULL otherwise; a partial index holds only the
expected rows, so ``coi status`` and the receiving station read the newest of them as one index
range instead of every ``handoff.received`` entry and a lookup per product.

Existing rows are filled here, in SQL, from the ledger by the rule the replay applies
(``coi.service.projection.expected_index``): the product's latest ``handoff.received`` entry,
when no entry that updates its state came after it (its ``last_index`` is not later). A table
that was right before the upgrade is right after it: ``coi verify`` passes and ``coi migrate``
records no rebuild; a table that was not is found by ``coi verify`` as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("product_state", sa.Column("expected_index", sa.BigInteger(), nullable=True))
    # Each product's latest receipt: one lookup on ledger_entry's (subject, idx) index.
    op.execute("UPDATE product_state SET expected_index = (SELECT MAX(e.idx) FROM ledger_entry e"
               " WHERE e.subject = product_state.coi AND e.type = 'handoff.received')")
    op.execute("UPDATE product_state SET expected_index = NULL "
               "WHERE expected_index < last_index")
    op.create_index("ix_product_state_expected_index", "product_state", ["expected_index"],
                    sqlite_where=sa.text("expected_index IS NOT NULL"),
                    postgresql_where=sa.text("expected_index IS NOT NULL"))


def downgrade() -> None:
    raise RuntimeError("the ledger schema is never downgraded: records are kept for decades")
