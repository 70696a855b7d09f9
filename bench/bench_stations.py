"""Many stations, one PostgreSQL: concurrent station sessions recording scans (issue 21, item 5).

``--stations`` sessions (default 32), each its own ``CoiService`` with its own connection pool,
as a station process holds one, walk products along ``coi.service.demo.PLAN`` on one real
PostgreSQL database for ``--seconds`` (default 60). The stations move in step, as a busy site's
do: every station records plan step *k* of its own product at the same moment of the site's
clock, then the clock moves to step *k+1*'s time; after the last step each starts a new
product. Every ``record`` is timed.

Reported: records per second, p50/p99/max latency of one ``record``, refusals (there should be
none: the plan is valid), errors (any exception but a refusal: none may happen, "database is
locked" or otherwise), and, after the run, ``CoiService.verify`` over the whole ledger (one
chain: no fork). Baseline, same run: one bare signed ``LedgerService.append`` of a note by a
single writer (p50), on the same database.

Run: ``python bench/bench_stations.py [--stations 32] [--seconds 60] [--url URL]`` (default
URL: a new database on 127.0.0.1:5432, dropped afterwards).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PG_SERVER, header, line, verdict  # noqa: E402

from coi.service.chain import CoiService  # noqa: E402
from coi.service.demo import PLAN, MovableClock, Site, Walk, create_site, enrol, step  # noqa: E402
from coi.service.errors import Refused  # noqa: E402
from coi.service.ledger import Party  # noqa: E402

T0 = 1_790_000_000_000
DAY = 86_400_000


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    products: int = 0


def run_stations(url: str, log_key: str, *, stations: int, seconds: float,
                 site: Site, clock: MovableClock) -> Load:
    """Drive ``stations`` sessions for about ``seconds``; see the module docstring."""
    load = Load()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    plan_times = [off for _n, off, *_rest in PLAN]
    # the first barrier wraps round to an enrolment (-1) one day after the site's clock
    state = {"k": len(PLAN) - 1, "t0": clock.now_ms() - plan_times[-1], "done": False}

    def advance() -> None:  # the barrier's action: one thread moves the site's clock
        state["k"] += 1
        if state["k"] == len(PLAN):
            state["k"], state["t0"] = -1, state["t0"] + plan_times[-1] + DAY
            if time.monotonic() >= stop_at:
                state["done"] = True
        clock.set(state["t0"] + (plan_times[state["k"]] if state["k"] >= 0 else 0))

    barrier = threading.Barrier(stations, action=advance)

    def station(n: int) -> None:
        svc = CoiService.open(url, log_key, clock=clock)
        mine = Site(svc=svc, people=site.people)
        seq = 0
        try:
            while True:
                barrier.wait(timeout=600)
                if state["done"]:
                    return
                k = state["k"]
                t = time.perf_counter()
                try:
                    if k < 0:
                        seq += 1
                        w = Walk(seq=n * 1_000 + seq, bags=1)  # (a DIN holds 6 digits)
                        enrol(mine, w)
                        walk = w
                        with lock:
                            load.products += 1
                    else:
                        step(mine, walk, k, clock.now_ms())
                    took = time.perf_counter() - t
                    with lock:
                        load.latencies.append(took)
                except Refused as e:
                    with lock:
                        load.refusals.append(e.reason)
        except threading.BrokenBarrierError:
            return
        except Exception:  # noqa: BLE001  (counted and shown: none may happen)
            with lock:
                load.errors.append(traceback.format_exc(limit=3))
            barrier.abort()
        finally:
            svc.ledger.engine.dispose()

    threads = [threading.Thread(target=station, args=(n,)) for n in range(stations)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return load


@contextmanager
def scratch_database(server: str) -> Iterator[str]:
    import psycopg

    name = f"coi_bench_{uuid.uuid4().hex[:10]}"
    admin = server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def baseline_append(site: Site, rounds: int = 50) -> float:
    who = site.people["alice"]
    times = []
    for n in range(rounds):
        t = time.perf_counter()
        site.svc.ledger.append("bench.note", "CHA999926000001", {"n": n},
                               [Party(who, "authored")])
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--url", default=PG_SERVER, help="a PostgreSQL server (a database is made)")
    a = ap.parse_args(argv)
    import tempfile

    with scratch_database(a.url) as url, tempfile.TemporaryDirectory() as tmp:
        key = str(Path(tmp) / "coi.logkey")
        clock = MovableClock(T0)
        site = create_site(url, key, clock=clock)
        header(f"{a.stations} stations on one PostgreSQL for {a.seconds:g} s")
        base = baseline_append(site)
        t = time.perf_counter()
        load = run_stations(url, key, stations=a.stations, seconds=a.seconds, site=site,
                            clock=clock)
        wall = time.perf_counter() - t
        lat = sorted(load.latencies)
        p = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99
        line("bare signed append, one writer, p50 (baseline)", base * 1e3, "ms")
        line(f"record p50 ({a.stations} stations)", p[49] * 1e3, "ms", baseline=base * 1e3)
        line("record p99", p[98] * 1e3, "ms", baseline=base * 1e3)
        line("record max", lat[-1] * 1e3 if lat else 0.0, "ms")
        line("records per second (all stations)", len(lat) / wall, "/s")
        print(f"  products started: {load.products}, records: {len(lat)}, refusals: "
              f"{len(load.refusals)}, errors: {len(load.errors)}")
        for e in load.errors[:3]:
            print("  error:", e.strip().splitlines()[-1])
        t = time.perf_counter()
        size = CoiService(site.svc.ledger).verify().size
        line("CoiService.verify after the run", time.perf_counter() - t, "s")
        print(f"  ledger: {size:,} entries, one chain, verified")
        site.svc.ledger.engine.dispose()
        verdict(not load.errors and not load.refusals,
                "no error and no refusal; the ledger verifies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
