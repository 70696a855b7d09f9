"""Snapshots of every screen at 80x24 (the smallest terminal coi supports), on fixed demo data;
the screens issue 19 changed also at 120x36.

The demo is built with a fixed time and seed and the app runs on a clock that does not move, so
every time, index and "time left" on screen is the same on each run. Update with
``pytest tests/test_tui_snapshots.py --snapshot-update`` only after looking at the new SVGs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import Input

from coi.domain.payload import encode
from coi.service.demo import demo_password
from coi.tui.screens.alert import AlertScreen
from coi.tui.screens.error import ErrorScreen
from coi.tui.screens.home import HomeScreen
from coi.tui.screens.product import ProductScreen
from coi.tui.screens.release import ReleaseScreen
from coi.tui.screens.station import StationScreen
from coi.tui.widgets.scan_input import ScanInput
from tests.tui_support import make_app, settle

pytestmark = pytest.mark.xdist_group("tui")
SIZE = (80, 24)
SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 36)], ids=["80x24", "120x36"])
Before = Callable[[Pilot[Any]], Awaitable[None]]


@pytest.fixture
def snap_compare(snap_compare: Any) -> Any:
    """The plugin's ``snap_compare``, with every input's cursor held still: a blink caught on
    or off is not a change of look, and must not make a snapshot differ between runs."""

    def compare(app: Any, *, run_before: Before | None = None, **kw: Any) -> Any:
        async def run(pilot: Pilot[Any]) -> None:
            if run_before is not None:
                await run_before(pilot)
            for widget in pilot.app.screen.query(Input):
                widget.cursor_blink = False
            await pilot.pause()

        return snap_compare(app, run_before=run, **kw)

    return compare


async def at_home(pilot: Pilot[Any]) -> None:
    await settle(pilot, lambda: isinstance(pilot.app.screen, HomeScreen))
    await settle(pilot)


def then(action: str, screen: type[Any]) -> Before:
    async def run(pilot: Pilot[Any]) -> None:
        await at_home(pilot)
        await pilot.app.run_action(action)
        await settle(pilot, lambda: isinstance(pilot.app.screen, screen))
        await settle(pilot)

    return run


def push(make: Callable[[], Any]) -> Before:
    async def run(pilot: Pilot[Any]) -> None:
        await at_home(pilot)
        await pilot.app.push_screen(make())
        await settle(pilot)
        await pilot.pause(0.7)  # the alert's button arms itself after a moment
        await settle(pilot)

    return run


async def scanned(pilot: Pilot[Any], payload: str) -> StationScreen:
    await settle(pilot, lambda: isinstance(pilot.app.screen, StationScreen))
    screen = pilot.app.screen
    assert isinstance(screen, StationScreen)
    screen.query_one(ScanInput).post_message(events.Paste(payload + "\r"))
    await settle(pilot, lambda: screen.phase != "busy")
    return screen


@SIZES
def test_login(db: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(db), terminal_size=size, run_before=settle)


def test_home_qa(db: Path, snap_compare: Any) -> None:
    assert snap_compare(make_app(db, user="grace"), terminal_size=SIZE, run_before=at_home)


def test_station_pick(db: Path, snap_compare: Any) -> None:
    from coi.tui.screens.station import StationPickScreen

    assert snap_compare(make_app(db, user="maya"), terminal_size=SIZE,
                        run_before=then("station", StationPickScreen))


@SIZES
def test_station_product_scanned(db: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    async def run(pilot: Pilot[Any]) -> None:
        await scanned(pilot, encode("CHA99992600000G", "C00001"))

    assert snap_compare(make_app(db, user="maya", station="harvest"), terminal_size=size,
                        run_before=run)


@SIZES
def test_station_recorded(db: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    async def run(pilot: Pilot[Any]) -> None:
        screen = await scanned(pilot, encode("CHA99992600000G", "C00001"))
        screen.query_one("#field-viable_cells", Input).value = "3100000000"
        screen.query_one("#field-viability_pct", Input).value = "92.5"
        screen.query_one("#password", Input).value = demo_password("maya")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.last_index is not None)

    assert snap_compare(make_app(db, user="maya", station="harvest"), terminal_size=size,
                        run_before=run)


def test_alert_inert_payload(db: Path, snap_compare: Any) -> None:
    async def run(pilot: Pilot[Any]) -> None:
        await scanned(pilot, "[bold red]x[/]\x1b]0;pwn\x07\x1b[31mCOI1")
        await settle(pilot, lambda: isinstance(pilot.app.screen, AlertScreen))
        await pilot.pause(0.7)
        await settle(pilot)

    assert snap_compare(make_app(db, user="maya", station="harvest"), terminal_size=SIZE,
                        run_before=run)


@SIZES
def test_review(db: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    from coi.tui.screens.review import ReviewScreen

    assert snap_compare(make_app(db, user="grace"), terminal_size=size,
                        run_before=then("review", ReviewScreen))


def test_product_timeline(db: Path, snap_compare: Any) -> None:
    assert snap_compare(make_app(db, user="grace"), terminal_size=SIZE,
                        run_before=push(lambda: ProductScreen("CHA999926000004")))


@SIZES
def test_product_infused(db: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    """An infused product: local times with their zone, and no window left counting down."""
    assert snap_compare(make_app(db, user="grace"), terminal_size=size,
                        run_before=push(lambda: ProductScreen("CHA999926000001")))


def test_release_blocked(db: Path, snap_compare: Any) -> None:
    assert snap_compare(make_app(db, user="grace"), terminal_size=SIZE,
                        run_before=push(lambda: ReleaseScreen("CHA999926000004", "release")))


def test_audit(db: Path, snap_compare: Any) -> None:
    from coi.tui.screens.audit import AuditScreen

    assert snap_compare(make_app(db, user="ari"), terminal_size=SIZE,
                        run_before=then("audit", AuditScreen))


def test_export_form(db: Path, snap_compare: Any) -> None:
    from coi.tui.screens.audit import AuditScreen
    from coi.tui.screens.export import ExportScreen

    async def run(pilot: Pilot[Any]) -> None:
        await then("audit", AuditScreen)(pilot)
        await pilot.press("e")
        await settle(pilot, lambda: isinstance(pilot.app.screen, ExportScreen))
        await pilot.press(*"CHA999926000001")
        await settle(pilot)

    assert snap_compare(make_app(db, user="ari"), terminal_size=SIZE, run_before=run)


def test_admin(db: Path, snap_compare: Any) -> None:
    from coi.tui.screens.admin import AdminScreen

    assert snap_compare(make_app(db, user="admin"), terminal_size=SIZE,
                        run_before=then("admin", AdminScreen))


def test_error_modal(db: Path, snap_compare: Any) -> None:
    assert snap_compare(make_app(db, user="ari"), terminal_size=SIZE,
                        run_before=push(lambda: ErrorScreen("Unexpected error",
                                                            "OperationalError: disk I/O")))


@SIZES
def test_enrol_form(db: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    from coi.tui.screens.enrol import EnrolScreen

    assert snap_compare(make_app(db, user="alice"), terminal_size=size,
                        run_before=then("enrol", EnrolScreen))


@SIZES
def test_enrolled(db: Path, snap_compare: Any, size: tuple[int, int],
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """After enrolment: the new CoI and the label command to run next (run from the
    database's folder, so the command names it the same way on every run)."""
    from coi.tui.screens.enrol import EnrolScreen

    monkeypatch.chdir(db.parent)

    async def run(pilot: Pilot[Any]) -> None:
        await then("enrol", EnrolScreen)(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, EnrolScreen)
        for key, value in (("patient", "MRN900001"), ("site", "A9999-HEMATOLOGY"),
                           ("slot", "SLOT-1"), ("password", demo_password("alice"))):
            screen.query_one(f"#enrol-{key}", Input).value = value
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.enrolled is not None)

    assert snap_compare(make_app(db, user="alice"), terminal_size=size, run_before=run)


@SIZES
def test_correction_of_a_time(db: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    """A timestamp field: local time with its zone, never epoch milliseconds."""
    from coi.tui.screens.correct import CorrectionScreen

    async def run(pilot: Pilot[Any]) -> None:
        await at_home(pilot)
        timeline = pilot.app.svc.show("CHA99992600000G")["timeline"]  # type: ignore[attr-defined]
        index = next(t["index"] for t in timeline if t["type"] == "step.apheresis_collection")
        await pilot.app.run_action(f"correct('CHA99992600000G', {index})")
        await settle(pilot, lambda: isinstance(pilot.app.screen, CorrectionScreen)
                     and pilot.app.screen.target is not None)
        await settle(pilot)

    assert snap_compare(make_app(db, user="alice"), terminal_size=size, run_before=run)


@SIZES
def test_released(db: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    """After the release: the product's new state, not "Gate met"."""
    async def run(pilot: Pilot[Any]) -> None:
        await push(lambda: ReleaseScreen("CHA99992600000C", "release"))(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ReleaseScreen)
        screen.query_one("#release-field", Input).value = "COA-77"
        screen.query_one("#release-password", Input).value = demo_password("grace")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.result_index is not None)

    assert snap_compare(make_app(db, user="grace"), terminal_size=size, run_before=run)


def test_correction_form(db: Path, snap_compare: Any) -> None:
    from coi.tui.screens.correct import CorrectionScreen

    async def run(pilot: Pilot[Any]) -> None:
        await at_home(pilot)
        timeline = pilot.app.svc.show("CHA99992600000G")["timeline"]  # type: ignore[attr-defined]
        index = next(t["index"] for t in timeline if t["type"] == "step.expansion")
        await pilot.app.run_action(f"correct('CHA99992600000G', {index})")
        await settle(pilot, lambda: isinstance(pilot.app.screen, CorrectionScreen)
                     and pilot.app.screen.target is not None)
        await settle(pilot)

    assert snap_compare(make_app(db, user="maya"), terminal_size=SIZE, run_before=run)


def test_admin_enrol_form(db: Path, snap_compare: Any) -> None:
    from coi.tui.screens.admin import AdminForm

    assert snap_compare(make_app(db, user="admin"), terminal_size=SIZE,
                        run_before=push(lambda: AdminForm("enrol")))


def test_export_confirm_overwrite(db: Path, snap_compare: Any) -> None:
    from coi.tui.screens.export import ConfirmOverwrite

    assert snap_compare(make_app(db, user="ari"), terminal_size=SIZE,
                        run_before=push(lambda: ConfirmOverwrite(
                            [Path("coi-export-CHA999926000001-2026-05-28.jsonl")])))
