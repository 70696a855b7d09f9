"""Repository functions over the ledger tables: the only place their rows become core objects.

Writers go through ``LedgerStore.append``, which takes the database's write lock (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``SELECT … FOR UPDATE`` on the single head row), hands the head
to a callback that builds and signs the next entry, and stores the entry, its new tree nodes and
the new head in one transaction. The index is always the head's size: never a sequence.
What else is written with the entry (a user's sealed key, an account's counters, the domain's
tables) takes the append's ``Tx``: a keyword-only ``tx`` on every function that may run inside
one; without it a read opens a connection of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from coi.db import models
from coi.db.errors import DatabaseUnreachable
from coi.db.reads import entries_sql, fetch_all, stored_tuple
from coi.db.tx import Tx, connection, write
from coi.db.url import ConfigError
from coi.ledger import merkle
from coi.ledger.entry import GENESIS_PREV, SignedEntry, StoredEntry

E = models.ledger_entry
N = models.tree_node
H = models.ledger_head
C = models.checkpoint
K = models.user_key
A = models.account


@dataclass(frozen=True)
class Head:
    origin: str
    size: int
    root: bytes
    last_hash: bytes
    last_time_ms: int


@dataclass(frozen=True)
class AppendContext:
    """What the entry builder sees while the write lock is held."""

    tx: Tx  # the append's transaction: what is written with it commits with the entry
    size: int  # the index the new entry gets
    prev: bytes
    last_time_ms: int


HEAD_SQL = "SELECT origin, size, root, last_hash, last_time_ms FROM ledger_head WHERE id = 1"


def _head(row: Any) -> Head:
    """A ``HEAD_SQL`` row as a ``Head``; a NULL or malformed column raises TypeError or
    ValueError (``LedgerService.verify`` reports the head as damaged)."""
    origin, size, root, last_hash, last_time_ms = row
    return Head(origin=origin, size=size, root=bytes(root), last_hash=bytes.fromhex(last_hash),
                last_time_ms=last_time_ms)


def _fetch_all(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Rows of ``sql`` read on the driver's own cursor, in whatever transaction ``conn`` is in
    (none on SQLite: one statement reads one snapshot). Proofs and every command read the head
    this way: SQLAlchemy's statement and result layers cost several times the query itself."""
    return fetch_all(conn.connection.driver_connection, sql, params)


def _stored(r: Any) -> StoredEntry:
    """A row of ``ledger_entry`` as the core's ``StoredEntry``; a damaged column (text where a
    blob belongs, NULL) is passed on as it is for the core's row check to refuse, naming the
    entry, as the verify workers' reader does (``stored_tuple``)."""
    return stored_tuple(r.idx, r.prev_hash, r.entry_hash, r.time_ms, r.type, r.subject,
                        r.signer, r.statement, r.signatures)


READ_ONLY_SQLSTATE = "25006"  # PostgreSQL: read_only_sql_transaction (a hot standby)


class LedgerStore:
    def __init__(self, engine: Engine, *, reader: Engine | None = None) -> None:
        self.engine = engine
        self.reader = reader if reader is not None else engine  # reads that decide no move
        self.is_postgres = engine.dialect.name == "postgresql"
        self._tree_cache: merkle.TreeBuilder | None = None

    # -- reads --------------------------------------------------------------------------------
    def server_version(self) -> str:
        """The database engine's own version (for the installation qualification)."""
        with self.engine.connect() as c:
            if self.engine.dialect.name == "postgresql":
                return str(c.execute(text("SELECT version()")).scalar())
            return "SQLite " + str(c.execute(text("SELECT sqlite_version()")).scalar())

    def head(self, *, tx: Tx | None = None) -> Head | None:
        with connection(self.engine, tx) as conn:
            rows = _fetch_all(conn, HEAD_SQL)
        return _head(rows[0]) if rows else None

    def rows(self, start: int = 0, stop: int | None = None, *, batch: int = 2000,
             tx: Tx | None = None) -> Iterator[StoredEntry]:
        """Stream rows in index order with keyset pagination (bounded memory)."""
        # The driver's own SQL and positional rows: this feeds every verification, and the
        # expression compiler and named-row access cost as much as reading the rows.
        q = entries_sql("%s" if self.is_postgres else "?")
        lo = start
        while stop is None or lo < stop:
            hi = lo + batch if stop is None else min(lo + batch, stop)
            with connection(self.engine, tx) as conn:
                got = [stored_tuple(*r) for r in conn.exec_driver_sql(q, (lo, hi))]
            yield from got
            if stop is None and not got and self.first_index_from(hi, tx=tx) is None:
                return
            lo = hi

    def first_index_from(self, start: int, *, tx: Tx | None = None) -> int | None:
        """The lowest stored index at or after ``start``, if any."""
        with connection(self.engine, tx) as conn:
            m = conn.execute(select(func.min(E.c.idx)).where(E.c.idx >= start)).scalar()
        return None if m is None else int(m)

    def rows_of_types(self, types: Iterable[str], *, start: int = 0,
                      tx: Tx | None = None) -> list[StoredEntry]:
        q = (select(E).where(and_(E.c.idx >= start, E.c.type.in_(sorted(types))))
             .order_by(E.c.idx))
        with connection(self.engine, tx) as conn:
            return [_stored(r) for r in conn.execute(q)]

    def rows_of_type_before(self, type_: str, below: int | None, limit: int, *,
                            tx: Tx | None = None) -> list[StoredEntry]:
        """Up to ``limit`` entries of ``type_`` below index ``below`` (from the head when None),
        newest first: one descending range of the type index (SQLite: type, row id), or of the
        primary key filtered by type (PostgreSQL, by its planner's costs); a page, whatever the
        number of entries of that type written before."""
        cond = [E.c.type == type_] + ([E.c.idx < below] if below is not None else [])
        q = select(E).where(and_(*cond)).order_by(E.c.idx.desc()).limit(limit)
        with connection(self.engine, tx) as conn:
            return [_stored(r) for r in conn.execute(q)]

    def rows_of_type_on(self, type_: str, subject: str, *, tx: Tx | None = None
                        ) -> list[StoredEntry]:
        """The entries of ``type_`` on ``subject``, in index order: a range of the (subject,
        idx) index, as many rows as the subject has entries whatever the ledger's size. The
        type is picked out here, not in the query, so that no planner walks the type's index
        (every entry of that type ever written) instead."""
        q = select(E).where(E.c.subject == subject).order_by(E.c.idx)
        with connection(self.engine, tx) as conn:
            return [s for s in (_stored(r) for r in conn.execute(q)) if s.type == type_]

    def row(self, index: int) -> StoredEntry | None:
        with self.engine.connect() as c:
            r = c.execute(select(E).where(E.c.idx == index)).first()
        return _stored(r) if r else None

    def rows_at(self, indexes: Iterable[int], *, replica: bool = False) -> list[StoredEntry]:
        """The entries at these indexes, in index order (one primary-key lookup each, in one
        query; ``replica``: from the read replica, for what is only shown)."""
        wanted = sorted(set(indexes))
        if not wanted:
            return []
        with (self.reader if replica else self.engine).connect() as c:
            return [_stored(r) for r in c.execute(
                select(E).where(E.c.idx.in_(wanted)).order_by(E.c.idx))]

    def rows_for_subject(self, subject: str, *, replica: bool = False) -> list[StoredEntry]:
        """Every entry on ``subject`` in index order (``replica``: from the read replica, for
        what is only shown)."""
        with (self.reader if replica else self.engine).connect() as c:
            return [_stored(r) for r in c.execute(
                select(E).where(E.c.subject == subject).order_by(E.c.idx))]

    def last_on_subject(self, subject: str, below: int, *, tx: Tx | None = None
                        ) -> tuple[int, bytes] | None:
        """``(index, entry hash)`` of the last entry on ``subject`` below ``below``, or None:
        what a new statement's ``subject_prev`` names (one lookup on the (subject, idx) index)."""
        p = "%s" if self.is_postgres else "?"
        with connection(self.engine, tx) as conn:
            rows = _fetch_all(conn, "SELECT idx, entry_hash FROM ledger_entry WHERE subject = "
                              f"{p} AND idx < {p} ORDER BY idx DESC LIMIT 1", (subject, below))
        return (int(rows[0][0]), bytes.fromhex(rows[0][1])) if rows else None

    def count_rows(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(E)).scalar() or 0)

    def nodes(self, ids: Iterable[tuple[int, int]], *, tx: Tx | None = None
              ) -> dict[tuple[int, int], bytes]:
        ids = list(ids)
        if not ids:
            return {}
        if tx is None:
            with self.engine.connect() as c:
                return self._nodes(ids, c)
        return self._nodes(ids, tx.connection)

    def _nodes(self, ids: list[tuple[int, int]], conn: Connection
               ) -> dict[tuple[int, int], bytes]:
        # The wanted (level, idx) pairs as a VALUES list joined to the primary key: one
        # point lookup each, in one statement (a proof needs ~2 log n nodes: one round trip).
        # An OR of "level = ? AND idx IN (...)" terms is planned as a multi-index OR, three
        # times slower; a row-value IN is not planned as lookups at all on SQLite (it scanned
        # every node). SQLite's CROSS JOIN keeps the list as the outer loop.
        wanted = list(dict.fromkeys(ids))
        p = "%s" if self.is_postgres else "?"
        join = "JOIN" if self.is_postgres else "CROSS JOIN"
        out: dict[tuple[int, int], bytes] = {}
        for i in range(0, len(wanted), 200):
            chunk = wanted[i:i + 200]
            q = (f"WITH w (l, i) AS (VALUES {', '.join([f'({p}, {p})'] * len(chunk))}) "
                 f"SELECT n.level, n.idx, n.hash FROM w {join} tree_node n "
                 "ON n.level = w.l AND n.idx = w.i")
            for lv, ix, h in _fetch_all(conn, q, [v for pair in chunk for v in pair]):
                out[(lv, ix)] = bytes(h)
        return out

    def count_nodes(self, *, tx: Tx | None = None) -> int:
        with connection(self.engine, tx) as conn:
            return int(conn.execute(select(func.count()).select_from(N)).scalar() or 0)

    # -- the write path -----------------------------------------------------------------------
    def append(self, build: Callable[[AppendContext], SignedEntry], *, origin: str,
               after: Callable[[Tx, SignedEntry], None] | None = None) -> SignedEntry:
        """Append one entry under the write lock; return it once durably committed.

        A PostgreSQL server that cannot be reached, or goes away, is ``DatabaseUnreachable``:
        ``maybe_committed`` when the entry was built (so it may have reached the server's
        commit) and the caller must look for it before trying again.
        """
        built: list[SignedEntry] = []

        def tracked(ctx: AppendContext) -> SignedEntry:
            built.append(build(ctx))
            return built[-1]

        try:
            return self._append(tracked, origin=origin, after=after)
        except Exception as e:  # the driver's own errors too: the hot path uses its cursor
            raise self._storage_error(e, built[-1] if built else None) from None

    def _storage_error(self, e: Exception, entry: SignedEntry | None) -> Exception:
        """What a database error means to the caller: a replica that refuses writes
        (``ConfigError``), a server gone (``DatabaseUnreachable``), or itself."""
        orig = e.orig if isinstance(e, DBAPIError) else e
        dbapi = self.engine.dialect.dbapi
        if getattr(orig, "sqlstate", None) == READ_ONLY_SQLSTATE:
            return ConfigError("this database is a read-only replica: entries are written to "
                               "the primary (--db / COI_DATABASE_URL names it)")
        gone = (isinstance(e, DBAPIError) and e.connection_invalidated) or (
            dbapi is not None and isinstance(orig, (dbapi.OperationalError,
                                                    dbapi.InterfaceError)))
        if not self.is_postgres or not gone:
            return e
        self._tree_cache = None
        detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return DatabaseUnreachable(detail, maybe_committed=entry is not None, entry=entry)

    def has_entry(self, entry_hash: bytes) -> bool:
        """Whether an entry with this hash is stored (after a commit that may have failed)."""
        try:
            with self.engine.connect() as c:
                return c.execute(select(E.c.idx).where(E.c.entry_hash == entry_hash.hex())
                                 ).first() is not None
        except Exception as e:
            raise self._storage_error(e, None) from None

    def _append(self, build: Callable[[AppendContext], SignedEntry], *, origin: str,
                after: Callable[[Tx, SignedEntry], None] | None = None) -> SignedEntry:
        """One attempt of ``append``.

        The hot path speaks the driver's own SQL (made once per dialect) on the driver's own
        cursor, inside the transaction SQLAlchemy began, rather than going through the
        expression compiler and SQLAlchemy's result objects: it runs once per hand-off and
        dominates throughput.
        """
        sql = self._sql
        with (self.engine.connect().execution_options(coi_write=True) as conn, conn.begin(),
              closing(conn.connection.driver_connection.cursor()) as cur):  # type: ignore[union-attr]
            row = cur.execute(sql["head"]).fetchone()
            size = row[0] if row else 0
            tx = Tx(conn)
            ctx = AppendContext(tx=tx, size=size,
                                prev=bytes.fromhex(row[1]) if row else GENESIS_PREV,
                                last_time_ms=row[2] if row else 0)
            entry = build(ctx)
            if entry.index != size:
                raise RuntimeError(f"built entry {entry.index} but the head is at {size}")
            cached = self._tree_cache
            if cached is not None and cached.size == size:
                tree = merkle.TreeBuilder.from_frontier(size, cached.frontier)
            else:
                tree = merkle.TreeBuilder.from_frontier(size, self._frontier(size, conn))
            new_nodes = tree.append(entry.entry_hash)
            st = entry.statement
            cur.execute(sql["entry"], (
                size, st.prev.hex(), entry.entry_hash.hex(), st.time_ms, st.type, st.subject,
                st.author.user, entry.statement_bytes, entry.signatures_bytes))
            cur.executemany(sql["node"], [(lv, ix, h) for lv, ix, h in new_nodes])
            values = (size + 1, tree.root(), entry.entry_hash.hex(), st.time_ms)
            if row is None:
                conn.execute(insert(H).values(id=1, origin=origin, size=values[0],
                                              root=values[1], last_hash=values[2],
                                              last_time_ms=values[3]))
            else:
                cur.execute(sql["head_update"], values)
            if after is not None:
                after(tx, entry)
        self._tree_cache = tree
        return entry

    @functools.cached_property
    def _sql(self) -> dict[str, str]:
        p = "%s" if self.is_postgres else "?"
        lock = " FOR UPDATE" if self.is_postgres else ""
        return {
            "head": f"SELECT size, last_hash, last_time_ms FROM ledger_head WHERE id = 1{lock}",
            "entry": "INSERT INTO ledger_entry (idx, prev_hash, entry_hash, time_ms, type, "
                     f"subject, signer, statement, signatures) VALUES ({', '.join([p] * 9)})",
            "node": f"INSERT INTO tree_node (level, idx, hash) VALUES ({p}, {p}, {p})",
            "head_update": f"UPDATE ledger_head SET size = {p}, root = {p}, last_hash = {p}, "
                           f"last_time_ms = {p} WHERE id = 1",
        }

    def _frontier(self, size: int, conn: Connection) -> list[bytes]:
        ids = merkle.frontier_nodes(size)
        got = self._nodes(ids, conn)
        missing = [i for i in ids if i not in got]
        if missing:
            raise RuntimeError(f"tree nodes {missing} are missing: run coi verify")
        return [got[i] for i in ids]

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, size: int, note: str) -> None:
        # A writer's transaction (BEGIN IMMEDIATE on SQLite): a deferred one that reads first
        # fails with "database is locked" when a station appends meanwhile.
        with write(self.engine) as tx:
            c = tx.connection
            if c.execute(select(C.c.size).where(C.c.size == size)).first() is None:
                c.execute(insert(C).values(size=size, note=note))

    def checkpoints(self, *, tx: Tx | None = None) -> list[tuple[int, str]]:
        with connection(self.engine, tx) as c:
            return [(r.size, r.note) for r in c.execute(select(C).order_by(C.c.size))]

    def checkpoint_at(self, size: int) -> str | None:
        with self.engine.connect() as c:
            r = c.execute(select(C.c.note).where(C.c.size == size)).first()
        return r.note if r else None

    # -- keys and accounts --------------------------------------------------------------------
    def put_user_key(self, *, tx: Tx, key_id: str, user: str, wrapped: str,
                     created_ms: int) -> None:
        conn = tx.connection
        conn.execute(insert(K).values(key_id=key_id, user=user, wrapped=wrapped,
                                      created_ms=created_ms))
        if conn.execute(select(A.c.user).where(A.c.user == user)).first() is None:
            conn.execute(insert(A).values(user=user, failed_attempts=0, locked=0))

    def user_key(self, key_id: str) -> tuple[str, str] | None:
        with self.engine.connect() as c:
            r = c.execute(select(K.c.user, K.c.wrapped).where(K.c.key_id == key_id)).first()
        return (r.user, r.wrapped) if r else None

    def user_keys(self) -> Sequence[tuple[str, str, str]]:
        with self.engine.connect() as c:
            return [(r.key_id, r.user, r.wrapped) for r in c.execute(select(K))]

    def account(self, user: str, *, tx: Tx | None = None) -> tuple[int, bool]:
        """``(failed attempts, locked)``; a user without a row has (0, False)."""
        p = "%s" if self.is_postgres else "?"  # (read on every append: the driver's cursor)
        with connection(self.engine, tx) as conn:
            rows = _fetch_all(conn, f'SELECT failed_attempts, locked FROM account WHERE "user" = '
                              f'{p}', (user,))
        return (int(rows[0][0]), bool(rows[0][1])) if rows else (0, False)

    def set_account(self, user: str, *, tx: Tx | None = None, failed: int, locked: bool
                    ) -> None:
        """Set the counters in ``tx`` or, without it, in a write transaction of their own."""
        if tx is None:
            with write(self.engine) as own:
                return self.set_account(user, tx=own, failed=failed, locked=locked)
        conn = tx.connection
        if conn.execute(select(A.c.user).where(A.c.user == user)).first() is None:
            conn.execute(insert(A).values(user=user, failed_attempts=failed, locked=int(locked)))
        else:
            conn.execute(update(A).where(A.c.user == user)
                         .values(failed_attempts=failed, locked=int(locked)))

    # -- streaming selections (audit export) ----------------------------------------------------
    def rows_where(self, *, subject: str | None = None, since_ms: int | None = None,
                   until_ms: int | None = None, below: int | None = None,
                   types: Iterable[str] | None = None, batch: int = 2000
                   ) -> Iterator[StoredEntry]:
        """Stream the rows that match every filter given, in index order, ``batch`` at a time.

        ``subject``: that statement subject; ``since_ms``/``until_ms``: statement time in
        [since, until); ``below``: index below it (a checkpoint's size); ``types``: one of these
        entry types. Keyset pagination on ``idx`` (each page starts after the last index read,
        one short connection per page): memory stays O(batch) and no read transaction is held
        open between pages, whatever the number of rows.
        """
        cond: list[Any] = []
        if subject is not None:
            cond.append(E.c.subject == subject)
        if since_ms is not None:
            cond.append(E.c.time_ms >= since_ms)
        if until_ms is not None:
            cond.append(E.c.time_ms < until_ms)
        if below is not None:
            cond.append(E.c.idx < below)
        if types is not None:
            cond.append(E.c.type.in_(sorted(types)))
        cols = (E.c.idx, E.c.prev_hash, E.c.entry_hash, E.c.time_ms, E.c.type, E.c.subject,
                E.c.signer, E.c.statement, E.c.signatures)
        after = -1
        source = self.engine
        if self.reader is not self.engine:  # the replica, if it holds what is asked for
            with self.reader.connect() as c:
                there = c.execute(select(H.c.size)).scalar()
            if below is not None and there is not None and int(there) >= below:
                source = self.reader
        while True:
            q = (select(*cols).where(and_(E.c.idx > after, *cond)).order_by(E.c.idx)
                 .limit(batch))
            with source.connect() as c:
                got = [stored_tuple(*r) for r in c.execute(q)]
            yield from got
            if len(got) < batch:
                return
            after = got[-1].index
