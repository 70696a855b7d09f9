"""TUI benchmark: the review screen's first page, and a scan-to-confirmation round trip.

At 100,000 products and 1,000,000 ledger entries (by default):

* **review first page** — from opening the QA review screen to its table holding the first page,
  driven headless through Textual's Pilot; target < 1 s. Baseline: the same page read straight
  from SQLite with ``sqlite3`` (no coi, no Textual) in the same run.
* **scan round trip** — a label pasted into the scan station (as a scanner sends it, Enter
  included) to the confirmation with the entry's index, through the real screen, minus the
  password's key derivation (scrypt, slow on purpose; measured and shown apart); target
  < 100 ms. Baseline: one bare signed ``LedgerService.append`` of a note in the same run.

The site is the demo (real process entries, real staff); ``bench/build_ledger.py``'s
``bulk_append`` adds signed entries up to the size asked; the extra products are bulk-inserted
rows of the product_state table (the review page reads only that table), so this ledger is
for timing, not for verifying.

    python bench/bench_tui.py [--entries 1000000] [--products 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from build_ledger import bulk_append  # noqa: E402
from textual import events  # noqa: E402
from textual.widgets import Input  # noqa: E402

from coi.domain.payload import encode  # noqa: E402
from coi.service.chain import CoiService  # noqa: E402
from coi.service.demo import MovableClock, build_demo, demo_password  # noqa: E402
from coi.service.ledger import Party  # noqa: E402
from coi.tui.app import CoiApp  # noqa: E402
from coi.tui.screens.home import HomeScreen  # noqa: E402
from coi.tui.screens.review import ReviewScreen  # noqa: E402
from coi.tui.screens.station import StationScreen  # noqa: E402
from coi.tui.widgets.scan_input import ScanInput  # noqa: E402

NOW_MS = 1_780_000_000_000
STATES = ("enrolled", "collected", "in_transit_to_manufacturing", "received", "transduced",
          "expanded", "qc_testing", "released", "stored", "infused")


def build(workdir: Path, entries: int, products: int) -> tuple[Path, int]:
    db = workdir / "bench.db"
    t0 = time.perf_counter()
    site = build_demo(str(db), None, products=20, now_ms=NOW_MS)
    ledger = site.svc.ledger
    head = ledger.store.head()
    assert head is not None
    if entries > head.size:
        bulk_append(ledger, [(site.people["ari"], "authored")], entries - head.size,
                    progress=False)
    ledger.engine.dispose()
    rng = random.Random(1)
    con = sqlite3.connect(db)
    rows = []
    for n in range(products):
        deadline = NOW_MS + rng.randrange(-2 * 86_400_000, 14 * 86_400_000) if n % 3 else None
        rows.append((f"CHA9998{n:08d}", rng.choice(STATES), "{}", n, deadline,
                     "fresh_product" if deadline else None, int(n % 17 == 0)))
    con.executemany("INSERT INTO product_state (coi, state, data, last_index, deadline_ms, "
                    "deadline_window, open_deviations) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    size = con.execute("SELECT size FROM ledger_head").fetchone()[0]
    n_products = con.execute("SELECT count(*) FROM product_state").fetchone()[0]
    con.close()
    print(f"built: {size:,} entries, {n_products:,} products in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return db, size


def baseline_page(db: Path) -> float:
    con = sqlite3.connect(db)
    t0 = time.perf_counter()
    rows = con.execute("SELECT coi, state, last_index, deadline_ms, deadline_window, "
                       "open_deviations FROM product_state ORDER BY coi LIMIT 100").fetchall()
    ms = (time.perf_counter() - t0) * 1000
    assert len(rows) == 100
    con.close()
    return ms


def service(db: Path, last_time_ms: int) -> CoiService:
    return CoiService.open(str(db), clock=MovableClock(last_time_ms + 60_000))


async def review_first_page(db: Path, last_time_ms: int) -> float:
    app = CoiApp(service(db, last_time_ms))
    app.session.login("grace", demo_password("grace"))  # key derivation outside the timing
    async with app.run_test(size=(120, 36)) as pilot:
        while not isinstance(app.screen, HomeScreen):
            await pilot.pause(0.01)
        t0 = time.perf_counter()
        screen = ReviewScreen()
        await app.push_screen(screen)
        while not screen.rows:
            await asyncio.sleep(0.0005)
        return (time.perf_counter() - t0) * 1000


async def scan_round_trips(db: Path, last_time_ms: int, runs: int) -> list[dict[str, float]]:
    svc = service(db, last_time_ms)
    svc.chain()  # the station's state cache, caught up once when a station opens
    ready = [r["coi"] for r in svc.products(state="transduced", search="CHA9999")]
    app = CoiApp(svc, station="expansion")
    app.session.login("mo", demo_password("mo"))
    out = []
    async with app.run_test(size=(100, 30)) as pilot:
        while not isinstance(app.screen, StationScreen):
            await pilot.pause(0.01)
        screen = app.screen
        for coi in ready[:runs]:
            t0 = time.perf_counter()
            screen.query_one(ScanInput).post_message(events.Paste(encode(coi, "C00001") + "\r"))
            while screen.phase != "fields":
                if not isinstance(app.screen, StationScreen):
                    raise SystemExit(f"the station refused {coi}: see the alert")
                await asyncio.sleep(0.0005)  # not pilot.pause: it also waits for animations
            t1 = time.perf_counter()
            screen.query_one("#field-culture_days", Input).value = "7"
            screen.query_one("#field-viable_cells", Input).value = "3400000000"
            screen.query_one("#password", Input).value = demo_password("mo")
            before = screen.last_index
            t2 = time.perf_counter()
            screen.action_sign()
            while screen.last_index == before:
                await asyncio.sleep(0.0005)
            t3 = time.perf_counter()
            kdf = screen.timings.signing
            await pilot.pause()
            out.append({"scan_to_ready": (t1 - t0) * 1000,
                        "sign_to_confirmation": (t3 - t2) * 1000 - kdf,
                        "kdf": kdf, "record": screen.timings.record})
    return out


def baseline_append(db: Path, last_time_ms: int) -> float:
    svc = service(db, last_time_ms)
    who = svc.ledger.unlock("ari", demo_password("ari"))
    times = []
    for n in range(5):
        t0 = time.perf_counter()
        svc.ledger.append("bench.note", "CHA999926000001", {"n": n}, [Party(who, "authored")])
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=4)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db, _size = build(Path(tmp), args.entries, args.products)
        con = sqlite3.connect(db)
        last_time_ms = con.execute("SELECT last_time_ms FROM ledger_head").fetchone()[0]
        con.close()
        base_page = baseline_page(db)
        page = asyncio.run(review_first_page(db, last_time_ms))
        print(f"review first page: {page:7.1f} ms   (target < 1000 ms; baseline raw SQLite page "
              f"{base_page:.2f} ms; ratio {page / max(base_page, 1e-3):,.0f}x)")
        trips = asyncio.run(scan_round_trips(db, last_time_ms, args.runs))
        base = baseline_append(db, last_time_ms)
        rt = [t["scan_to_ready"] + t["sign_to_confirmation"] for t in trips]
        med = statistics.median(rt)
        shown = statistics.median(t["scan_to_ready"] for t in trips)
        signed = statistics.median(t["sign_to_confirmation"] for t in trips)
        record = statistics.median(t["record"] for t in trips)
        print(f"scan round trip:   {med:7.1f} ms median of {len(rt)} (target < 100 ms; "
              f"scan→product shown {shown:.1f} ms, sign→confirmation {signed:.1f} ms, of which "
              f"the service's record {record:.1f} ms)")
        print(f"                   key derivation excluded: "
              f"{statistics.median(t['kdf'] for t in trips):.0f} ms per signing (scrypt)")
        print(f"                   baseline bare signed append {base:.1f} ms; ratio "
              f"{med / max(base, 1e-3):.1f}x")
        ok = page < 1000 and med < 100
        print("PASS" if ok else "FAIL: a target was missed")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
