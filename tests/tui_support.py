"""Shared set-up for the TUI tests: one demo ledger per test process, copied for each test.

Building the demo takes ~15 s (scrypt for every demo user is slow on purpose), so it is built
once with a fixed time and seed and each test gets its own copy of the SQLite file and log key.
"""

from __future__ import annotations

import asyncio
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
    shutil.copy(str(template) + ".phikey", str(db) + ".phikey")
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


def screen_text(app: Any) -> str:
    """Every character the app's current screen shows, as plain text (what a camera would see)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def burst(pilot: Pilot[Any], data: str, *, gap_s: float = 0.0,
                seen: list[str] | None = None, timeout: float = 20.0) -> None:
    """Send ``data`` the way a keyboard-wedge scanner or a password manager does.

    The bytes go through Textual's own terminal parser (ESC sequences, Tab, Enter, GS and all)
    one at a time, each event posted to the app as soon as it is parsed, ``gap_s`` apart
    (0: the whole burst in one read, as a terminal delivers it; the issue asks for <= 2 ms).
    Returns once the app has handled every key. With ``seen``, what the screen shows is
    captured after every key the app handles, so a test can check what was ever on screen.
    """
    from textual import constants
    from textual._xterm_parser import XTermParser

    app = pilot.app
    driver = app._driver
    assert driver is not None
    parser = XTermParser()

    def send(messages: Any) -> None:
        for message in messages:
            message.set_sender(app)
            driver.send_message(message)

    for ch in data:
        send(parser.feed(ch))
        if gap_s:
            await asyncio.sleep(gap_s)
    await asyncio.sleep(constants.ESCAPE_DELAY + 0.02)  # a trailing ESC sequence times out
    send(parser.tick())
    deadline = time.monotonic() + timeout
    last = -1
    await asyncio.sleep(0.01)  # the driver hands the events over on the event loop
    while True:
        keys = app.keys  # type: ignore[attr-defined]
        if seen is not None and keys.delivered != last:
            last = keys.delivered
            seen.append(screen_text(app))
        if not keys.pending:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{keys.pending} keys still waiting after {timeout} s")
        await asyncio.sleep(0)
    await pilot.pause()
    if seen is not None:
        seen.append(screen_text(app))
