"""Verify a million-entry ledger with ``--jobs 2``: wall time and peak memory (bounded).

Runs ``LedgerService.verify(jobs=2)`` (two processes check rows: the verifying process and one
worker) over a real ledger (built once by ``build_ledger.py`` and cached) in a child process,
and prints the time, the rate against the raw Ed25519 verify rate measured just before and just
after it (the higher of the two), and the peak resident memory of the verifying process and of
its largest worker, each by its own account (``VmHWM`` of ``/proc/<pid>/status``: the verifying
process reads its own at the end, and a thread in it samples its workers' while they run). Not
``ru_maxrss``: on Linux a spawned child's starts at its parent's peak, so ``RUSAGE_CHILDREN``
would report the verifying process's (or this one's) peak as the workers'. Verification streams
rows in batches with at most ``verifying.WINDOW`` batches out at once, so memory must not grow
with the ledger: the same figures are printed for a ledger 10x smaller for comparison
(``--compare 0`` to skip).

Run: ``python bench/bench_verify_1m.py [SIZE] [--jobs 2] [--compare 100000]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_verify import samples_from  # noqa: E402
from build_ledger import Built, cached_ledger  # noqa: E402
from common import header, line, raw_verify_rate  # noqa: E402

CHILD = """
import json, sys, threading, time
sys.path.insert(0, sys.argv[4])
from common import child_pids, own_peak_mib
from coi.service.ledger import LedgerService
svc = LedgerService.open(sys.argv[1], sys.argv[2])
workers = {}
done = threading.Event()

def sample():  # a worker's VmHWM only grows: the last sample before it exits is its peak
    while True:
        for pid in child_pids():
            mib = own_peak_mib(pid)
            if mib is not None:
                workers[pid] = max(workers.get(pid, 0.0), mib)
        if done.wait(0.05):
            return

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
t = time.perf_counter()
res = svc.verify(jobs=int(sys.argv[3]))
secs = time.perf_counter() - t
done.set()
sampler.join()
print(json.dumps({"size": res.size, "seconds": secs, "parent_mib": own_peak_mib(),
                  "workers_mib": max(workers.values(), default=0.0), "workers": len(workers)}))
"""


def run(built: Built, jobs: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(built.db), str(built.log_key),
                          str(jobs), str(Path(__file__).resolve().parent)],
                         check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", type=int, nargs="?", default=1_000_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--compare", type=int, default=100_000,
                    help="also verify a ledger of this size, to show memory does not grow")
    a = ap.parse_args(argv)
    sizes = [a.size] + ([a.compare] if a.compare else [])
    builts = [cached_ledger(s) for s in sizes]
    samples = samples_from(builts[0].open())
    header(f"verify with jobs={a.jobs}")
    for built in builts:
        before = raw_verify_rate(samples, seconds=1.0)
        t = time.perf_counter()
        r = run(built, a.jobs)
        total = time.perf_counter() - t
        after = raw_verify_rate(samples, seconds=1.0)
        raw = max(before, after)
        n = int(r["size"])
        print(f"  {n:,} entries:")
        line("  raw Ed25519 verify, 1 process, before / after", before, "sig/s",
             baseline=after)
        line("  verify wall time (in the service call)", r["seconds"], "s")
        line("  whole process (imports, open, verify)", total, "s")
        line("  rate", n / r["seconds"], "entry/s", baseline=raw)
        line("  peak RSS (VmHWM), verifying process", r["parent_mib"], "MiB")
        line(f"  peak RSS (VmHWM), largest of {int(r['workers'])} workers", r["workers_mib"],
             "MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
