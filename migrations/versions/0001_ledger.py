"""Ledger tables, and triggers that refuse UPDATE and DELETE on them.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("ledger_entry", "tree_node", "checkpoint", "user_key")


def upgrade() -> None:
    op.create_table(
        "ledger_entry",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("signer", sa.String(64), nullable=False),
        sa.Column("statement", sa.LargeBinary(), nullable=False),
        sa.Column("signatures", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_ledger_entry")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_ledger_entry_prev_hash")),
        sa.UniqueConstraint("entry_hash", name=op.f("uq_ledger_entry_entry_hash")),
    )
    op.create_index(op.f("ix_ledger_entry_type"), "ledger_entry", ["type"])
    op.create_index(op.f("ix_ledger_entry_subject"), "ledger_entry", ["subject"])
    op.create_index(op.f("ix_ledger_entry_signer"), "ledger_entry", ["signer"])
    op.create_table(
        "tree_node",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_tree_node")),
    )
    op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("last_time_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_head")),
    )
    op.create_table(
        "checkpoint",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("issued_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_checkpoint")),
    )
    op.create_table(
        "user_key",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_user_key")),
    )
    op.create_index(op.f("ix_user_key_user"), "user_key", ["user"])
    op.create_table(
        "account",
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user", name=op.f("pk_account")),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for t in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {t}_no_{verb.lower()} BEFORE {verb} ON {t} "
                    f"BEGIN SELECT RAISE(ABORT, '{t} is append-only: {verb} refused'); END"
                )
        op.execute(
            "CREATE TRIGGER ledger_head_no_delete BEFORE DELETE ON ledger_head "
            "BEGIN SELECT RAISE(ABORT, 'ledger_head cannot be deleted'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION coi_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
        for t in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                "FOR EACH ROW EXECUTE FUNCTION coi_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION coi_refuse_change()"
            )
        op.execute(
            "CREATE TRIGGER ledger_head_no_delete BEFORE DELETE ON ledger_head "
            "FOR EACH ROW EXECUTE FUNCTION coi_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER ledger_head_no_truncate BEFORE TRUNCATE ON ledger_head "
            "FOR EACH STATEMENT EXECUTE FUNCTION coi_refuse_change()"
        )


def downgrade() -> None:
    raise RuntimeError("the ledger schema is never downgraded: records are kept for decades")
