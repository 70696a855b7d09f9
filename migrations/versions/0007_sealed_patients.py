"""Seal patient identifiers at rest: per-patient keys wrapped by the site's PHI key.

Adds ``patient.phi_key_id``, ``wrapped_key`` and ``sealed``; seals every patient row that still
holds its secret (and identifiers) in clear with the sealer ``coi migrate`` passes in (it holds
the PHI key, which never enters the database); then drops the plain ``secret`` and
``identifiers`` columns. A database with plain rows cannot be migrated without the sealer.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SEALER = "coi_phi_seal"
"""``config.attributes`` key of ``seal(coi, secret, identifiers_json)``, which returns
``(key_id, wrapped, sealed)``."""
SEALED_COUNT = "coi_phi_sealed"


def upgrade() -> None:
    op.add_column("patient", sa.Column("phi_key_id", sa.String(16), nullable=True))
    op.add_column("patient", sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
    op.add_column("patient", sa.Column("sealed", sa.LargeBinary(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT coi, secret, identifiers FROM patient "
                                "WHERE secret IS NOT NULL ORDER BY coi")).all()
    attributes = context.config.attributes
    if rows:
        seal = attributes.get(SEALER)
        if seal is None:
            raise RuntimeError(f"{len(rows)} patient rows hold identifiers in clear: run "
                               "`coi migrate`, which seals them with the site's PHI key")
        for coi, secret, identifiers in rows:
            key_id, wrapped, sealed = seal(coi, bytes(secret), identifiers)
            conn.execute(sa.text("UPDATE patient SET phi_key_id = :k, wrapped_key = :w, "
                                 "sealed = :s, secret = NULL, identifiers = NULL "
                                 "WHERE coi = :c"),
                         {"k": key_id, "w": wrapped, "s": sealed, "c": coi})
    attributes[SEALED_COUNT] = len(rows)
    # Plain DROP COLUMN on both backends (SQLite >= 3.35), as in 0003.
    op.execute("ALTER TABLE patient DROP COLUMN secret")
    op.execute("ALTER TABLE patient DROP COLUMN identifiers")


def downgrade() -> None:
    raise RuntimeError("the ledger schema is never downgraded: records are kept for decades")
