"""Database engines for SQLite (the default, a local file) and PostgreSQL (multi-site).

SQLite: WAL journal, ``synchronous=FULL`` (an acknowledged append survives power loss), a busy
timeout, and ``BEGIN IMMEDIATE`` for writers (a deferred BEGIN can fail with
SQLITE_BUSY_SNAPSHOT when a reader upgrades). PostgreSQL: psycopg 3; writers lock the head row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_SQLITE = "coi.db"


class ConfigError(Exception):
    """The database URL or site configuration is unusable (exit code 2)."""


def normalise_url(url: str | None) -> str:
    """``--db`` value → SQLAlchemy URL. A bare path means a SQLite file."""
    if not url:
        url = os.environ.get("COI_DATABASE_URL") or DEFAULT_SQLITE
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def make_engine(url: str | None) -> Engine:
    full = normalise_url(url)
    try:
        u = make_url(full)
    except ArgumentError:
        raise ConfigError(f"{full!r} is not a database URL (try a file path or "
                          "postgresql://user@host/dbname)") from None
    backend = u.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(full)
        if path is not None and not path.parent.is_dir():
            raise ConfigError(f"folder {path.parent} does not exist")
        engine = create_engine(full, connect_args={"timeout": 60})
        _sqlite_setup(engine)
        return engine
    if backend == "postgresql":
        return create_engine(full, pool_pre_ping=True)
    raise ConfigError(f"unsupported database {backend!r}: use SQLite or PostgreSQL")


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get("coi_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
