"""Database engines for SQLite (the default, a local file) and PostgreSQL (multi-site).

SQLite: WAL journal, ``synchronous=FULL`` (an acknowledged append survives power loss), a busy
timeout, and ``BEGIN IMMEDIATE`` for writers (a deferred BEGIN can fail with
SQLITE_BUSY_SNAPSHOT when a reader upgrades). PostgreSQL: psycopg 3; writers lock the head row;
each pooled connection is pinged before use, and one that fails the ping is replaced.
The URL comes parsed (``coi.db.url.DatabaseUrl``): nothing here reads it again.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, create_engine, event

from coi.db.url import ConfigError, DatabaseUrl

__all__ = ["ConfigError", "make_engine"]

# The pool logs a lost connection with its traceback, and psycopg a pipeline it could not end
# ("error ignored terminating …"); with no handler configured Python prints those on stderr,
# over a station's screen. coi reports a lost server itself, in one line.
logging.getLogger("sqlalchemy").addHandler(logging.NullHandler())
logging.getLogger("psycopg").addHandler(logging.NullHandler())


def make_engine(url: DatabaseUrl) -> Engine:
    if url.backend == "sqlite":
        assert url.sqlite_path is not None
        if not url.sqlite_path.parent.is_dir():
            raise ConfigError(f"folder {url.sqlite_path.parent} does not exist")
        if url.sqlite_path.is_dir():
            raise ConfigError(f"{url.sqlite_path} is a folder: give the database file's path "
                              "(e.g. ./coi.db)")
        engine = create_engine(url.driver_url, connect_args={"timeout": 60})
        _sqlite_setup(engine)
        return engine
    engine = create_engine(url.driver_url, pool_pre_ping=True)
    _postgres_setup(engine)
    return engine


def _postgres_setup(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def _unusable_when_the_ping_fails(ctx: Any) -> None:
        """A pooled connection that fails the pool's ping is not used, whatever the error:
        the pool then opens a new one. A server that went away mid-query can leave a
        connection that fails even the ping with psycopg's "can't change 'autocommit' now"
        (a ProgrammingError, which SQLAlchemy would otherwise raise to the caller)."""
        if ctx.is_pre_ping:
            ctx.is_disconnect = True


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
