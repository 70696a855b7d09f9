"""Bounded views (issue 21, item 3): the review list pages by key, ``coi status`` lists at most
``--limit`` rows with whole counts. Paging through every order gives each product exactly once,
in the order a full sort gives; each page is read as an index range (``EXPLAIN``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from coi.db.chain_repo import PAGE_ORDERS
from coi.service.views import product_page
from tests.chain_site import ChainSite, copy_site, do, new_walk, walk


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> ChainSite:
    """Nine products at different points of the chain (some with running windows)."""
    site = copy_site(tmp_path_factory.getbasetemp() / "chain-template",
                     tmp_path_factory.mktemp("pages"))
    for seq in range(1, 10):
        w = new_walk(site, seq, start_ms=site.clock.now_ms() + seq * 60_000)
        if seq % 3:
            walk(site, w, until="labelling")
        if seq % 3 == 2:
            do(site, w)
    return site


def _sort_key(order: str, row: dict[str, Any]) -> tuple[Any, ...]:
    if order == "deadline":
        d = row["deadline_ms"]
        return (d is None, d or 0, row["coi"])
    keys, descending = PAGE_ORDERS[order]
    vals = tuple(row[k] for k in keys)
    return tuple(-v if isinstance(v, int) else v for v in vals) if descending else vals


@pytest.mark.parametrize("order", sorted(PAGE_ORDERS))
def test_paging_by_key_gives_every_product_once_in_order(busy: ChainSite, order: str) -> None:
    everything = product_page(busy.svc, order=order, limit=1000)
    assert len(everything) == 9
    if order in ("deviations", "recent"):
        expected = sorted(everything, key=lambda r: tuple(r[k] for k in PAGE_ORDERS[order][0]),
                          reverse=True)
    else:
        expected = sorted(everything, key=lambda r: _sort_key(order, r))
    assert everything == expected
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        page = product_page(busy.svc, order=order, limit=2, after=after)
        pages += page
        if len(page) < 2:
            break
        after = page[-1]
    assert [r["coi"] for r in pages] == [r["coi"] for r in everything]


def test_a_deep_page_is_an_index_range(busy: ChainSite) -> None:
    busy.svc.ledger.engine.dispose()
    with sqlite3.connect(busy.db) as c:
        for order, (keys, desc) in PAGE_ORDERS.items():
            cond = f"({', '.join(keys)}) {'<' if desc else '>'} ({', '.join('?' * len(keys))})"
            sql = (f"SELECT coi FROM product_state WHERE {cond} ORDER BY "
                   + ", ".join(f"{k} {'DESC' if desc else ''}" for k in keys) + " LIMIT 50")
            plan = " | ".join(r[3] for r in c.execute("EXPLAIN QUERY PLAN " + sql,
                                                       [1] * len(keys)))
            assert "SEARCH product_state USING" in plan, (order, plan)
            assert "TEMP B-TREE" not in plan, (order, plan)


def test_status_lists_at_most_limit_rows_with_whole_counts(busy: ChainSite, tmp_path: Path
                                                           ) -> None:
    whole = busy.svc.status(limit=1000)
    assert whole["windows_total"] == len(whole["windows"]) >= 2
    short = busy.svc.status(limit=1)
    assert len(short["windows"]) == 1 and short["windows_total"] == whole["windows_total"]
    assert short["windows"][0] == whole["windows"][0]
