"""Benchmark: exporting a whole ledger as an audit bundle, and verifying the bundle offline.

    python bench/bench_export.py [SIZE] [--no-verify]   # default 1,000,000 entries (built once)

Figures, each with a baseline measured in the same run:

* bundle export throughput (entries/s) against a bare ``SELECT`` of every row written out as
  base64 lines (the floor any export pays), and their ratio;
* the export's peak memory, target < 200 MB and flat in the size. The export runs in a child
  process that reports its own high-water mark (``VmHWM`` of ``/proc/self/status``), sampled
  at a quarter, half and the end of the rows so growth would show. Not ``ru_maxrss``: a child
  started with ``spawn`` is exec'd from a vfork of this process, and Linux carries the parent's
  high-water mark over the exec into the child's ``ru_maxrss`` (both ``RUSAGE_SELF`` in the
  child and ``RUSAGE_CHILDREN`` here): that figure is this process's peak, e.g. that of
  building the ledger in the same run, not the export's;
* offline verification of the bundle (``verify_bundle``, one process, what ``coi verify-export``
  runs) in entries/s against the raw Ed25519 verify rate over the bundle's own signed
  messages (one signature per entry), target >= 0.6x, and its peak memory.

The exit status is 1 if a target is missed.
"""

from __future__ import annotations

import base64
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_ledger import cached_ledger  # noqa: E402
from common import header, line, own_peak_mib, raw_verify_rate, verdict  # noqa: E402


def plain_dump(db: Path, out: Path) -> float:
    t = time.perf_counter()
    con = sqlite3.connect(db)
    with open(out, "wb") as f:
        for idx, st, sig in con.execute(
                "SELECT idx, statement, signatures FROM ledger_entry ORDER BY idx"):
            f.write(b"%d %s %s\n" % (idx, base64.b64encode(st), base64.b64encode(sig)))
    con.close()
    return time.perf_counter() - t


def _export(db: str, log_key: str, out: str, conn: Any) -> None:
    from coi.export.bundle import Scope, export_bundle
    from coi.service.ledger import LedgerService

    svc = LedgerService.open(db, log_key)
    samples: list[tuple[int, float]] = []
    marks = [0.25, 0.5, 0.75]

    def progress(done: int, total: int) -> None:
        if marks and done >= marks[0] * total:
            samples.append((done, own_peak_mib()))
            marks.pop(0)

    start_peak = own_peak_mib()
    t = time.perf_counter()
    s = export_bundle(svc.store, Path(out), scope=Scope("all"), checkpoint=svc.checkpoint(),
                      log_key=svc.log_key(), created_ms=svc.clock.now_ms(), progress=progress)
    secs = time.perf_counter() - t
    samples.append((s.entries, own_peak_mib()))
    conn.send((secs, s.bytes, start_peak, samples))


def _verify(out: str, conn: Any) -> None:
    from coi.export.verifier import verify_bundle

    t = time.perf_counter()
    r = verify_bundle(out)
    conn.send((time.perf_counter() - t, r.entries, own_peak_mib()))


def _child(target: Any, *args: object) -> Any:
    parent, child = multiprocessing.Pipe()
    p = multiprocessing.get_context("spawn").Process(target=target, args=(*args, child))
    p.start()
    while not parent.poll(1.0):
        if not p.is_alive():
            raise SystemExit(f"the {target.__name__} child failed (exit code {p.exitcode})")
    got = parent.recv()
    p.join()
    return got


def _samples(bundle: Path, n: int = 200) -> list[tuple[bytes, bytes, bytes]]:
    """(public key, signature, signed message) of the bundle's first ``n`` signatures."""
    import json

    from coi.ledger.entry import pae

    out = []
    with open(bundle, "rb") as f:
        for raw in f:
            rec = json.loads(raw)
            if rec["kind"] != "entry":
                continue
            body = base64.b64decode(rec["statement"])
            st = json.loads(body)
            sigs = json.loads(base64.b64decode(rec["signatures"]))
            for ref, s in zip(st["signers"], sigs, strict=True):
                out.append((base64.b64decode(ref["key"]), base64.b64decode(s["sig"]),
                            pae(body)))
            if len(out) >= n:
                break
    return out


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    size = int(args[0]) if args else 1_000_000
    built = cached_ledger(size)
    header(f"export of {built.size:,} entries ({built.db})")
    with tempfile.TemporaryDirectory() as d:
        dump = plain_dump(built.db, Path(d) / "dump.txt")
        out = str(Path(d) / "bundle.jsonl")
        secs, nbytes, start_peak, samples = _child(_export, str(built.db), str(built.log_key),
                                                   out)
        line("plain dump (SELECT + base64 + write)", built.size / dump, "entries/s")
        line("bundle export (--all)", built.size / secs, "entries/s",
             baseline=built.size / dump)
        line("bundle size", nbytes / 2**20, "MiB")
        line("export child peak RSS before the export", start_peak, "MiB")
        for done, peak in samples:
            line(f"export child peak RSS after {done:,} entries", peak, "MiB")
        peak = samples[-1][1]
        growth = peak - samples[0][1]
        line("growth from the first sample to the end", growth, "MiB")
        verdict(peak < 200, "export peak memory under 200 MB")
        verdict(growth < 8, "export memory flat in the number of entries (< 8 MiB growth)")
        ok = peak < 200 and growth < 8
        if "--no-verify" not in sys.argv:
            raw_before = raw_verify_rate(_samples(Path(out)))
            vsecs, ventries, vpeak = _child(_verify, out)
            raw_after = raw_verify_rate(_samples(Path(out)))
            raw = (raw_before + raw_after) / 2
            line("raw Ed25519 verify (bundle's messages, 1 process)", raw, "verifies/s")
            line("  (before / after the verification)", raw_before, f"/ {raw_after:,.0f}")
            line("offline bundle verification (verify-export)", ventries / vsecs, "entries/s",
                 baseline=raw)
            line("verification child peak RSS", vpeak, "MiB")
            ratio = ventries / vsecs / raw
            verdict(ratio >= 0.6, f"verify-export at {ratio:.2f}x of raw verify (target >= 0.6x)")
            ok &= ratio >= 0.6
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
