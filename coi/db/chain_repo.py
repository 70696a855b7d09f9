"""Repository functions over the chain-of-identity tables: patients, CoI counters, product state.

``patient`` holds who a CoI identifier is about (outside the ledger, sealed, erasable);
``coi_counter`` hands out CoI sequence numbers, each once; ``product_state`` is each product's
state as the process replay computes it, written in the append's transaction (``Tx``) so that
it moves with the ledger, and read by the status, review and station views. Rows become plain
tuples and dicts here; nothing above builds a query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from coi.db import models
from coi.db.tx import Tx, connection, write

PAGE_ORDERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "coi": (("coi",), False), "state": (("state", "coi"), False),
    "deadline": (("deadline_ms", "coi"), False),
    "deviations": (("open_deviations", "coi"), True), "recent": (("last_index",), True)}
"""``ChainStore.product_rows``'s orders: the columns of the page key (each backed by an index of
``product_state``) and whether the list runs from the highest key down. A product's last index
is its own newest entry's, so it is unique and needs no tie-break."""

WINDOW_FILTERS = ("all", "window_soon", "window_exceeded", "deviation")
"""``ChainStore.product_rows``'s ``window`` filters: every product, a running window closing
within ``soon_ms``, one already exceeded, or open deviations."""

class PatientRow(NamedTuple):
    phi_key_id: str | None
    wrapped_key: bytes | None
    sealed: bytes | None
    erased_ms: int | None


P = models.patient
CC = models.coi_counter
PS = models.product_state
SC = models.state_count


class ChainStore:
    """Repository functions for the chain-of-identity tables."""

    def __init__(self, engine: Engine, *, reader: Engine | None = None) -> None:
        self.engine = engine
        self.reader = reader if reader is not None else engine  # lists, counts: no decisions

    def next_coi_sequence(self, fin: str, year: int) -> int:
        """Take the next sequence number for (FIN, year) in its own committed transaction.

        A number taken is never given again, even if the enrolment that took it fails later.
        """
        with write(self.engine) as tx:
            conn = tx.connection
            # The row is made if missing without a race: two first enrolments of a year at
            # once would otherwise both insert it (PostgreSQL locks no row that is not there).
            is_pg = self.engine.dialect.name == "postgresql"
            new_row = (pg_insert if is_pg else sqlite_insert)(CC).values(
                fin=fin, year=year, next_seq=1).on_conflict_do_nothing()
            conn.execute(new_row)
            q = select(CC.c.next_seq).where(and_(CC.c.fin == fin, CC.c.year == year))
            if is_pg:
                q = q.with_for_update()
            seq = int(conn.execute(q).scalar_one())
            conn.execute(update(CC).where(and_(CC.c.fin == fin, CC.c.year == year))
                         .values(next_seq=seq + 1))
            return seq

    def put_patient(self, *, tx: Tx, coi: str, phi_key_id: str, wrapped_key: bytes,
                    sealed: bytes, enrolled_index: int) -> None:
        tx.connection.execute(insert(P).values(coi=coi, phi_key_id=phi_key_id,
                                               wrapped_key=wrapped_key, sealed=sealed,
                                               enrolled_index=enrolled_index))

    def patient(self, coi: str) -> PatientRow | None:
        """The patient's sealed record (``wrapped_key`` and ``sealed`` None once erased)."""
        with self.engine.connect() as c:
            r = c.execute(select(P.c.phi_key_id, P.c.wrapped_key, P.c.sealed, P.c.erased_ms)
                          .where(P.c.coi == coi)).first()
        if r is None:
            return None
        return PatientRow(phi_key_id=r.phi_key_id, erased_ms=r.erased_ms,
                          wrapped_key=bytes(r.wrapped_key) if r.wrapped_key is not None else None,
                          sealed=bytes(r.sealed) if r.sealed is not None else None)

    def erase_patient(self, *, tx: Tx, coi: str, now_ms: int) -> bool:
        """Destroy the patient's wrapped key and sealed record (in the erasure entry's
        transaction). On SQLite, ``secure_delete`` overwrites the old cells in the file."""
        conn = tx.connection
        if self.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA secure_delete = ON")
        res = conn.execute(update(P).where(and_(P.c.coi == coi, P.c.wrapped_key.is_not(None)))
                           .values(wrapped_key=None, sealed=None, erased_ms=now_ms))
        return bool(res.rowcount)

    def scrub_log(self) -> bool:
        """After an erasure, leave no copy of the destroyed key behind the live row.

        SQLite: copy the WAL into the database and truncate it, so no page image from before the
        erasure stays in the ``-wal`` file. PostgreSQL: ``VACUUM FULL patient`` rewrites the
        table without the old row versions (waiting at most 5 s for its lock). False if that
        could not be done now (a reader held the WAL, or the table's lock); the next checkpoint
        or VACUUM does it."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                try:
                    c.exec_driver_sql("SET lock_timeout = '5s'")
                    c.exec_driver_sql("VACUUM FULL patient")
                    return True
                except DBAPIError:
                    return False
                finally:
                    c.exec_driver_sql("RESET lock_timeout")
        raw = self.engine.raw_connection()  # outside any transaction (no BEGIN)
        try:
            cur = raw.cursor()
            row = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cur.close()
        finally:
            raw.close()
        return row is not None and int(row[0]) == 0

    def put_state(self, *, tx: Tx, coi: str, state: str, data: str, last_index: int,
                  deadline_ms: int | None, deadline_window: str | None,
                  open_deviations: int, expected_index: int | None) -> None:
        conn = tx.connection
        values = {"state": state, "data": data, "last_index": last_index,
                  "deadline_ms": deadline_ms, "deadline_window": deadline_window,
                  "open_deviations": open_deviations, "expected_index": expected_index}
        old = conn.execute(select(PS.c.state).where(PS.c.coi == coi)).first()
        if old is None:
            conn.execute(insert(PS).values(coi=coi, **values))
        else:
            conn.execute(update(PS).where(PS.c.coi == coi).values(**values))
        if old is None or old.state != state:  # the counts move with the row, in its tx
            if old is not None:
                conn.execute(update(SC).where(SC.c.state == old.state)
                             .values(products=SC.c.products - 1))
            is_pg = conn.dialect.name == "postgresql"
            add = (pg_insert if is_pg else sqlite_insert)(SC).values(state=state, products=1)
            conn.execute(add.on_conflict_do_update(
                index_elements=[SC.c.state], set_={"products": SC.c.products + 1}))

    def state_counts(self, *, tx: Tx | None = None) -> dict[str, int]:
        """The stored count of products in each state (states with none left out)."""
        with connection(self.reader if tx is None else self.engine, tx) as c:
            return {r.state: int(r.products) for r in c.execute(
                select(SC.c.state, SC.c.products).where(SC.c.products != 0))}

    def state_rows(self, *, tx: Tx | None = None) -> dict[str, dict[str, Any]]:
        """Every stored row, every column, by CoI (what ``coi verify`` compares)."""
        with connection(self.engine, tx) as c:
            return {r.coi: dict(r._mapping) for r in c.execute(select(PS))}

    def replace_states(self, *, tx: Tx, remove: list[str], rows: Mapping[str, Mapping[str, Any]]
                       ) -> None:
        """Delete the rows of ``remove``, then insert ``rows`` (by CoI), in ``tx``."""
        conn = tx.connection
        for i in range(0, len(remove), 500):
            conn.execute(delete(PS).where(PS.c.coi.in_(remove[i:i + 500])))
        values = [{"coi": coi, **row} for coi, row in rows.items()]
        for i in range(0, len(values), 500):
            conn.execute(insert(PS), values[i:i + 500])
        conn.execute(delete(SC))  # counted again from the rows as they now stand
        conn.execute(insert(SC).from_select(
            ["state", "products"], select(PS.c.state, func.count()).group_by(PS.c.state)))

    def states(self, state: str | None = None) -> list[tuple[str, str, str, int]]:
        q = select(PS.c.coi, PS.c.state, PS.c.data, PS.c.last_index).order_by(PS.c.coi)
        if state is not None:
            q = q.where(PS.c.state == state)
        with self.engine.connect() as c:
            return [(r.coi, r.state, r.data, r.last_index) for r in c.execute(q)]

    def summary(self, *, soon_ms: int, now_ms: int, limit: int = 50) -> dict[str, Any]:
        """Counts by state (the ``state_count`` projection: one row per state); the first
        ``limit`` windows running out or exceeded (soonest first) and products with open
        deviations (most first), each with its total count. Every part is an index range, an
        index count or that projection: the cost does not grow with the products listed
        nowhere."""
        due = and_(PS.c.deadline_ms.is_not(None), PS.c.deadline_ms <= now_ms + soon_ms)
        with self.reader.connect() as c:
            by_state = {r.state: int(r.products) for r in c.execute(
                select(SC.c.state, SC.c.products).where(SC.c.products != 0))}
            windows = [(r.coi, r.state, r.deadline_ms, r.deadline_window) for r in c.execute(
                select(PS.c.coi, PS.c.state, PS.c.deadline_ms, PS.c.deadline_window)
                .where(due).order_by(PS.c.deadline_ms, PS.c.coi).limit(limit))]
            n_windows = int(c.execute(select(func.count()).select_from(PS).where(due)).scalar()
                            or 0)
            devs = [(r.coi, r.state, int(r.open_deviations)) for r in c.execute(
                select(PS.c.coi, PS.c.state, PS.c.open_deviations)
                .where(PS.c.open_deviations > 0)
                .order_by(PS.c.open_deviations.desc(), PS.c.coi.desc()).limit(limit))]
            n_devs = int(c.execute(select(func.count()).select_from(PS)
                                   .where(PS.c.open_deviations > 0)).scalar() or 0)
        return {"by_state": by_state, "windows": windows, "windows_total": n_windows,
                "deviations": devs, "deviations_total": n_devs}

    def expected(self, *, states: frozenset[str] | None = None, coi: str | None = None,
                 limit: int = 50) -> tuple[list[tuple[str, int]], int]:
        """The first ``limit`` products expected here, newest receipt first: (CoI, index of
        the ``handoff.received`` entry), and how many there are; ``states``: only those in one
        of them; ``coi``: only that product. One range of the partial index on
        ``expected_index`` and, when the page is full, one count of it."""
        cond: list[ColumnElement[bool]] = [PS.c.expected_index.is_not(None)]
        if states is not None:
            # On the state as a value (``state || ''``), not through the state index: that
            # holds every product ever shipped from here, which would then be read and sorted.
            cond.append((PS.c.state + "").in_(sorted(states)))
        if coi is not None:
            cond.append(PS.c.coi == coi)
        page_q = select(PS.c.coi, PS.c.expected_index).where(*cond)
        count_q = select(func.count()).select_from(PS).where(*cond)
        with self.reader.connect() as c:
            page = [(r.coi, int(r.expected_index)) for r in c.execute(
                page_q.order_by(PS.c.expected_index.desc()).limit(limit))]
            total = len(page) if len(page) < limit else int(c.execute(count_q).scalar() or 0)
        return page, total

    def product_rows(self, *, state: str | None = None, search: str | None = None,
                     window: str = "all", now_ms: int = 0, soon_ms: int = 0,
                     limit: int = 100, after: Mapping[str, Any] | None = None,
                     order: str = "coi") -> list[dict[str, Any]]:
        """One page of products for review screens (no JSON parsing: summary columns only).

        ``state``: in that state; ``search``: the CoI contains it; ``window``: one of
        ``WINDOW_FILTERS``, at ``now_ms`` (``soon_ms`` says how soon is "soon"); ``order``: one
        of ``PAGE_ORDERS``. ``after``: the last row of the previous page: the page starts right
        after it (keyset pagination: each page is an index range, so page 1,000 costs what
        page 1 costs; an offset would read and drop every row before it). Products without a
        running window come after the others when ordered by deadline.
        """
        q = select(PS.c.coi, PS.c.state, PS.c.last_index, PS.c.deadline_ms,
                   PS.c.deadline_window, PS.c.open_deviations)
        if state is not None:
            q = q.where(PS.c.state == state)
        if search:
            q = q.where(PS.c.coi.like(f"%{search.upper()}%"))
        if window == "window_soon":
            q = q.where(PS.c.deadline_ms.is_not(None), PS.c.deadline_ms >= now_ms,
                        PS.c.deadline_ms <= now_ms + soon_ms)
        elif window == "window_exceeded":
            q = q.where(PS.c.deadline_ms.is_not(None), PS.c.deadline_ms < now_ms)
        elif window == "deviation":
            q = q.where(PS.c.open_deviations > 0)
        elif window != "all":
            raise ValueError(f"unknown window filter {window!r}")
        if order not in PAGE_ORDERS:
            raise ValueError(f"unknown order {order!r}")
        if order == "deadline":  # two runs: with a deadline (soonest first), then without
            timed = q.where(PS.c.deadline_ms.is_not(None))
            untimed = q.where(PS.c.deadline_ms.is_(None))
            rows: list[dict[str, Any]] = []
            if after is None or after["deadline_ms"] is not None:
                rows = self._page(timed, ("deadline_ms", "coi"), False, after, limit)
                after = None
            if len(rows) < limit:
                rows += self._page(untimed, ("coi",), False, after, limit - len(rows))
            return rows
        keys, descending = PAGE_ORDERS[order]
        return self._page(q, keys, descending, after, limit)

    def _page(self, q: Any, keys: tuple[str, ...], descending: bool,
              after: Mapping[str, Any] | None, limit: int) -> list[dict[str, Any]]:
        cols = [PS.c[k] for k in keys]
        if after is not None:
            here, there = tuple_(*cols), tuple_(*[literal(after[k]) for k in keys])
            q = q.where(here < there if descending else here > there)
        q = q.order_by(*[c.desc() if descending else c for c in cols]).limit(limit)
        with self.reader.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def count_products(self) -> int:
        with self.reader.connect() as c:
            return int(c.execute(select(func.count()).select_from(PS)).scalar() or 0)

    def state_of(self, coi: str) -> tuple[str, str, int] | None:
        with self.engine.connect() as c:
            r = c.execute(select(PS.c.state, PS.c.data, PS.c.last_index)
                          .where(PS.c.coi == coi)).first()
        return (r.state, r.data, r.last_index) if r else None
