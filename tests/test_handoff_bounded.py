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
from tests.test_handoff import (  # noqa: F401  (pair, templates: the fixtures)
    CLINIC,
    ELSEWHERE,
    FACTORY,
    Org,
    pair,
    send,
    ship,
    templates,
)

OTHER = ELSEWHERE.split("+", 1)[0]  # a second partner's origin


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
    rows = [r for r in factory.ledger.store.rows_of_types({HANDOFF_RECEIVED})]
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
