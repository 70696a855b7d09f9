"""Repository functions over the ledger tables: the only place rows become core objects.

Writers go through ``LedgerStore.append``, which takes the database's write lock (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``SELECT … FOR UPDATE`` on the single head row), hands the head
to a callback that builds and signs the next entry, and stores the entry, its new tree nodes and
the new head in one transaction. The index is always the head's size: never a sequence.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, update

from coi.db.models import (
    Account,
    Checkpoint,
    CoiCounter,
    LedgerEntry,
    LedgerHead,
    Patient,
    ProductStateRow,
    TreeNode,
    UserKey,
)
from coi.db.reads import entries_sql, fetch_all, node_pairs, nodes_sql, stored_tuple
from coi.ledger import merkle
from coi.ledger.entry import GENESIS_PREV, SignedEntry, StoredEntry

E = LedgerEntry.__table__  # type: ignore[attr-defined]
N = TreeNode.__table__  # type: ignore[attr-defined]
H = LedgerHead.__table__  # type: ignore[attr-defined]
C = Checkpoint.__table__  # type: ignore[attr-defined]
K = UserKey.__table__  # type: ignore[attr-defined]
A = Account.__table__  # type: ignore[attr-defined]


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

    conn: Connection
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
    return StoredEntry(index=r.idx, prev_hash=r.prev_hash, entry_hash=r.entry_hash,
                       time_ms=r.time_ms, type=r.type, subject=r.subject, signer=r.signer,
                       statement=bytes(r.statement) if r.statement is not None else None,  # type: ignore[arg-type]
                       signatures=bytes(r.signatures) if r.signatures is not None else None)  # type: ignore[arg-type]


class LedgerStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._tree_cache: merkle.TreeBuilder | None = None

    # -- reads --------------------------------------------------------------------------------
    def head(self, conn: Connection | None = None) -> Head | None:
        if conn is None:
            with self.engine.connect() as c:
                return self.head(c)
        rows = _fetch_all(conn, HEAD_SQL)
        return _head(rows[0]) if rows else None

    def rows(self, start: int = 0, stop: int | None = None, *, batch: int = 2000,
             conn: Connection | None = None) -> Iterator[StoredEntry]:
        """Stream rows in index order with keyset pagination (bounded memory)."""
        # The driver's own SQL and positional rows: this feeds every verification, and the
        # expression compiler and named-row access cost as much as reading the rows.
        q = entries_sql("%s" if self.is_postgres else "?")
        lo = start
        while stop is None or lo < stop:
            hi = lo + batch if stop is None else min(lo + batch, stop)
            if conn is None:
                with self.engine.connect() as c:
                    got = [stored_tuple(*r) for r in c.exec_driver_sql(q, (lo, hi))]
            else:
                got = [stored_tuple(*r) for r in conn.exec_driver_sql(q, (lo, hi))]
            yield from got
            if stop is None and not got and not self._any_after(hi, conn):
                return
            lo = hi

    def _any_after(self, idx: int, conn: Connection | None) -> bool:
        q = select(func.max(E.c.idx))
        if conn is None:
            with self.engine.connect() as c:
                m = c.execute(q).scalar()
        else:
            m = conn.execute(q).scalar()
        return m is not None and m >= idx

    def rows_of_types(self, types: Iterable[str], *, start: int = 0,
                      conn: Connection | None = None) -> list[StoredEntry]:
        q = (select(E).where(and_(E.c.idx >= start, E.c.type.in_(sorted(types))))
             .order_by(E.c.idx))
        if conn is None:
            with self.engine.connect() as c:
                return [_stored(r) for r in c.execute(q)]
        return [_stored(r) for r in conn.execute(q)]

    def row(self, index: int) -> StoredEntry | None:
        with self.engine.connect() as c:
            r = c.execute(select(E).where(E.c.idx == index)).first()
        return _stored(r) if r else None

    def rows_for_subject(self, subject: str) -> list[StoredEntry]:
        with self.engine.connect() as c:
            return [_stored(r) for r in c.execute(
                select(E).where(E.c.subject == subject).order_by(E.c.idx))]

    def count_rows(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(E)).scalar() or 0)

    def nodes(self, ids: Iterable[tuple[int, int]], conn: Connection | None = None
              ) -> dict[tuple[int, int], bytes]:
        ids = list(ids)
        if not ids:
            return {}
        if conn is None:
            with self.engine.connect() as c:
                return self.nodes(ids, c)
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

    def nodes_in_range(self, level: int, lo: int, hi: int, conn: Connection
                       ) -> list[tuple[int, bytes | None]]:
        """Stored ``(idx, hash)`` at ``level`` for indices [lo, hi) in index order; an empty
        (NULL) hash is None. The driver's own SQL: verification reads every node this way."""
        q = nodes_sql("%s" if self.is_postgres else "?")
        return node_pairs(conn.exec_driver_sql(q, (level, lo, hi)))

    def count_nodes(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(N)).scalar() or 0)

    # -- the write path -----------------------------------------------------------------------
    def append(self, build: Callable[[AppendContext], SignedEntry], *, origin: str,
               after: Callable[[Connection, SignedEntry], None] | None = None) -> SignedEntry:
        """Append one entry under the write lock; return it once durably committed.

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
            ctx = AppendContext(conn=conn, size=size,
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
                after(conn, entry)
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
        got = self.nodes(ids, conn)
        missing = [i for i in ids if i not in got]
        if missing:
            raise RuntimeError(f"tree nodes {missing} are missing: run coi verify")
        return [got[i] for i in ids]

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, size: int, note: str) -> None:
        with self.engine.begin() as c:
            if c.execute(select(C.c.size).where(C.c.size == size)).first() is None:
                c.execute(insert(C).values(size=size, note=note))

    def checkpoints(self) -> list[tuple[int, str]]:
        with self.engine.connect() as c:
            return [(r.size, r.note) for r in c.execute(select(C).order_by(C.c.size))]

    def checkpoint_at(self, size: int) -> str | None:
        with self.engine.connect() as c:
            r = c.execute(select(C.c.note).where(C.c.size == size)).first()
        return r.note if r else None

    # -- keys and accounts --------------------------------------------------------------------
    def put_user_key(self, conn: Connection, *, key_id: str, user: str, wrapped: str,
                     created_ms: int) -> None:
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

    def account(self, user: str, conn: Connection | None = None) -> tuple[int, bool]:
        if conn is None:
            with self.engine.connect() as c:
                return self.account(user, c)
        p = "%s" if self.is_postgres else "?"  # (read on every append: the driver's cursor)
        rows = _fetch_all(conn, f'SELECT failed_attempts, locked FROM account WHERE "user" = {p}',
                          (user,))
        return (int(rows[0][0]), bool(rows[0][1])) if rows else (0, False)

    def set_account(self, conn: Connection, user: str, *, failed: int, locked: bool) -> None:
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
        while True:
            q = (select(*cols).where(and_(E.c.idx > after, *cond)).order_by(E.c.idx)
                 .limit(batch))
            with self.engine.connect() as c:
                got = [stored_tuple(*r) for r in c.execute(q)]
            yield from got
            if len(got) < batch:
                return
            after = got[-1].index


P = Patient.__table__  # type: ignore[attr-defined]
CC = CoiCounter.__table__  # type: ignore[attr-defined]
PS = ProductStateRow.__table__  # type: ignore[attr-defined]


class ChainStore:
    """Repository functions for the chain-of-identity tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def next_coi_sequence(self, fin: str, year: int) -> int:
        """Take the next sequence number for (FIN, year) in its own committed transaction.

        A number taken is never given again, even if the enrolment that took it fails later.
        """
        with self.engine.connect().execution_options(coi_write=True) as conn, conn.begin():
            q = select(CC.c.next_seq).where(and_(CC.c.fin == fin, CC.c.year == year))
            if self.engine.dialect.name == "postgresql":
                q = q.with_for_update()
            row = conn.execute(q).first()
            if row is None:
                conn.execute(insert(CC).values(fin=fin, year=year, next_seq=2))
                return 1
            conn.execute(update(CC).where(and_(CC.c.fin == fin, CC.c.year == year))
                         .values(next_seq=row.next_seq + 1))
            return int(row.next_seq)

    def put_patient(self, conn: Connection, *, coi: str, secret: bytes, identifiers: str,
                    enrolled_index: int) -> None:
        conn.execute(insert(P).values(coi=coi, secret=secret, identifiers=identifiers,
                                      enrolled_index=enrolled_index))

    def patient(self, coi: str) -> tuple[bytes | None, str | None] | None:
        with self.engine.connect() as c:
            r = c.execute(select(P.c.secret, P.c.identifiers).where(P.c.coi == coi)).first()
        return (bytes(r.secret) if r.secret is not None else None, r.identifiers) if r else None

    def erase_patient(self, coi: str, now_ms: int) -> bool:
        with self.engine.begin() as c:
            res = c.execute(update(P).where(P.c.coi == coi)
                            .values(secret=None, identifiers=None, erased_ms=now_ms))
            return bool(res.rowcount)

    def put_state(self, conn: Connection, *, coi: str, state: str, data: str, last_index: int,
                  deadline_ms: int | None, deadline_window: str | None,
                  open_deviations: int) -> None:
        values = {"state": state, "data": data, "last_index": last_index,
                  "deadline_ms": deadline_ms, "deadline_window": deadline_window,
                  "open_deviations": open_deviations}
        if conn.execute(select(PS.c.coi).where(PS.c.coi == coi)).first() is None:
            conn.execute(insert(PS).values(coi=coi, **values))
        else:
            conn.execute(update(PS).where(PS.c.coi == coi).values(**values))

    def states(self, state: str | None = None) -> list[tuple[str, str, str, int]]:
        q = select(PS.c.coi, PS.c.state, PS.c.data, PS.c.last_index).order_by(PS.c.coi)
        if state is not None:
            q = q.where(PS.c.state == state)
        with self.engine.connect() as c:
            return [(r.coi, r.state, r.data, r.last_index) for r in c.execute(q)]

    def summary(self, *, soon_ms: int, now_ms: int) -> dict[str, Any]:
        """Counts by state, windows running out or exceeded, products with open deviations."""
        with self.engine.connect() as c:
            by_state = {r.state: int(r.n) for r in c.execute(
                select(PS.c.state, func.count().label("n")).group_by(PS.c.state))}
            windows = [(r.coi, r.state, r.deadline_ms, r.deadline_window) for r in c.execute(
                select(PS.c.coi, PS.c.state, PS.c.deadline_ms, PS.c.deadline_window)
                .where(and_(PS.c.deadline_ms.is_not(None), PS.c.deadline_ms <= now_ms + soon_ms))
                .order_by(PS.c.deadline_ms))]
            devs = [(r.coi, r.state, int(r.open_deviations)) for r in c.execute(
                select(PS.c.coi, PS.c.state, PS.c.open_deviations)
                .where(PS.c.open_deviations > 0).order_by(PS.c.coi))]
        return {"by_state": by_state, "windows": windows, "deviations": devs}

    def product_rows(self, *, state: str | None = None, search: str | None = None,
                     limit: int = 100, offset: int = 0, order: str = "coi"
                     ) -> list[dict[str, Any]]:
        """One page of products for review screens (no JSON parsing: summary columns only)."""
        q = select(PS.c.coi, PS.c.state, PS.c.last_index, PS.c.deadline_ms,
                   PS.c.deadline_window, PS.c.open_deviations)
        if state is not None:
            q = q.where(PS.c.state == state)
        if search:
            q = q.where(PS.c.coi.like(f"%{search.upper()}%"))
        col = {"coi": PS.c.coi, "state": PS.c.state, "deadline": PS.c.deadline_ms,
               "deviations": PS.c.open_deviations.desc(), "recent": PS.c.last_index.desc()
               }.get(order, PS.c.coi)
        q = q.order_by(col, PS.c.coi).limit(limit).offset(offset)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def count_products(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(PS)).scalar() or 0)

    def state_of(self, coi: str) -> tuple[str, str, int] | None:
        with self.engine.connect() as c:
            r = c.execute(select(PS.c.state, PS.c.data, PS.c.last_index)
                          .where(PS.c.coi == coi)).first()
        return (r.state, r.data, r.last_index) if r else None
