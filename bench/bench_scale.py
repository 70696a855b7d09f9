"""Scale: does a request cost the same on a ledger of N entries and of 10N? (issue 21, item 4)

Two process ledgers are built (real products walked along ``coi.service.demo.PLAN`` to random
depths, so states, windows and deviations are spread as at a working site; the builder is
``bench_chain.build``, cached). On each, in a **fresh process** (nothing cached: what the first
scan after a restart or one command pays), this times:

- ``record``: one process step through ``CoiService.record`` (open the service, unlock the user
  — not timed, scrypt is slow on purpose — then the step: its product built from its own
  entries, the rules, the signed append);
- ``show``: ``CoiService.show`` of one product (its timeline, each signature checked);
- ``status``: ``CoiService.status()`` (counts, the first 50 windows and deviations);
- ``review``: one review page (50 rows, ordered by deadline) starting 1,000 rows deep.

Each figure comes with its baseline measured in the same fresh process: a bare indexed
``SELECT`` of one ledger row by index on a new connection. The command lines ``coi show`` and
``coi status`` are also timed end to end against two start-up baselines: the interpreter with
the CLI (``python -c "import coi.cli.main"``), and the same with every module the command imports
before it opens the database (``COMMAND_IMPORTS``), which leaves what the request itself costs.
The last line is::

    ratios 10N/N: record=R show=R status=R review=R

(target: every ratio ≤ 1.5).

Run: ``python bench/bench_scale.py [--quick] [--n N]`` (``--quick``: N = 20,000; default
N = 100,000, whose 10N ledger takes a long while to build the first time).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_chain import ENTRIES_PER_PRODUCT, T0, Built, cached  # noqa: E402
from common import header, line, verdict  # noqa: E402

from coi.service.demo import PLAN  # noqa: E402

ROUNDS = 5
DEPTH_ROWS = 1_000

PROBE = r"""
import json, sqlite3, sys, time
from coi.ledger.clock import FixedClock
from coi.service.chain import CoiService
from coi.service.demo import PLAN, Walk
from coi.service.views import product_page

db, key, what, coi, now, arg = sys.argv[1:7]
now = int(now)

def bare():
    t = time.perf_counter()
    c = sqlite3.connect(db)
    c.execute("SELECT * FROM ledger_entry WHERE idx = ?", (7,)).fetchall()
    c.close()
    return time.perf_counter() - t

base = bare()
svc = CoiService.open(db, key, clock=FixedClock(now))
if what == "record":
    n = int(arg)
    name, _off, author, witness, item, fields = PLAN[n]
    actor = svc.ledger.unlock(author, author + "-bench-2026")
    wit = svc.ledger.unlock(witness, witness + "-bench-2026") if witness else None
    extra = json.loads(sys.argv[7])
    w = Walk(coi=coi, seq=extra["seq"], bags=1)
    w.din = extra["din"]
    t = time.perf_counter()
    svc.record(name, coi, actor=actor, witness=wit, item=item, fields=dict(fields(w, now)))
    took = time.perf_counter() - t
elif what == "show":
    t = time.perf_counter()
    svc.show(coi)
    took = time.perf_counter() - t
elif what == "status":
    t = time.perf_counter()
    svc.status()
    took = time.perf_counter() - t
else:  # review: a page 1,000 rows deep (the cursor row found untimed)
    after = json.loads(arg)
    t = time.perf_counter()
    rows = product_page(svc, order="deadline", limit=50, after=after)
    took = time.perf_counter() - t
    assert len(rows) == 50, len(rows)
print(json.dumps({"took": took, "base": base}))
"""


def _run(built: Built, what: str, coi: str, now: int, arg: str = "", extra: str = "") -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(built.db), str(built.log_key), what,
                          coi, str(now), arg, extra], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _copy(built: Built, dest: Path) -> Built:
    """A private copy (record appends: each round starts from the same ledger)."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(built.db) + suffix)
        if src.exists():
            shutil.copy(src, str(dest / "coi.db") + suffix)
    shutil.copy(built.log_key, dest / "coi.db.logkey")
    return Built(dest / "coi.db", dest / "coi.db.logkey", built.entries, built.products)


def _site(n_entries: int) -> tuple[Built, list[int]]:
    rng = random.Random(2026)
    mean = 1 + len(PLAN) / 2
    n_products = max(60, int(n_entries / mean))
    depth = [rng.randrange(0, len(PLAN) + 1) for _ in range(n_products)]
    return cached(f"scale{n_entries}", n_products, depth), depth


def _measure(built: Built, depth: list[int], work: Path) -> dict[str, tuple[float, float]]:
    import sqlite3

    from coi.domain import isbt
    from coi.service.demo import DEMO_FIN

    with sqlite3.connect(built.db) as c:
        last_ms = c.execute("SELECT last_time_ms FROM ledger_head").fetchone()[0]
        ordered = c.execute(
            "SELECT coi, state, last_index, deadline_ms, deadline_window, open_deviations "
            "FROM product_state ORDER BY deadline_ms IS NULL, deadline_ms, coi").fetchall()
    cols = ("coi", "state", "last_index", "deadline_ms", "deadline_window", "open_deviations")
    cursor = dict(zip(cols, ordered[min(DEPTH_ROWS, len(ordered) - 51) - 1], strict=True))
    # a product whose next step is a simple one after the collection (no item, no witness)
    k = next(k for k in range(len(depth) - 1, -1, -1)
             if 2 <= depth[k] < len(PLAN) and PLAN[depth[k]][3] is None
             and PLAN[depth[k]][4] is None)
    coi = isbt.assign_coi_id(DEMO_FIN, 2026, k + 1).text
    cid = isbt.coi_id_from_text(coi)
    din = isbt.Din(DEMO_FIN, cid.year, f"{(k + 1) % 1_000_000:06d}").text
    t_step = T0 + 3_600_000 + k * 7 * 60_000 + PLAN[depth[k]][1]
    now = max(last_ms, t_step) + 1
    out: dict[str, list[tuple[float, float]]] = {w: [] for w in ("record", "show", "status",
                                                                  "review")}
    for r in range(ROUNDS):
        mine = _copy(built, work / f"r{r}")
        got = _run(mine, "record", coi, now, str(depth[k]), json.dumps({"din": din, "seq": k + 1}))
        out["record"].append((got["took"], got["base"]))
        for what, arg in (("show", ""), ("status", ""), ("review", json.dumps(cursor))):
            got = _run(built, what, coi, now, arg)
            out[what].append((got["took"], got["base"]))
    return {w: (statistics.median(t for t, _ in v), statistics.median(b for _, b in v))
            for w, v in out.items()}


COMMAND_IMPORTS = ("import coi.cli.main, coi.cli.chain_cmd, coi.cli.readable, coi.service.chain, "
                   "coi.service.labels, typer._adapters")
"""What ``coi show`` and ``coi status`` import before they open the database: the same for any
ledger size, so the second baseline leaves only what the request itself costs. Typer (0.2x)
imports ``typer._adapters``, and with it pydantic (~80 ms here), when it parses the command's
arguments."""


def _cli(built: Built, coi: str) -> dict[str, float]:
    def wall(args: list[str]) -> float:
        best = []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            subprocess.run(args, capture_output=True, timeout=600, check=False)
            best.append(time.perf_counter() - t)
        return statistics.median(best)

    coi_cmd = [sys.executable, "-m", "coi"]
    return {"start": wall([sys.executable, "-c", "import coi.cli.main"]),
            "imports": wall([sys.executable, "-c", COMMAND_IMPORTS]),
            "show": wall([*coi_cmd, "show", coi, "--db", str(built.db)]),
            "status": wall([*coi_cmd, "status", "--db", str(built.db)])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 20,000 entries")
    ap.add_argument("--n", type=int, default=100_000, help="entries of the smaller ledger")
    a = ap.parse_args(argv)
    n = 20_000 if a.quick else a.n
    import tempfile

    from coi.domain import isbt
    from coi.service.demo import DEMO_FIN

    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in (n, 10 * n):
            built, depth = _site(size)
            header(f"{built.entries:,} entries, {built.products:,} products "
                   f"(~{ENTRIES_PER_PRODUCT} entries for a product walked to the end)")
            m = _measure(built, depth, Path(tmp) / str(size))
            for what, (took, base) in m.items():
                line(f"{what} (fresh process)", took * 1e3, "ms", baseline=base * 1e3)
            line("bare indexed SELECT, new connection (baseline)",
                 statistics.median(b for _, b in m.values()) * 1e3, "ms")
            some = isbt.assign_coi_id(DEMO_FIN, 2026, built.products // 2).text
            cli = _cli(built, some)
            line("python -c 'import coi.cli.main' (start-up baseline)", cli["start"] * 1e3,
                 "ms")
            line("the same with the command's imports (second baseline)",
                 cli["imports"] * 1e3, "ms")
            for what in ("show", "status"):
                line(f"coi {what} (command line)", cli[what] * 1e3, "ms",
                     baseline=cli["start"] * 1e3)
                line("  above start-up", (cli[what] - cli["start"]) * 1e3, "ms",
                     target="<= 100 ms at 10^6 entries" if what == "show" else "")
                line("  above start-up with the command's imports",
                     (cli[what] - cli["imports"]) * 1e3, "ms")
            figures[size] = m
    small, big = figures[n], figures[10 * n]
    ratios = {w: big[w][0] / small[w][0] for w in ("record", "show", "status", "review")}
    verdict(all(r <= 1.5 for r in ratios.values()), "every ratio 10N/N <= 1.5")
    print("ratios 10N/N: " + " ".join(f"{w}={r:.2f}" for w, r in ratios.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
