"""A receipt costs the same whatever the number of receipts before it (issue 21).

``coi handoff receive`` asks, under the write lock, whether this shipment was received already
(replay) and which checkpoint was accepted last from the sender (rollback, fork). Both used to
read and parse every ``handoff.received`` entry ever written; now the first reads the product's
own entries and the second the newest receipts, stopping at the sender's. Here a factory that
took in 3, then 30, products from the clinic (each followed by a receipt from another partner)
receives one more: the same SQL statements run, the same rows come back and the same entries
are parsed. The refusals (replay, rollback, fork) keep their tests in tests/test_handoff.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import coi.db.repo as repo
import coi.service.handoff_state as handoff_state
from coi.ledger.entry import b64
from coi.service.handoff_receive import receive_handoff
from coi.service.handoff_state import HANDOFF_RECEIVED, last_seen, received_at, sent_checkpoints
from coi.service.ledger import Party
from tests.test_handoff import (
    CLINIC,
    ELSEWHERE,
    FACTORY,
    Org,
    _template,
    copy_org,
    pin,
    send,
    ship,
)

OTHER = ELSEWHERE.split("+", 1)[0]  # a second partner's origin


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[Org, Org]:
    """A clinic and a factory pinning each other (copies of the session's templates)."""
    root = tmp_path_factory.getbasetemp() / "federation-bounded"
    clinic = copy_org(_template(root, "clinic", CLINIC), tmp_path / "c")
    factory = copy_org(_template(root, "factory", FACTORY), tmp_path / "f")
    pin(clinic, factory, "acme-factory", "manufacturing")
    pin(factory, clinic, "city-clinic", "collection")
    return clinic, factory


@contextmanager
def counted(org: Org, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The SQL statements run, ledger rows read and hand-off entries parsed meanwhile."""
    got: dict[str, Any] = {"sql": [], "rows": 0, "parsed": 0}
    real_stored, real_read = repo._stored, handoff_state.read_statement

    def stored(r: Any) -> Any:
        got["rows"] += 1
        return real_stored(r)

    def read(b: bytes) -> Any:
        got["parsed"] += 1
        return real_read(b)

    def on_sql(_c: Any, _cur: Any, sql: str, *_a: Any) -> None:
        got["sql"].append(re.sub(r"\s+", " ", sql))

    monkeypatch.setattr(repo, "_stored", stored)
    monkeypatch.setattr(handoff_state, "read_statement", read)
    engine = org.ledger.engine
    event.listen(engine, "before_cursor_execute", on_sql)
    try:
        yield got
    finally:
        event.remove(engine, "before_cursor_execute", on_sql)
        monkeypatch.undo()


def _other_receipt(factory: Org, seq: int) -> None:
    """A receipt from the other partner (as an older receiver wrote them: no carried state)."""
    factory.ledger.append(HANDOFF_RECEIVED, f"CHA99962600{seq:04d}", {
        "from": "elsewhere", "sender_origin": OTHER, "sender_fin": "A9996",
        "checkpoint": {"size": 10 + seq, "root": b64(bytes([seq % 256]) * 32)},
        "shipment": {"index": seq, "hash": f"{seq:064x}"}, "items": ["C00001"],
        "complete_from": 0, "file_sha256": "00" * 32, "bundle_sha256": "00" * 32,
        "cosigned": ""}, [Party(factory.people["maya"], "authored")], internal=True)


def _receipts(clinic: Org, factory: Org, tmp_path: Path, seqs: range) -> None:
    for seq in seqs:
        f = send(clinic, ship(clinic, seq), "acme-factory", tmp_path / f"h{seq}.jsonl")
        receive_handoff(factory.svc, factory.people["maya"], f)
        _other_receipt(factory, seq)


def _measure(clinic: Org, factory: Org, tmp_path: Path, seq: int,
             monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    f = send(clinic, ship(clinic, seq), "acme-factory", tmp_path / f"h{seq}.jsonl")
    with counted(factory, monkeypatch) as got:
        receive_handoff(factory.svc, factory.people["maya"], f)
    return got


def test_a_receipt_reads_the_same_after_3_or_30_receipts(
        pair: tuple[Org, Org], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clinic, factory = pair
    _receipts(clinic, factory, tmp_path, range(1, 4))
    at3 = _measure(clinic, factory, tmp_path, 4, monkeypatch)
    _other_receipt(factory, 4)
    _receipts(clinic, factory, tmp_path, range(5, 31))
    at30 = _measure(clinic, factory, tmp_path, 31, monkeypatch)
    print(f"\nstatements {len(at3['sql'])} vs {len(at30['sql'])}, ledger rows "
          f"{at3['rows']} vs {at30['rows']}, hand-off entries parsed "
          f"{at3['parsed']} vs {at30['parsed']}")
    assert at3["sql"] == at30["sql"]
    assert (at3["rows"], at3["parsed"]) == (at30["rows"], at30["parsed"])
    # What the bounded reads answer is what reading every receipt answered.
    seen = last_seen(factory.ledger, CLINIC[0])
    rows = list(factory.ledger.store.rows_of_types({HANDOFF_RECEIVED}))
    ours = [r for r in rows if b'"sender_origin":"' + CLINIC[0].encode() in r.statement]
    assert seen is not None and seen.index == ours[-1].index == max(r.index for r in ours)
    other = last_seen(factory.ledger, OTHER)
    assert other is not None and other.size == 10 + 30
    assert last_seen(factory.ledger, FACTORY[0]) is None
    first = ours[0]
    ship_hash = re.search(rb'"hash":"([0-9a-f]{64})"', first.statement.split(b'"shipment"')[1])
    assert ship_hash is not None
    assert received_at(factory.ledger, CLINIC[0], first.subject,
                       ship_hash.group(1).decode()) == first.index
    assert received_at(factory.ledger, OTHER, first.subject, ship_hash.group(1).decode()) is None


def test_the_checkpoints_sent_are_the_largest_and_read_from_the_newest(
        pair: tuple[Org, Org], tmp_path: Path) -> None:
    clinic, factory = pair
    sizes = []
    for seq in range(1, 21):
        f = send(clinic, ship(clinic, seq), "acme-factory", tmp_path / f"h{seq}.jsonl")
        sizes.append(int(f.read_bytes().split(b'"tree_size":', 1)[1].split(b",", 1)[0]))
        if seq % 3 == 0:
            receive_handoff(factory.svc, factory.people["maya"], f)
    got = sent_checkpoints(clinic.ledger, FACTORY[0], 16)
    assert [s for s, _ in got] == sorted(sizes)[-16:]
    assert [s for s, _ in sent_checkpoints(clinic.ledger, FACTORY[0], 3)] == sorted(sizes)[-3:]
    assert sent_checkpoints(clinic.ledger, OTHER, 16) == []
    assert sent_checkpoints(clinic.ledger, FACTORY[0], 0) == []
    for size, root in got:
        assert root == clinic.ledger.root_at(size)


def _plans(engine: Any, explain: str, settings: tuple[str, ...] = ()) -> list[str]:
    """The plans of the two reads the receipt makes, on this backend, as the store issues
    them: the newest entries of a type, and the entries of a type on one product."""
    store = repo.LedgerStore(engine)
    seen: list[tuple[str, Any]] = []

    def on_sql(_c: Any, _cur: Any, sql: str, params: Any, *_a: Any) -> None:
        if "FROM ledger_entry" in sql:
            seen.append((sql, params))

    event.listen(engine, "before_cursor_execute", on_sql)
    try:
        store.rows_of_type_before(HANDOFF_RECEIVED, 1000, 4)
        store.rows_of_type_on(HANDOFF_RECEIVED, "CHA99982600001A")
    finally:
        event.remove(engine, "before_cursor_execute", on_sql)
    out = []
    with engine.connect() as c:
        for setting in settings:
            c.exec_driver_sql(setting)
        for sql, params in seen:
            out.append(" | ".join(str(r[-1]) for r in c.exec_driver_sql(explain + sql, params)))
    return out


def test_sqlite_reads_the_newest_of_a_type_as_one_descending_range(sqlite_ledger: Any) -> None:
    newest, on_product = _plans(sqlite_ledger.svc.engine, "EXPLAIN QUERY PLAN ")
    # The (type, idx) index: the newest of a type, walked back, no sort.
    assert "ix_ledger_entry_type_idx (type=? AND idx<?)" in newest, newest
    assert "TEMP B-TREE" not in newest, newest
    assert "ix_ledger_entry_subject_idx" in on_product, on_product


@pytest.mark.postgres
def test_postgresql_reads_the_newest_of_a_type_through_an_index(pg_url: str) -> None:
    from coi.db import migrate
    from coi.db.engine import make_engine
    from coi.db.url import DatabaseUrl

    engine = make_engine(DatabaseUrl.parse(pg_url))
    try:
        migrate.upgrade(engine)
        # an empty table: ask what it *can* use (revision 0010's (type, idx) index: one
        # backward range of the type, no sort, whatever the planner thinks of the type's rows).
        newest, on_product = _plans(engine, "EXPLAIN ", ("SET enable_seqscan = off",))
    finally:
        engine.dispose()
    assert newest.startswith("Limit") and "Seq Scan" not in newest, newest
    assert "Index Scan Backward using ix_ledger_entry_type_idx" in newest, newest
    assert "Sort" not in newest, newest
    assert "ix_ledger_entry_subject_idx" in on_product and "Seq Scan" not in on_product, on_product
