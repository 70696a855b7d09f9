"""Shared set-up for the TUI tests: one demo ledger per test process, copied for each test.

Building the demo takes ~15 s (scrypt for every demo user is slow on purpose), so it is built
once with a fixed time and seed and each test gets its own copy of the SQLite file and log key.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from coi.service.chain import CoiService
from coi.service.demo import MovableClock, build_demo, demo_password
from coi.tui.app import CoiApp

NOW_MS = 1_780_000_000_000  # 2026-05-28 20:26:40 UTC: the demo's "now", fixed
_built: dict[str, Path] = {}


def demo_template(base: Path) -> Path:
    """The demo ledger, built once per process under ``base``."""
    if "db" not in _built:
        base.mkdir(parents=True, exist_ok=True)
        db = base / "demo.db"
        site = build_demo(str(db), None, products=20, now_ms=NOW_MS)
        # Close every connection so SQLite folds its write-ahead log into the file: a copy of
        # demo.db alone must hold the whole ledger.
        site.svc.ledger.engine.dispose()
        _built["db"] = db
    return _built["db"]


def copy_demo(template: Path, dest: Path) -> Path:
    db = dest / "coi.db"
    shutil.copy(template, db)
    shutil.copy(str(template) + ".logkey", str(db) + ".logkey")
    for extra in ("-wal", "-shm"):
        if Path(str(template) + extra).exists():
            shutil.copy(str(template) + extra, str(db) + extra)
    return db


def open_service(db: Path) -> tuple[CoiService, MovableClock]:
    clock = MovableClock(NOW_MS)
    return CoiService.open(str(db), clock=clock), clock


def make_app(db: Path, *, user: str | None = None, station: str | None = None,
             **kw: Any) -> CoiApp:
    """The app on a copy of the demo; ``user`` already logged in (skips the login screen)."""
    svc, _clock = open_service(db)
    app = CoiApp(svc, station=station, **kw)
    if user is not None:
        app.session.login(user, demo_password(user))
    return app


async def settle(pilot: Pilot[Any], until: Callable[[], bool] | None = None,
                 timeout: float = 20.0) -> None:
    """Let workers finish and their results land; optionally until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive worker replaced by a newer one
            pass
        await pilot.pause()
        if until is None or until():
            await pilot.pause()
            return
        if time.monotonic() > deadline:
            raise AssertionError("the UI did not reach the expected state in time")
        await pilot.pause(0.05)


def last_entry(svc: CoiService) -> dict[str, Any]:
    """The ledger's last entry (type, subject, data), read back through the service."""
    head = svc.ledger.store.head()
    assert head is not None
    row = next(iter(svc.ledger.store.rows(head.size - 1, head.size)))
    import json

    st = json.loads(row.statement)
    return {"index": st["index"], "type": st["type"], "subject": st["subject"],
            "data": st["data"], "size": head.size}
