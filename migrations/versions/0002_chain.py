"""Chain-of-identity tables: patients (outside the ledger), CoI counters, product state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient",
        sa.Column("coi", sa.String(32), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=True),
        sa.Column("identifiers", sa.Text(), nullable=True),
        sa.Column("enrolled_index", sa.BigInteger(), nullable=False),
        sa.Column("erased_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("coi", name=op.f("pk_patient")),
    )
    op.create_table(
        "coi_counter",
        sa.Column("fin", sa.String(5), nullable=False),
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("fin", "year", name=op.f("pk_coi_counter")),
    )
    op.create_table(
        "product_state",
        sa.Column("coi", sa.String(32), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("last_index", sa.BigInteger(), nullable=False),
        sa.Column("deadline_ms", sa.BigInteger(), nullable=True),
        sa.Column("deadline_window", sa.String(64), nullable=True),
        sa.Column("open_deviations", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("coi", name=op.f("pk_product_state")),
    )
    op.create_index(op.f("ix_product_state_state"), "product_state", ["state"])
    op.create_index(op.f("ix_product_state_deadline_ms"), "product_state", ["deadline_ms"])


def downgrade() -> None:
    raise RuntimeError("the ledger schema is never downgraded: records are kept for decades")
