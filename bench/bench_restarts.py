"""The server killed hard under writers: what is acknowledged survives, once (issue 21).

A PostgreSQL cluster of its own (``initdb`` in a temporary folder, its own port; the server
binaries must be installed) is killed with ``pg_ctl stop -m immediate`` ``--restarts`` times
(default 15) while ``--writers`` threads (default 8), each with its own ``LedgerService`` and
pool, append signed notes as fast as they can; after each kill the server is started again.

Reported: acknowledged entries; lost (acknowledged but not stored: must be 0); doubled (a note
stored twice: must be 0); ``LedgerService.verify`` over the result; the server's downtime per
restart (kill to started again) and the time to recover after it is back: until the first
writer, and until every writer, has an entry acknowledged (p50 and max over the restarts).
Baseline, same run: one bare signed ``append`` by a single writer on the same cluster (p50),
and the retry schedule the appends follow (0.25 s doubling to 2 s).

Run: ``python bench/bench_restarts.py [--writers 8] [--restarts 15]`` (as root the server's tools
run as the ``postgres`` user, as in the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("COI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

from common import header, line, verdict  # noqa: E402

from coi.service.ledger import LedgerService, Party  # noqa: E402
from tests.conftest import NAMES, PASSWORDS  # noqa: E402
from tests.pg_cluster import Cluster, new_cluster, new_site, stop_quietly  # noqa: E402

SUBJECT = "CHA99992600001A"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--restarts", type=int, default=15)
    args = ap.parse_args()
    cluster, root = new_cluster()
    try:
        run(cluster, root, args.writers, args.restarts)
    finally:
        stop_quietly(cluster)
        shutil.rmtree(root, ignore_errors=True)


def run(cluster: Cluster, root: Path, writers: int, restarts: int) -> None:
    key = root / "coi.logkey"
    svc, admin = new_site(cluster.url, key)
    clock = svc.clock
    svc.enrol(admin, user="alice", name=NAMES["alice"], roles=["apheresis"],
              password=PASSWORDS["alice"])
    alice = svc.unlock("alice", PASSWORDS["alice"])

    bare = []  # the baseline: one writer, nothing killed
    for i in range(200):
        t = time.perf_counter()
        svc.append("bench.note", SUBJECT, {"writer": -1, "n": i}, [Party(alice, "authored")])
        bare.append(time.perf_counter() - t)

    acked: list[list[tuple[float, bytes]]] = [[] for _ in range(writers)]
    failures: list[BaseException] = []
    retries: list[str] = []
    stop = threading.Event()
    ready = threading.Barrier(writers + 1)

    def writer(n: int) -> None:
        mine = LedgerService.open(cluster.url, str(key), clock=clock)
        mine.on_retry = retries.append
        ready.wait(timeout=300)
        i = 0
        try:
            while not stop.is_set():
                e = mine.append("bench.note", SUBJECT, {"writer": n, "n": i},
                                [Party(alice, "authored")])
                acked[n].append((time.monotonic(), e.entry_hash))
                i += 1
        except BaseException as exc:  # noqa: BLE001  (reported below)
            failures.append(exc)
        finally:
            mine.engine.dispose()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    ready.wait(timeout=300)
    started = time.monotonic()
    downs: list[float] = []
    ups: list[float] = []
    for _ in range(restarts):
        time.sleep(1.0)
        t_kill = time.monotonic()
        cluster.kill()
        time.sleep(0.5)
        cluster.start()
        ups.append(time.monotonic())
        downs.append(ups[-1] - t_kill)
    time.sleep(3.0)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - started

    first, every = [], []
    for up in ups:
        after = [min((ts for ts, _h in a if ts > up), default=None) for a in acked]
        if all(x is not None for x in after):
            times = [x - up for x in after if x is not None]
            first.append(min(times))
            every.append(max(times))

    svc = LedgerService.open(cluster.url, str(key), clock=clock)
    stored = {r.entry_hash: r for r in svc.store.rows()}
    hashes = [h.hex() for a in acked for _ts, h in a]
    lost = sum(1 for h in hashes if h not in stored)
    notes = [json.loads(r.statement)["data"] for r in stored.values() if r.type == "bench.note"]
    pairs = [(d["writer"], d["n"]) for d in notes]
    doubled = len(pairs) - len(set(pairs))
    t = time.perf_counter()
    verified = svc.verify().size
    verify_s = time.perf_counter() - t
    svc.engine.dispose()

    header(f"{writers} writers, {restarts} hard kills (pg_ctl stop -m immediate), "
           f"{elapsed:.0f} s")
    print(f"  acknowledged entries {len(hashes):,}; lost={lost} doubled={doubled}; "
          f"errors={len(failures)}; retry messages {len(retries)}", flush=True)
    print(f"  verify: OK, {verified:,} entries in {verify_s:.2f} s", flush=True)
    base = statistics.median(bare) * 1000
    line("bare signed append, one writer, p50 (baseline)", base, "ms")
    line("server down per restart (kill to started), p50", statistics.median(downs) * 1000,
         "ms")
    line("server down per restart, max", max(downs) * 1000, "ms")
    if first:
        line("back up to first writer acknowledged, p50", statistics.median(first) * 1000,
             "ms", baseline=base)
        line("back up to first writer acknowledged, max", max(first) * 1000, "ms",
             baseline=base)
        line("back up to every writer acknowledged, p50", statistics.median(every) * 1000,
             "ms", baseline=base)
        line("back up to every writer acknowledged, max", max(every) * 1000, "ms",
             baseline=base)
    verdict(lost == 0 and doubled == 0 and not failures,
            "every acknowledged entry stored exactly once, no writer failed")


if __name__ == "__main__":
    main()
