"""The store's point reads of tree nodes and of the head, on SQLite and PostgreSQL.

``LedgerStore.nodes`` serves every proof, the append path's frontier and the audit export's
proofs; ``LedgerStore.head`` every command. Both read on the driver's own cursor: these tests
hold them to what the range reads (``reads.DriverReader``, which verification uses) and the
tree itself say.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coi.db.reads import DriverReader
from coi.db.tx import write
from coi.ledger import merkle
from tests.conftest import Ledger, make_ledger

SIZE = 300  # entries: the tree has ~600 nodes, more than one statement's worth of pairs


@pytest.fixture
def store_ledger(backend_db: tuple[str, Path]) -> Iterator[Ledger]:
    db, log_key = backend_db
    led = make_ledger(db, log_key, users=("alice",))
    led.note(SIZE - led.svc.store.head().size, witness=None)  # type: ignore[union-attr]
    yield led
    led.svc.engine.dispose()


def stored_by_range(led: Ledger, size: int) -> dict[tuple[int, int], bytes]:
    out: dict[tuple[int, int], bytes] = {}
    reader = DriverReader(led.svc.site.db)
    try:
        for level in range(size.bit_length()):
            for idx, h in reader.nodes_in_range(level, 0, size >> level):
                assert h is not None
                out[(level, idx)] = bytes(h)
    finally:
        reader.close()
    return out


def test_nodes_reads_every_wanted_node_and_only_those(store_ledger: Ledger) -> None:
    store = store_ledger.svc.store
    every = stored_by_range(store_ledger, SIZE)
    assert len(every) == sum(SIZE >> level for level in range(SIZE.bit_length()))
    wanted = list(every)[::-1]  # not in key order, and several statements' worth
    assert store.nodes(wanted) == every
    # Repeated ids are read once; ids with no stored node are left out (callers say which).
    some = [(0, 5), (0, 5), (3, 1), (0, SIZE + 7), (40, 0)]
    assert store.nodes(some) == {(0, 5): every[(0, 5)], (3, 1): every[(3, 1)]}
    assert store.nodes([]) == {}


def test_nodes_in_a_proof_rebuild_the_heads_root(store_ledger: Ledger) -> None:
    store = store_ledger.svc.store
    head = store.head()
    assert head is not None and head.size == SIZE
    for index in (0, 1, 137, SIZE - 1):
        nodes = store.nodes(merkle.inclusion_plan(index, SIZE) + merkle.frontier_nodes(SIZE)
                            + [(0, index)])
        proof = merkle.inclusion_proof(index, SIZE, nodes)
        assert merkle.root_from_nodes(SIZE, nodes) == head.root
        merkle.verify_inclusion(nodes[(0, index)], index, SIZE, proof, head.root)


def test_head_reads_the_last_entry(store_ledger: Ledger) -> None:
    store = store_ledger.svc.store
    head = store.head()
    assert head is not None
    last = list(store.rows(SIZE - 1, SIZE))[0]
    assert (head.size, head.last_hash.hex(), head.last_time_ms) == (
        SIZE, last.entry_hash, last.time_ms)
    assert head.origin == store_ledger.svc.origin()
    # Inside a write transaction the head reads what that transaction sees.
    with write(store.engine) as tx:
        assert store.head(tx=tx) == head
