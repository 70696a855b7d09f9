"""Copies of a whole database for backup and restore (EU GMP Annex 11 §7.2): storage work only.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies the database in one step
from a consistent read snapshot; in WAL mode that reader blocks no writer, so stations keep
writing while it runs (a step-by-step copy would restart on every write and might never end). The
copy is written to a temporary file beside the
target, flushed and renamed into place, so no half-written backup is ever left. PostgreSQL:
``pg_dump --format=custom`` of the site's database, and ``pg_restore`` into a new database made for
the purpose. What the copies mean (which checkpoint they must hold, what a restored copy lacks)
is the service's (``coi.service.backup``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from coi.db.url import ConfigError, DatabaseUrl


def _fsync_and_rename(tmp: Path, target: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent online copy of the SQLite database ``source`` at ``target`` (a new file)."""
    tmp = _temporary(target)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)  # one step: one snapshot
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            finally:
                dst.close()
        finally:
            src.close()
        _fsync_and_rename(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _starts_with(path: Path, magic: bytes) -> bool:
    """The file begins with ``magic`` (an unreadable file does not)."""
    try:
        with path.open("rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def is_sqlite_database(path: Path) -> bool:
    """The file starts with SQLite's header (a backup made by ``copy_sqlite``)."""
    return _starts_with(path, b"SQLite format 3\x00")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed: install the PostgreSQL client tools "
                          f"(e.g. apt-get install postgresql-client) to back up or restore "
                          "a PostgreSQL ledger")
    return found


def _run(args: list[str], what: str) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=3600, check=False)
    except OSError as e:
        raise ConfigError(f"{what} could not start: {e.strerror}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise ConfigError(f"{what} failed: {last}")


def _conninfo(url: DatabaseUrl, database: str | None = None) -> str:
    params = dict(url.connect_params)
    if database is not None:
        params["dbname"] = database
    return " ".join(f"{k}={_quote(v)}" for k, v in sorted(params.items()))


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dump_postgres(url: DatabaseUrl, target: Path) -> None:
    """``pg_dump`` of the site's database into ``target`` (a new file, renamed into place)."""
    tmp = _temporary(target)
    try:
        _run([_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={tmp}",
              f"--dbname={_conninfo(url)}"], "pg_dump")
        _fsync_and_rename(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def is_postgres_dump(path: Path) -> bool:
    """The file starts with pg_dump's custom-format header."""
    return _starts_with(path, b"PGDMP")


def postgres_database_exists(url: DatabaseUrl) -> bool:
    with psycopg.connect(_conninfo(url, "postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                           (url.database,)).fetchone()
    return row is not None


def restore_postgres(dump: Path, url: DatabaseUrl) -> None:
    """Create the database ``url`` names (it must not exist) and ``pg_restore`` ``dump`` into it."""
    if postgres_database_exists(url):
        raise ConfigError(f"database {url.database} already exists: restore into a new database "
                          "name (coi never overwrites a ledger)")
    with psycopg.connect(_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(url.database))))
    try:
        _run([_tool("pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={_conninfo(url)}",
              str(dump)], "pg_restore")
    except ConfigError:
        drop_postgres(url)
        raise


def drop_postgres(url: DatabaseUrl) -> None:
    with psycopg.connect(_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                     .format(sql.Identifier(str(url.database))))


@contextlib.contextmanager
def scratch_postgres(url: DatabaseUrl, dump: Path) -> Iterator[DatabaseUrl]:
    """``dump`` restored into a new database beside the site's, dropped at the end."""
    name = f"coi_scratch_{uuid.uuid4().hex[:12]}"
    scratch = url.with_database(name)
    restore_postgres(dump, scratch)
    try:
        yield scratch
    finally:
        drop_postgres(scratch)
