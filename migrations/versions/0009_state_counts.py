"""Count products per state in a table of their own (``state_count``), kept with product_state.

``coi status`` counted products by state with a GROUP BY over ``product_state``: one index entry
read per product ever made, so its cost grew with the ledger's history. The counts are now a
projection of ``product_state`` kept in the same transaction as its rows (``coi verify`` checks
them, ``coi migrate`` rebuilds them). This migration fills the table from the rows there are.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "state_count",
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("products", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("state", name=op.f("pk_state_count")),
    )
    op.execute("INSERT INTO state_count (state, products) "
               "SELECT state, COUNT(*) FROM product_state GROUP BY state")


def downgrade() -> None:
    raise RuntimeError("the ledger schema is never downgraded: records are kept for decades")
