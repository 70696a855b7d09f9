"""Reading ledger rows and tree nodes through the database driver alone.

What whole-ledger verification needs from the store: entry rows by index range and tree nodes
by level and index range. ``LedgerStore`` runs the same statements through SQLAlchemy;
verification (in this process and in its worker processes) runs them with ``DriverReader``,
which imports neither SQLAlchemy nor the models, so a worker starts in a fraction of the time
(its start is paid on every ``verify --jobs``). A worker is sent a ``DriverSource`` and opens
its own reader from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coi.db.url import DatabaseUrl
from coi.ledger.entry import StoredEntry

ENTRY_COLUMNS = ("idx, prev_hash, entry_hash, time_ms, type, subject, signer, statement, "
                 "signatures")


def entries_sql(p: str) -> str:
    """Rows with ``lo <= idx < hi`` in index order; ``p`` is the driver's placeholder."""
    return (f"SELECT {ENTRY_COLUMNS} FROM ledger_entry WHERE idx >= {p} AND idx < {p} "
            "ORDER BY idx")


def nodes_sql(p: str) -> str:
    """Tree nodes at one level with ``lo <= idx < hi`` in index order."""
    return (f"SELECT idx, hash FROM tree_node WHERE level = {p} AND idx >= {p} AND idx < {p} "
            "ORDER BY idx")


def stored_tuple(idx: Any, prev_hash: Any, entry_hash: Any, time_ms: Any, type_: Any,
                 subject: Any, signer: Any, statement: Any, signatures: Any) -> StoredEntry:
    """A positional row of ``ENTRY_COLUMNS`` as the core's ``StoredEntry``."""
    return StoredEntry(index=idx, prev_hash=prev_hash, entry_hash=entry_hash, time_ms=time_ms,
                       type=type_, subject=subject, signer=signer,
                       statement=_blob(statement), signatures=_blob(signatures))


def _blob(value: Any) -> Any:
    """A driver's blob as bytes; anything else (a damaged row: text, a number, NULL) as it is,
    for the core's row check to refuse naming the entry."""
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else value


def fetch_all(dbapi_conn: Any, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Rows of ``sql`` on a cursor of ``dbapi_conn`` (sqlite3 or psycopg), closed after."""
    cur = dbapi_conn.cursor()
    try:
        rows: list[Any] = cur.execute(sql, tuple(params)).fetchall()
        return rows
    finally:
        cur.close()


class DriverReader:
    """Entry rows and tree nodes of the database at ``url``, read with sqlite3 or psycopg
    directly, each call in its own read transaction."""

    def __init__(self, url: DatabaseUrl) -> None:
        self.is_postgres = url.backend == "postgresql"
        if self.is_postgres:
            import psycopg
            from psycopg.conninfo import make_conninfo

            self._conn: Any = psycopg.connect(make_conninfo(**dict(url.connect_params)))
            p = "%s"
        else:
            import sqlite3

            self._conn = sqlite3.connect(str(url.sqlite_path), timeout=60, isolation_level=None)
            p = "?"
        self._entries, self._nodes = entries_sql(p), nodes_sql(p)

    def _fetch(self, sql: str, params: tuple[int, ...]) -> list[Any]:
        try:
            return fetch_all(self._conn, sql, params)
        finally:
            if self.is_postgres:
                self._conn.rollback()

    def rows(self, lo: int, hi: int) -> list[StoredEntry]:
        make = StoredEntry._make
        return [make(r) if type(r[7]) is bytes and type(r[8]) is bytes else stored_tuple(*r)
                for r in self._fetch(self._entries, (lo, hi))]

    def nodes_in_range(self, level: int, lo: int, hi: int) -> list[tuple[int, bytes | None]]:
        # As fetched: tuples of an int and bytes (None for an empty hash), or another
        # bytes-like hash, which compares equal to bytes of the same content.
        return self._fetch(self._nodes, (level, lo, hi))

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True)
class DriverSource:
    """How to open a ``DriverReader`` on a database, sent to verify workers by pickle (which
    imports this module there: it, the URL and the core's entry module, nothing else)."""

    url: DatabaseUrl

    def open(self) -> DriverReader:
        return DriverReader(self.url)
