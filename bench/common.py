"""Helpers shared by the ledger benchmarks (plain scripts, not tests).

Every benchmark prints a figure next to a baseline measured in the same run on this machine, and
their ratio: absolute rates drift on shared machines, ratios much less (docs: design/ledger.md).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PG_SERVER = os.environ.get("COI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def cache_dir() -> Path:
    """Where built ledgers are kept between runs (``COI_BENCH_CACHE`` or a temp folder)."""
    d = Path(os.environ.get("COI_BENCH_CACHE") or Path(tempfile.gettempdir()) / "coi-bench")
    d.mkdir(parents=True, exist_ok=True)
    return d


def header(title: str) -> None:
    print(f"\n== {title}", flush=True)


def line(what: str, value: float, unit: str, *, baseline: float | None = None,
         target: str = "") -> None:
    """One figure; with ``baseline`` also the ratio (value / baseline)."""
    s = f"  {what:<52} {value:>12,.1f} {unit}"
    if baseline is not None:
        s += f"   ratio {value / baseline:5.2f}x"
    if target:
        s += f"   (target {target})"
    print(s, flush=True)


def verdict(ok: bool, what: str) -> None:
    print(f"  -> {'MET' if ok else 'MISSED'}: {what}", flush=True)


# -- Ed25519 baseline -----------------------------------------------------------------------------

Sample = tuple[bytes, bytes, bytes]  # (raw public key, signature, message)


def _loaded(samples: Sequence[Sample]) -> list[tuple[Ed25519PublicKey, bytes, bytes]]:
    """``samples`` with each public key loaded once (the least any verifier does per
    signature)."""
    keys = {pk: Ed25519PublicKey.from_public_bytes(pk) for pk, _s, _m in samples}
    return [(keys[pk], sig, msg) for pk, sig, msg in samples]


def raw_verify_rate(samples: Sequence[Sample], seconds: float = 2.0) -> float:
    """Raw Ed25519 verifications per second over ``samples`` (keys loaded once, as a baseline
    should: the least any verifier does per signature), best of 3 rounds."""
    items = _loaded(samples)
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for k, sig, msg in items:
                k.verify(sig, msg)
            n += len(items)
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def raw_verify_run_rate(samples: Sequence[Sample], n: int) -> float:
    """Raw Ed25519 verifications per second over one uninterrupted run of ``n`` of them (cycling
    over ``samples``, keys loaded once): measured as a verification is, one run of the same
    length, so that a machine whose speed swings from moment to moment weighs on both alike
    (``raw_verify_rate`` keeps the best of short windows: a peak, which one long run never
    reaches)."""
    items = _loaded(samples)
    whole, part = divmod(n, len(items))
    start = time.perf_counter()
    for _ in range(whole):
        for k, sig, msg in items:
            k.verify(sig, msg)
    for k, sig, msg in items[:part]:
        k.verify(sig, msg)
    return n / (time.perf_counter() - start)


def raw_verify_cpu_rate(samples: Sequence[Sample], rounds: int = 3) -> float:
    """Like ``raw_verify_rate`` but per second of this process's CPU time: insensitive to other
    load on a shared machine (which steals wall time, not CPU time)."""
    items = _loaded(samples)
    best = 0.0
    for _ in range(rounds):
        start = time.process_time()
        for k, sig, msg in items:
            k.verify(sig, msg)
        best = max(best, len(items) / (time.process_time() - start))
    return best


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _verify_worker(args: tuple[list[Sample], float]) -> tuple[int, float]:
    samples, seconds = args
    items = _loaded(samples)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for k, sig, msg in items:
            k.verify(sig, msg)
        n += len(items)
    return n, time.perf_counter() - start


def raw_verify_rate_procs(samples: Sequence[Sample], procs: int, seconds: float = 2.0) -> float:
    """Aggregate raw verify rate of ``procs`` processes verifying at once."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        pool.map(_verify_worker, [(list(samples[:50]), 0.05)] * procs)  # warm up the workers
        got = pool.map(_verify_worker, [(list(samples), seconds)] * procs)
    return sum(n / t for n, t in got)


# -- timing ---------------------------------------------------------------------------------------

def per_second(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max of samples given in seconds, returned in milliseconds."""
    xs = sorted(samples_s)
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return {"p50": q[49] * 1e3, "p99": q[98] * 1e3, "max": xs[-1] * 1e3}


# -- memory ---------------------------------------------------------------------------------------

def _maxrss_mib(who: int) -> float:
    kib = resource.getrusage(who).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 1024 / 1024


def peak_rss_self_mib() -> float:
    return _maxrss_mib(resource.RUSAGE_SELF)


def peak_rss_children_mib() -> float:
    """Largest peak RSS of any waited-for child process (ru_maxrss of RUSAGE_CHILDREN)."""
    return _maxrss_mib(resource.RUSAGE_CHILDREN)


def own_peak_mib(pid: int | str = "self") -> float | None:
    """Peak RSS of a process by its own account: ``VmHWM`` in ``/proc/<pid>/status`` (this
    process by default; where there is no ``/proc``, this process's ``ru_maxrss``). None if that
    process is gone. Not ``ru_maxrss`` of a child: on Linux a spawned child's starts at its
    parent's peak (see README.md)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for text in f:
                if text.startswith("VmHWM:"):
                    return int(text.split()[1]) / 1024
    except OSError:
        if pid != "self" or os.path.isdir("/proc"):
            return None
    return peak_rss_self_mib() if pid == "self" else None


def child_pids(pid: int | str = "self") -> list[int]:
    """The live child processes of a process (Linux ``/proc``; empty elsewhere)."""
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        return out
    return out


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- PostgreSQL -----------------------------------------------------------------------------------

def postgres_reachable(url: str = PG_SERVER) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:  # any failure means "not here": the PostgreSQL benchmark is skipped
        return False
