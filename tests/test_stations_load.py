"""Many station sessions on one PostgreSQL (issue 21, item 5): the short version of
``bench/bench_stations.py`` (which runs 32 stations for 60 s). Four sessions, each with its own
connection pool, walk products in step; no error and no refusal, and the ledger verifies after."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from coi.service.chain import CoiService
from coi.service.demo import MovableClock, create_site

pytestmark = pytest.mark.postgres
BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench() -> object:
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_stations", BENCH / "bench_stations.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_stations"] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def test_four_stations_record_together_without_error_and_the_ledger_verifies(
        pg_url: str, tmp_path: Path) -> None:
    bench = _bench()
    key = str(tmp_path / "coi.logkey")
    clock = MovableClock(bench.T0)  # type: ignore[attr-defined]
    site = create_site(pg_url, key, clock=clock)
    load = bench.run_stations(pg_url, key, stations=4, seconds=1.0,  # type: ignore[attr-defined]
                              site=site, clock=clock)
    assert load.errors == [] and load.refusals == []
    assert load.products >= 4 and len(load.latencies) >= 4 * 20
    size = CoiService(site.svc.ledger).verify().size
    assert size == site.svc.ledger.store.count_rows()
    site.svc.ledger.engine.dispose()
