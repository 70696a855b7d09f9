"""Benchmark: exporting a whole ledger as an audit bundle, against a plain dump of the same rows.

    python bench/bench_export.py [SIZE]        # default 1,000,000 entries (built once, cached)

Figures: bundle export throughput (entries/s) against a bare ``SELECT`` of every row written out
as base64 lines (the floor any export pays), their ratio; the export's peak memory (it runs in a
child process so its peak RSS is its own; target < 200 MB); and the offline verification rate
of the bundle against the raw Ed25519 verify rate measured in the same run.
"""

from __future__ import annotations

import base64
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_ledger import cached_ledger  # noqa: E402
from common import header, line, peak_rss_children_mib, verdict  # noqa: E402


def plain_dump(db: Path, out: Path) -> float:
    t = time.perf_counter()
    con = sqlite3.connect(db)
    with open(out, "wb") as f:
        for idx, st, sig in con.execute(
                "SELECT idx, statement, signatures FROM ledger_entry ORDER BY idx"):
            f.write(b"%d %s %s\n" % (idx, base64.b64encode(st), base64.b64encode(sig)))
    con.close()
    return time.perf_counter() - t


def _export(db: str, log_key: str, out: str, conn: object) -> None:
    from coi.export.bundle import Scope, export_bundle
    from coi.service.ledger import LedgerService

    svc = LedgerService.open(db, log_key)
    t = time.perf_counter()
    s = export_bundle(svc.store, Path(out), scope=Scope("all"), checkpoint=svc.checkpoint(),
                      log_key=svc.log_key(), created_ms=svc.clock.now_ms())
    conn.send((time.perf_counter() - t, s.bytes))  # type: ignore[attr-defined]


def _verify(out: str, conn: object) -> None:
    from coi.export.verifier import verify_bundle

    t = time.perf_counter()
    verify_bundle(out)
    conn.send(time.perf_counter() - t)  # type: ignore[attr-defined]


def _child(target: object, *args: object) -> object:
    parent, child = multiprocessing.Pipe()
    p = multiprocessing.get_context("spawn").Process(target=target, args=(*args, child))
    p.start()
    got = parent.recv()
    p.join()
    return got


def main() -> int:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    built = cached_ledger(size)
    header(f"export of {built.size:,} entries ({built.db})")
    with tempfile.TemporaryDirectory() as d:
        dump = plain_dump(built.db, Path(d) / "dump.txt")
        out = str(Path(d) / "bundle.jsonl")
        secs, nbytes = _child(_export, str(built.db), str(built.log_key), out)  # type: ignore[misc]
        peak = peak_rss_children_mib()
        line("plain dump (SELECT + base64 + write)", built.size / dump, "entries/s")
        line("bundle export (--all)", built.size / secs, "entries/s",
             baseline=built.size / dump)
        line("bundle size", nbytes / 2**20, "MiB")
        line("export peak RSS (child process)", peak, "MiB")
        verdict(peak < 200, "export peak memory under 200 MB")
        if "--verify" in sys.argv:
            vsecs = _child(_verify, out)
            line("offline bundle verification", built.size / float(vsecs), "entries/s")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
