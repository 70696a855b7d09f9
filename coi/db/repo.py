"""Repository functions over the ledger tables: the only place rows become core objects.

Writers go through ``LedgerStore.append``, which takes the database's write lock (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``SELECT … FOR UPDATE`` on the single head row), hands the head
to a callback that builds and signs the next entry, and stores the entry, its new tree nodes and
the new head in one transaction. The index is always the head's size: never a sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, tuple_, update

from coi.db.models import Account, Checkpoint, LedgerEntry, LedgerHead, TreeNode, UserKey
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


def _head(row: Any) -> Head:
    return Head(origin=row.origin, size=row.size, root=bytes(row.root),
                last_hash=bytes.fromhex(row.last_hash), last_time_ms=row.last_time_ms)


def _stored(r: Any) -> StoredEntry:
    return StoredEntry(index=r.idx, prev_hash=r.prev_hash, entry_hash=r.entry_hash,
                       time_ms=r.time_ms, type=r.type, subject=r.subject, signer=r.signer,
                       statement=bytes(r.statement) if r.statement is not None else None,  # type: ignore[arg-type]
                       signatures=bytes(r.signatures) if r.signatures is not None else None)  # type: ignore[arg-type]


class LedgerStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    # -- reads --------------------------------------------------------------------------------
    def head(self, conn: Connection | None = None) -> Head | None:
        if conn is None:
            with self.engine.connect() as c:
                return self.head(c)
        row = conn.execute(select(H).where(H.c.id == 1)).first()
        return _head(row) if row else None

    def rows(self, start: int = 0, stop: int | None = None, *, batch: int = 2000,
             conn: Connection | None = None) -> Iterator[StoredEntry]:
        """Stream rows in index order with keyset pagination (bounded memory)."""
        lo = start
        while stop is None or lo < stop:
            hi = lo + batch if stop is None else min(lo + batch, stop)
            q = select(E).where(and_(E.c.idx >= lo, E.c.idx < hi)).order_by(E.c.idx)
            if conn is None:
                with self.engine.connect() as c:
                    got = [_stored(r) for r in c.execute(q)]
            else:
                got = [_stored(r) for r in conn.execute(q)]
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
        out: dict[tuple[int, int], bytes] = {}
        for i in range(0, len(ids), 200):
            chunk = ids[i:i + 200]
            q = select(N.c.level, N.c.idx, N.c.hash).where(tuple_(N.c.level, N.c.idx).in_(chunk))
            for r in conn.execute(q):
                out[(r.level, r.idx)] = bytes(r.hash)
        return out

    def nodes_in_range(self, level: int, lo: int, hi: int, conn: Connection
                       ) -> list[tuple[int, bytes]]:
        q = (select(N.c.idx, N.c.hash)
             .where(and_(N.c.level == level, N.c.idx >= lo, N.c.idx < hi)).order_by(N.c.idx))
        return [(r.idx, bytes(r.hash)) for r in conn.execute(q)]

    def count_nodes(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(N)).scalar() or 0)

    # -- the write path -----------------------------------------------------------------------
    def append(self, build: Callable[[AppendContext], SignedEntry], *, origin: str,
               after: Callable[[Connection, SignedEntry], None] | None = None) -> SignedEntry:
        """Append one entry under the write lock; return it once durably committed."""
        with self.engine.connect().execution_options(coi_write=True) as conn, conn.begin():
            q = select(H).where(H.c.id == 1)
            if self.is_postgres:
                q = q.with_for_update()
            row = conn.execute(q).first()
            head = _head(row) if row else None
            size = head.size if head else 0
            ctx = AppendContext(conn=conn, size=size,
                                prev=head.last_hash if head else GENESIS_PREV,
                                last_time_ms=head.last_time_ms if head else 0)
            entry = build(ctx)
            if entry.index != size:
                raise RuntimeError(f"built entry {entry.index} but the head is at {size}")
            tree = merkle.TreeBuilder.from_frontier(size, self._frontier(size, conn))
            new_nodes = tree.append(entry.entry_hash)
            st = entry.statement
            conn.execute(insert(E).values(
                idx=size, prev_hash=st.prev.hex(), entry_hash=entry.entry_hash.hex(),
                time_ms=st.time_ms, type=st.type, subject=st.subject, signer=st.author.user,
                statement=entry.statement_bytes, signatures=entry.signatures_bytes))
            conn.execute(insert(N), [{"level": lv, "idx": ix, "hash": h}
                                     for lv, ix, h in new_nodes])
            values = {"size": size + 1, "root": tree.root(), "last_hash": entry.entry_hash.hex(),
                      "last_time_ms": st.time_ms}
            if head is None:
                conn.execute(insert(H).values(id=1, origin=origin, **values))
            else:
                conn.execute(update(H).where(H.c.id == 1).values(**values))
            if after is not None:
                after(conn, entry)
        return entry

    def _frontier(self, size: int, conn: Connection) -> list[bytes]:
        ids = merkle.frontier_nodes(size)
        got = self.nodes(ids, conn)
        missing = [i for i in ids if i not in got]
        if missing:
            raise RuntimeError(f"tree nodes {missing} are missing: run coi verify")
        return [got[i] for i in ids]

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, size: int, note: str, issued_ms: int) -> None:
        with self.engine.begin() as c:
            if c.execute(select(C.c.size).where(C.c.size == size)).first() is None:
                c.execute(insert(C).values(size=size, note=note, issued_ms=issued_ms))

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

    def account(self, user: str) -> tuple[int, bool]:
        with self.engine.connect() as c:
            r = c.execute(select(A).where(A.c.user == user)).first()
        return (r.failed_attempts, bool(r.locked)) if r else (0, False)

    def set_account(self, conn: Connection, user: str, *, failed: int, locked: bool) -> None:
        if conn.execute(select(A.c.user).where(A.c.user == user)).first() is None:
            conn.execute(insert(A).values(user=user, failed_attempts=failed, locked=int(locked)))
        else:
            conn.execute(update(A).where(A.c.user == user)
                         .values(failed_attempts=failed, locked=int(locked)))
