"""Crash safety: a writer killed with SIGKILL at random moments loses nothing it acknowledged.

The writer is a separate process that appends in a loop and prints each index to stdout
(flushed) only after ``append`` has returned, i.e. after the commit. The test kills it at a
random moment (a seeded ``random.Random``: the same moments every run), sometimes before its
first append, usually in the middle of one, then checks: every acknowledged index is stored,
the head and the rows agree (no partial entry), and ``verify`` passes, after every kill.

The writer appends site-signed ``system.*`` entries: the same signing, Merkle and storage path
as a person's entry, without an scrypt unlock (~0.4 s) per process start.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coi.service.ledger import LedgerService
from tests.conftest import Ledger

ITERATIONS = 50
SEED = 20261124
ROOT = Path(__file__).resolve().parents[1]

WRITER = """
import sys
from coi.service.ledger import LedgerService
svc = LedgerService.open(sys.argv[1], sys.argv[2])
print("ready", flush=True)
n = 0
while True:
    i = svc.record_system("system.crash_test", "CRASH", {"n": n, "pad": "x" * (n % 97)})
    print(i, flush=True)
    n += 1
"""


def _kill_at_random(db: str, log_key: str, rng: random.Random) -> list[int]:
    """Start a writer, SIGKILL it at a random moment; return the indices it acknowledged."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, db, log_key], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "ready":
                ready.set()
            else:
                lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if rng.random() < 0.1:
        time.sleep(rng.uniform(0.0, 0.3))  # maybe before the first append, maybe not
    else:
        assert ready.wait(60), proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.0, 0.25))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    reader.join(30)
    assert proc.returncode == -signal.SIGKILL
    return [int(x) for x in lines if x.strip()]


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_entry(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    led.svc.engine.dispose()
    rng = random.Random(SEED)
    acknowledged: list[int] = []
    kills_mid_run = 0
    started = time.monotonic()
    for it in range(ITERATIONS):
        got = _kill_at_random(led.db, str(led.log_key), rng)
        kills_mid_run += bool(got)
        acknowledged += got
        svc = LedgerService.open(led.db, str(led.log_key))
        try:
            head = svc.store.head()
            assert head is not None
            assert svc.store.count_rows() == head.size, f"iteration {it}: partial entry"
            stored = {r.index for r in svc.store.rows()}
            missing = sorted(set(acknowledged) - stored)
            assert not missing, f"iteration {it}: acknowledged entries {missing} were lost"
            assert svc.verify().size == head.size
        finally:
            svc.engine.dispose()
    assert kills_mid_run >= ITERATIONS // 2  # most kills land while appending
    assert len(acknowledged) == len(set(acknowledged))
    assert time.monotonic() - started < 300
