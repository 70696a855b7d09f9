"""Concurrent writers: 8 processes × 200 appends each, on SQLite and on PostgreSQL.

Each process opens its own ``LedgerService``, unlocks its signer once (scrypt, before any lock),
waits for the others, then appends as fast as it can. Afterwards the indices must be exactly
0..n-1, every statement's ``prev`` the previous entry's hash (no fork), each process's 200
entries present once, the head right, and ``verify`` must pass.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from coi.ledger import jcs
from coi.service.ledger import LedgerService, Party
from tests.conftest import PASSWORDS, Ledger, make_ledger

PROCESSES = 8
APPENDS = 200


def _writer(db: str, log_key: str, user: str, worker: int, start: Any, out: Any) -> None:
    try:
        svc = LedgerService.open(db, log_key)
        me = svc.unlock(user, PASSWORDS[user])
        start.wait(120)
        got = []
        for n in range(APPENDS):
            e = svc.append("test.load", f"W{worker}", {"worker": worker, "n": n},
                           [Party(me, "authored")])
            got.append(e.index)
        out.put((worker, got, None))
    except BaseException as e:  # report, so the parent fails with the reason
        out.put((worker, [], repr(e)))


def _run(led: Ledger, users: list[str]) -> None:
    svc = led.svc
    before = svc.store.head().size  # type: ignore[union-attr]
    svc.engine.dispose()
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(led.db, str(led.log_key), users[w % len(users)],
                                               w, start, out)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    errors = [(w, e) for w, _, e in results if e]
    assert not errors, errors

    total = before + PROCESSES * APPENDS
    acknowledged = sorted(i for _, got, _ in results for i in got)
    assert acknowledged == list(range(before, total))  # every append got its own index
    for _, got, _ in results:
        assert got == sorted(got)  # one writer's entries keep their order

    with svc.engine.connect() as c:
        rows = c.execute(text("SELECT idx, prev_hash, entry_hash, statement FROM ledger_entry "
                              "ORDER BY idx")).all()
    assert [r.idx for r in rows] == list(range(total))  # contiguous, nothing lost
    for a, b in zip(rows, rows[1:], strict=False):
        assert b.prev_hash == a.entry_hash  # one chain: no fork
    seen = {(s["data"]["worker"], s["data"]["n"])
            for s in (jcs.decode(bytes(r.statement)) for r in rows[before:])}
    assert seen == {(w, n) for w in range(PROCESSES) for n in range(APPENDS)}
    head = svc.store.head()
    assert head is not None and head.size == total
    assert svc.verify().size == total


@pytest.mark.slow
def test_concurrent_writers_sqlite(sqlite_ledger: Ledger) -> None:
    _run(sqlite_ledger, ["alice", "bob", "carol", "admin"])


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_writers_postgres(pg_url: str, tmp_path: Path) -> None:
    led = make_ledger(pg_url, tmp_path / "pg.logkey", users=("alice",))
    try:
        _run(led, ["alice", "admin"])
    finally:
        led.svc.engine.dispose()
