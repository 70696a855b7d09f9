"""Table models (SQLModel). Row <-> domain mapping happens only in the repositories (``repo``,
``chain_repo``).

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
    Text,
    text,
)
from sqlmodel import Field, SQLModel

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING
metadata: MetaData = SQLModel.metadata


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entry"
    # the previous entry on a subject (a new statement's ``subject_prev``) in one lookup
    __table_args__ = (Index("ix_ledger_entry_subject_idx", "subject", "idx"),)
    # INTEGER on SQLite makes idx the row id (migration 0004): a range of indexes is a range read.
    idx: int = Field(sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"),
                                      primary_key=True, autoincrement=False))
    prev_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    entry_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    time_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    type: str = Field(sa_column=Column(String(128), nullable=False, index=True))
    subject: str = Field(sa_column=Column(String(128), nullable=False, index=True))
    signer: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    statement: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signatures: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class TreeNode(SQLModel, table=True):
    """One complete subtree: leaves [idx * 2**level, (idx + 1) * 2**level). Level 0 = leaves."""

    __tablename__ = "tree_node"
    level: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LedgerHead(SQLModel, table=True):
    __tablename__ = "ledger_head"
    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    origin: str = Field(sa_column=Column(String(255), nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    last_hash: str = Field(sa_column=Column(String(64), nullable=False))
    last_time_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class Checkpoint(SQLModel, table=True):
    __tablename__ = "checkpoint"
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    note: str = Field(sa_column=Column(Text, nullable=False))


class UserKey(SQLModel, table=True):
    """A user's private key, sealed under their password (never readable without it)."""

    __tablename__ = "user_key"
    key_id: str = Field(sa_column=Column(String(16), primary_key=True))
    user: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    wrapped: str = Field(sa_column=Column(Text, nullable=False))
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class Account(SQLModel, table=True):
    """Login bookkeeping: failed attempts and lockout (each change is also a ledger entry)."""

    __tablename__ = "account"
    user: str = Field(sa_column=Column(String(64), primary_key=True))
    failed_attempts: int = Field(sa_column=Column(Integer, nullable=False, default=0))
    locked: int = Field(sa_column=Column(Integer, nullable=False, default=0))


APPEND_ONLY_TABLES = ("ledger_entry", "tree_node", "checkpoint", "user_key")


class Patient(SQLModel, table=True):
    """Patient identifiers, outside the ledger (21 CFR 1271.290) and sealed (``coi.service.phi``).

    The ledger holds only HMAC-SHA256(secret, patient id). ``sealed`` is the secret and the
    identifiers under AES-GCM with the patient's own key; ``wrapped_key`` is that key wrapped
    by the site's PHI key (a file, never in the database), whose id is ``phi_key_id``. Erasure
    destroys ``wrapped_key`` (and ``sealed``): the ledger stays fully verifiable while no-one
    can link it to the person any more. No column holds an identifier in clear."""

    __tablename__ = "patient"
    coi: str = Field(sa_column=Column(String(32), primary_key=True))
    phi_key_id: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    sealed: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    enrolled_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    erased_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class CoiCounter(SQLModel, table=True):
    """The next CoI identifier sequence per FIN and year; only ever increases."""

    __tablename__ = "coi_counter"
    fin: str = Field(sa_column=Column(String(5), primary_key=True))
    year: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    next_seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class ProductStateRow(SQLModel, table=True):
    """Each product's state as the process replay computes it (rebuildable from the ledger)."""

    __tablename__ = "product_state"
    # One index per page order of the review list (chain_repo.PAGE_ORDERS): keyset pages.
    __table_args__ = (
        Index("ix_product_state_state_coi", "state", "coi"),
        Index("ix_product_state_deadline_coi", "deadline_ms", "coi"),
        Index("ix_product_state_deviations_coi", "open_deviations", "coi"),
        Index("ix_product_state_last_index", "last_index"),
        # The products expected here, newest first (a partial index: only those rows).
        Index("ix_product_state_expected_index", "expected_index",
              sqlite_where=text("expected_index IS NOT NULL"),
              postgresql_where=text("expected_index IS NOT NULL")),
    )
    coi: str = Field(sa_column=Column(String(32), primary_key=True))
    state: str = Field(sa_column=Column(String(64), nullable=False))
    data: str = Field(sa_column=Column(Text, nullable=False))
    last_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    deadline_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    deadline_window: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    open_deviations: int = Field(sa_column=Column(Integer, nullable=False, default=0))
    # The handoff.received entry that made it expected here; NULL once a step was recorded
    # on it here since (or never received by hand-off).
    expected_index: int | None = Field(default=None,
                                       sa_column=Column(BigInteger, nullable=True))


class StateCount(SQLModel, table=True):
    """How many products stand in each state: a projection of ``product_state``, kept in the
    same transaction as its rows, so that status counts read one short row per state instead of
    counting every product ever made."""

    __tablename__ = "state_count"
    state: str = Field(sa_column=Column(String(64), primary_key=True))
    products: int = Field(sa_column=Column(BigInteger, nullable=False))
