"""Tables (SQLAlchemy Core). Row <-> domain mapping happens only in the repositories (``repo``,
``chain_repo``), which build statements on these ``Table`` objects; Alembic compares
``metadata`` with the migrations (``coi.db.check_schema``). Plain Core, no ORM or pydantic
layer: the repositories never use one, and importing it cost every command ~90 ms.

Ledger tables (append-only, guarded by triggers created in the migrations): ``ledger_entry``,
``tree_node``, ``checkpoint``, ``user_key``. ``ledger_head`` is the one mutable ledger row (the
lock every writer takes); it is checked against the entries by ``coi verify``. Operational tables
(``account``, and the domain's tables) hold state that the ledger can rebuild or that is not
evidence (failed-login counters).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

ledger_entry = Table(
    "ledger_entry", metadata,
    # INTEGER on SQLite makes idx the row id (migration 0004): a range of indexes is a range read.
    Column("idx", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=False),
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("entry_hash", String(64), nullable=False, unique=True),
    Column("time_ms", BigInteger, nullable=False),
    Column("type", String(128), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("signer", String(64), nullable=False, index=True),
    Column("statement", LargeBinary, nullable=False),
    Column("signatures", LargeBinary, nullable=False),
    # the previous entry on a subject (a new statement's ``subject_prev``) in one lookup
    Index("ix_ledger_entry_subject_idx", "subject", "idx"),
    # the entries of a type in index order, either way (catch-up, newest hand-offs): a range
    Index("ix_ledger_entry_type_idx", "type", "idx"),
)

# One complete subtree: leaves [idx * 2**level, (idx + 1) * 2**level). Level 0 = leaves.
tree_node = Table(
    "tree_node", metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

ledger_head = Table(
    "ledger_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("origin", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("last_time_ms", BigInteger, nullable=False),
)

checkpoint = Table(
    "checkpoint", metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("note", Text, nullable=False),
)

# A user's private key, sealed under their password (never readable without it).
user_key = Table(
    "user_key", metadata,
    Column("key_id", String(16), primary_key=True),
    Column("user", String(64), nullable=False, index=True),
    Column("wrapped", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

# Login bookkeeping: failed attempts and lockout (each change is also a ledger entry).
account = Table(
    "account", metadata,
    Column("user", String(64), primary_key=True),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("locked", Integer, nullable=False, default=0),
)

APPEND_ONLY_TABLES = ("ledger_entry", "tree_node", "checkpoint", "user_key")

# Patient identifiers, outside the ledger (21 CFR 1271.290) and sealed (``coi.service.phi``).
#
# The ledger holds only HMAC-SHA256(secret, patient id). ``sealed`` is the secret and the
# identifiers under AES-GCM with the patient's own key; ``wrapped_key`` is that key wrapped by
# the site's PHI key (a file, never in the database), whose id is ``phi_key_id``. Erasure
# destroys ``wrapped_key`` (and ``sealed``): the ledger stays fully verifiable while no-one can
# link it to the person any more. No column holds an identifier in clear.
patient = Table(
    "patient", metadata,
    Column("coi", String(32), primary_key=True),
    Column("phi_key_id", String(16), nullable=True),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("sealed", LargeBinary, nullable=True),
    Column("enrolled_index", BigInteger, nullable=False),
    Column("erased_ms", BigInteger, nullable=True),
)

# The next CoI identifier sequence per FIN and year; only ever increases.
coi_counter = Table(
    "coi_counter", metadata,
    Column("fin", String(5), primary_key=True),
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("next_seq", BigInteger, nullable=False),
)

# Each product's state as the process replay computes it (rebuildable from the ledger).
product_state = Table(
    "product_state", metadata,
    Column("coi", String(32), primary_key=True),
    Column("state", String(64), nullable=False),
    Column("data", Text, nullable=False),
    Column("last_index", BigInteger, nullable=False),
    Column("deadline_ms", BigInteger, nullable=True),
    Column("deadline_window", String(64), nullable=True),
    Column("open_deviations", Integer, nullable=False, default=0),
    # The handoff.received entry that made it expected here; NULL once a step was recorded
    # on it here since (or never received by hand-off).
    Column("expected_index", BigInteger, nullable=True),
    # One index per page order of the review list (chain_repo.PAGE_ORDERS): keyset pages.
    Index("ix_product_state_state_coi", "state", "coi"),
    Index("ix_product_state_deadline_coi", "deadline_ms", "coi"),
    Index("ix_product_state_deviations_coi", "open_deviations", "coi"),
    Index("ix_product_state_last_index", "last_index"),
    # The products expected here, newest first (a partial index: only those rows).
    Index("ix_product_state_expected_index", "expected_index",
          sqlite_where=text("expected_index IS NOT NULL"),
          postgresql_where=text("expected_index IS NOT NULL")),
)

# How many products stand in each state: a projection of ``product_state``, kept in the same
# transaction as its rows, so that status counts read one short row per state instead of
# counting every product ever made.
state_count = Table(
    "state_count", metadata,
    Column("state", String(64), primary_key=True),
    Column("products", BigInteger, nullable=False),
)
