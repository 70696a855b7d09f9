"""Whole-ledger verification rate against the machine's raw Ed25519 verify rate, same run.

``LedgerService.verify`` re-checks everything about every entry (canonical JSON re-encode,
columns, signatures, entry hash, chain, time, keys, tree nodes, head); its rate, in signatures
verified per second, is compared with a bare ``Ed25519PublicKey.verify`` loop over the very
messages and signatures stored in the ledger (the DSSE encodings of its statements: same size),
measured in the same run. Targets: >= 0.65x with one worker, >= 1.5x with ``jobs=2`` (both
against the one-core raw rate; the two-process raw rate is printed too).

Run: ``python bench/bench_verify.py [--size 20000] [--witness] [--rounds 3]``. The ledger is
built once by ``build_ledger.py`` and cached.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_ledger import cached_ledger  # noqa: E402
from common import (  # noqa: E402
    Sample,
    cpu_seconds,
    header,
    line,
    raw_verify_cpu_rate,
    raw_verify_rate,
    raw_verify_rate_procs,
    verdict,
)

from coi.ledger import jcs  # noqa: E402
from coi.ledger.entry import Statement, pae, unb64  # noqa: E402
from coi.service.ledger import LedgerService  # noqa: E402

TARGET_1, TARGET_2 = 0.65, 1.5


def samples_from(svc: LedgerService, n: int = 2000) -> list[Sample]:
    """(public key, signature, signed message) for the signatures of the last ``n`` rows."""
    head = svc.store.head()
    assert head is not None
    out: list[Sample] = []
    for row in svc.store.rows(max(0, head.size - n), head.size):
        st = Statement.from_json(jcs.decode(row.statement))
        msg = pae(row.statement)
        for ref, s in zip(st.signers, jcs.decode(row.signatures), strict=True):
            out.append((ref.key, unb64(s["sig"], "sig"), msg))
    return out


def timed_verify(svc: LedgerService, jobs: int, rounds: int) -> tuple[float, float, int]:
    """Best wall time and best CPU time (this process and its workers) of ``rounds`` full
    verifications; and the verified size."""
    best, best_cpu, size = float("inf"), float("inf"), 0
    for _ in range(rounds):
        t, c = time.perf_counter(), cpu_seconds()
        size = svc.verify(jobs=jobs).size
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, cpu_seconds() - c)
    return best, best_cpu, size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20_000)
    ap.add_argument("--witness", action="store_true", help="entries with two signatures")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    built = cached_ledger(a.size, witness=a.witness)
    svc = built.open()
    samples = samples_from(svc)
    msg_len = sum(len(m) for _k, _s, m in samples) / len(samples)
    header(f"verify: {built.size:,} entries, {built.signatures_per_entry} signature(s) each, "
           f"signed messages ~{msg_len:.0f} bytes")
    raw1 = raw_verify_rate(samples)
    raw2 = raw_verify_rate_procs(samples, 2)
    raw_cpu = raw_verify_cpu_rate(samples)
    line("raw Ed25519 verify, 1 process (baseline)", raw1, "sig/s")
    line("raw Ed25519 verify, 2 processes", raw2, "sig/s", baseline=raw1)
    line("raw Ed25519 verify, per CPU-second (CPU baseline)", raw_cpu, "sig/cpu-s")
    ok = True
    for jobs, target in ((1, TARGET_1), (2, TARGET_2)):
        secs, cpu, size = timed_verify(svc, jobs, a.rounds)
        entries = size / secs
        sigs = entries * built.signatures_per_entry
        line(f"coi verify, jobs={jobs}: per CPU-second (all processes)",
             size * built.signatures_per_entry / cpu, "sig/cpu-s", baseline=raw_cpu)
        line(f"coi verify, jobs={jobs}: entries", entries, "entry/s")
        line(f"coi verify, jobs={jobs}: signatures (vs 1-process raw)", sigs, "sig/s",
             baseline=raw1, target=f">= {target}x")
        if jobs > 1:
            line(f"coi verify, jobs={jobs}: signatures (vs {jobs}-process raw)", sigs, "sig/s",
                 baseline=raw2)
        verdict(sigs / raw1 >= target, f"jobs={jobs} at {sigs / raw1:.2f}x of raw verify")
        ok &= sigs / raw1 >= target
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
