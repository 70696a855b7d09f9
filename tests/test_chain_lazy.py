"""Checking one product reads that product's own entries, nothing else (issue 21, item 1).

A service that starts on a ledger holds no product; asking for one builds it from its own
entries, so the first scan at a busy site costs what it costs on an empty one. What other
writers append meanwhile is applied to the products held (one range of indexes since the last
look). Both must give exactly the state a full replay of the ledger gives.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coi.domain.replay import replay
from coi.ledger import jcs
from coi.ledger.entry import Statement
from coi.service.chain import CoiService, fact_of
from tests.chain_site import ChainSite, copy_site, do, new_walk, walk


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> ChainSite:
    return copy_site(tmp_path_factory.getbasetemp() / "chain-template", tmp_path / "site")


def _full_replay(svc: CoiService) -> dict[str, object]:
    reg = svc.ledger.registry()
    types = svc.process().entry_types
    facts = [fact_of(Statement.from_json(jcs.decode(r.statement)), reg)
             for r in svc.ledger.store.rows() if r.type in types]
    return {coi: p.to_json() for coi, p in replay(svc.process(), facts).products.items()}


def test_a_new_service_builds_only_the_product_it_is_asked_about(site: ChainSite) -> None:
    walks = [new_walk(site, seq) for seq in (1, 2, 3)]
    for w in walks:
        walk(site, w, until="receipt_at_manufacturing")
    fresh = CoiService.open(site.db, str(site.log_key), clock=site.clock)
    assert fresh.chain().products == {}
    product = fresh.chain().product(walks[1].coi)
    assert product is not None
    assert set(fresh.chain().products) == {walks[1].coi}
    assert product.to_json() == _full_replay(fresh)[walks[1].coi]
    fresh.ledger.engine.dispose()


def test_steps_recorded_by_another_writer_reach_a_product_already_held(site: ChainSite) -> None:
    w = new_walk(site, 1)
    walk(site, w, until="packaging")
    other = CoiService.open(site.db, str(site.log_key), clock=site.clock)
    assert other.chain().product(w.coi) is not None  # held before the next steps
    do(site, w)  # packaging, by the first service
    do(site, w)  # courier pickup, by the first service
    mine = site.svc
    site.svc = other  # the next step through the second service: it must have caught up
    try:
        do(site, w)
    finally:
        site.svc = mine
    rebuilt = _full_replay(other)
    assert other.chain().product(w.coi).to_json() == rebuilt[w.coi]  # type: ignore[union-attr]
    assert mine.chain().product(w.coi) is not None
    other.verify()
    other.ledger.engine.dispose()
