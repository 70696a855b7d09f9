"""One site's database as the service holds it: its URL, engine, repositories and schema.

The service gets a ``Database`` (``Database.open``) and reaches the tables only through its
repositories (``ledger``: ``repo.LedgerStore``; ``chain``: ``chain_repo.ChainStore``); schema
questions (is there a ledger, is the schema current, upgrade it) are answered here, and
``reader_source`` is what the verify workers open the database with (the driver alone).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, inspect, text

from coi.db.chain_repo import ChainStore
from coi.db.engine import make_engine
from coi.db.reads import DriverSource
from coi.db.repo import LedgerStore
from coi.db.tx import Tx, write
from coi.db.url import READ_ENV_VAR, ConfigError, DatabaseUrl

HEAD_REVISION = "0010"
"""The newest migration this coi ships (``migrations/versions``). Kept here so that opening a
ledger reads one row instead of loading Alembic and every migration script;
tests/test_migrations.py fails when a migration is added and this is not moved with it."""


class Database:
    def __init__(self, url: DatabaseUrl, engine: Engine, reader: Engine | None = None,
                 read_url: DatabaseUrl | None = None) -> None:
        self.url = url
        self.engine = engine
        self.reader = reader if reader is not None else engine
        self.read_url = read_url if reader is not None else None  # the replica, if any
        self.ledger = LedgerStore(engine, reader=self.reader)
        self.chain = ChainStore(engine, reader=self.reader)

    @classmethod
    def open(cls, url: DatabaseUrl, *, env: Mapping[str, str] | None = None) -> Database:
        """The engine for ``url`` (no connection is made yet), and one for the read replica
        ``COI_READ_DATABASE_URL`` names, if any (PostgreSQL only)."""
        replica = (os.environ if env is None else env).get(READ_ENV_VAR)
        if not replica:
            return cls(url, make_engine(url))
        read_url = DatabaseUrl.parse(replica)
        if url.backend != "postgresql" or read_url.backend != "postgresql":
            raise ConfigError(f"{READ_ENV_VAR} names a read replica of a PostgreSQL primary; "
                              f"here the database is {url.display} and the replica "
                              f"{read_url.display}: unset {READ_ENV_VAR}")
        return cls(url, make_engine(url), make_engine(read_url), read_url)

    def has_table(self, name: str) -> bool:
        return inspect(self.engine).has_table(name)

    def has_column(self, table: str, column: str) -> bool:
        insp = inspect(self.engine)
        return insp.has_table(table) and column in {c["name"] for c in insp.get_columns(table)}

    def schema_is_current(self) -> bool:
        """The schema is at the newest migration this coi ships."""
        return self.revision() == HEAD_REVISION

    def revision(self) -> str | None:
        """The migration the schema stands at (Alembic's ``alembic_version`` row), None when
        the database has none."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None  # nothing was ever migrated here
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        return str(rows[0][0]) if len(rows) == 1 else None

    def upgrade(self, attributes: dict[str, Any] | None = None) -> str:
        """Bring the schema to the newest revision; return that revision. ``attributes`` go to
        the migration scripts (see ``migrate.upgrade``)."""
        from coi.db import migrate  # Alembic only when the schema changes

        migrate.upgrade(self.engine, attributes)
        return self.revision() or "none"

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction of its own (committed at the end of the ``with`` block)."""
        with write(self.engine) as tx:
            yield tx

    def reader_source(self, *, replica: bool = False) -> DriverSource:
        """What a verify worker, or this process, opens to read rows and tree nodes (on the
        read replica with ``replica``, when one is configured)."""
        return DriverSource(self.read_url if replica and self.read_url else self.url)

    @contextmanager
    def snapshot(self, *, replica: bool = False) -> Iterator[tuple[LedgerStore, ChainStore, Tx]]:
        """One read transaction that sees a single state of the database (PostgreSQL:
        REPEATABLE READ, which a hot standby allows too; SQLite: a read transaction in WAL
        mode), on the read replica with ``replica`` when one is configured; the repositories
        to pass it to. Nothing is written in it."""
        engine = self.reader if replica else self.engine
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin() as trans:
                yield (LedgerStore(engine), ChainStore(engine), Tx(conn))
                trans.rollback()

    def compact(self) -> bool:
        """After plain patient rows were sealed, leave no copy of them behind. SQLite: rebuild
        the file (VACUUM) and truncate the WAL. PostgreSQL: ``VACUUM FULL patient``
        (``ChainStore.scrub_log``). False if a reader or a lock kept it from completing."""
        if self.url.backend != "sqlite":
            return self.chain.scrub_log()
        raw = self.engine.raw_connection()  # outside any transaction (no BEGIN)
        try:
            cur = raw.cursor()
            cur.execute("VACUUM")
            row = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cur.close()
        finally:
            raw.close()
        return row is not None and int(row[0]) == 0

    def dispose(self) -> None:
        """Close the pooled connections (another process may then use the file alone)."""
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()
