"""Bursts of keys, as a keyboard-wedge scanner or a password manager types them, on every kind of
screen: nothing dropped, nothing reordered, the focus where each key expects it, no password
ever on screen.

The bytes go through Textual's own terminal parser and reach the app at most 2 ms apart (0 ms:
the whole burst in one read, which is how a terminal hands a scanner's burst over). Without
``coi.tui.keys.KeyRouter`` the login burst leaves ``mayamaya-demo-2026`` in the user-id field.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from coi.domain import isbt
from coi.domain.payload import encode
from coi.service.demo import demo_password
from coi.tui.screens.alert import AlertScreen
from coi.tui.screens.enrol import EnrolScreen
from coi.tui.screens.home import HomeScreen
from coi.tui.screens.login import LoginScreen
from coi.tui.screens.station import StationScreen
from tests.tui_support import burst, last_entry, make_app, settle

pytestmark = pytest.mark.xdist_group("tui")

GAPS = [0.0, 0.001, 0.002]
HARVEST_READY = "CHA99992600000G"
GS = "\x1d"


def never_shown(secret: str, seen: list[str]) -> None:
    assert seen, "the screen was captured"
    for shot in seen:
        assert secret not in shot, f"the password is on screen:\n{shot}"


@pytest.mark.parametrize("gap", GAPS)
async def test_login_typed_as_one_burst(db: Path, gap: float) -> None:
    app = make_app(db)
    password = demo_password("maya")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, LoginScreen))
        seen: list[str] = []
        await burst(pilot, "maya\t" + password, gap_s=gap, seen=seen)
        screen = app.screen
        assert isinstance(screen, LoginScreen)
        assert screen.query_one("#login-user", Input).value == "maya"
        assert screen.query_one("#login-password", Input).value == password
        assert app.focused is screen.query_one("#login-password", Input)
        await burst(pilot, "\r", seen=seen)
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert app.session.user == "maya"
        never_shown(password, seen)


async def test_login_burst_with_enter_between_fields(db: Path) -> None:
    """A badge scanner with an Enter suffix, then the password: Enter moves the focus (through
    ``Input.Submitted`` and the screen's handler) before the next key is handed over."""
    app = make_app(db)
    password = demo_password("maya")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, LoginScreen))
        seen: list[str] = []
        await burst(pilot, "maya\r" + password + "\r", seen=seen)
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert app.session.user == "maya"
        never_shown(password, seen)


async def test_a_burst_keeps_backspace_in_its_place(db: Path) -> None:
    """Backspace is a binding, resolved after bubbling: in a burst it must still delete the
    character typed just before it, not the last one of the burst."""
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, LoginScreen))
        await burst(pilot, "mayx\x7fa")
        assert app.screen.query_one("#login-user", Input).value == "maya"


@pytest.mark.parametrize("gap", [0.0, 0.002])
async def test_enrolment_form_filled_in_one_burst(db: Path, gap: float) -> None:
    app = make_app(db, user="alice")
    password = demo_password("alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("f6")
        await settle(pilot, lambda: isinstance(app.screen, EnrolScreen))
        screen = app.screen
        assert isinstance(screen, EnrolScreen)
        seen: list[str] = []
        await burst(pilot, "MRN900001\tAlex Doe\t1970-01-02\tA9999-HEMATOLOGY\rSLOT-77\t"
                    + password + "\r", gap_s=gap, seen=seen)
        await settle(pilot, lambda: screen.enrolled is not None)
        entry = last_entry(app.svc)
        assert entry["type"] == "step.enrolment"
        assert entry["data"]["treatment_site"] == "A9999-HEMATOLOGY"
        assert entry["data"]["manufacturing_slot"] == "SLOT-77"
        never_shown(password, seen)


async def test_station_scan_with_aim_prefix_and_tab_suffix_then_fields_in_a_burst(
        db: Path) -> None:
    app = make_app(db, user="maya", station="harvest")
    password = demo_password("maya")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        screen = app.screen
        assert isinstance(screen, StationScreen)
        await burst(pilot, "]Q1" + encode(HARVEST_READY, "C00001") + "\t")
        await settle(pilot, lambda: screen.phase == "fields")
        assert screen.target is not None and screen.target.coi == HARVEST_READY
        assert screen.scan_methods == {"first": "scanner"}
        first = screen.query_one("#field-viable_cells", Input)
        assert app.focused is first
        seen: list[str] = []
        await burst(pilot, "3100000000\t92.5\t" + password + "\r", seen=seen)
        await settle(pilot, lambda: screen.last_index is not None)
        entry = last_entry(app.svc)
        assert entry["type"] == "step.harvest"
        assert entry["data"]["viable_cells"] == "3100000000"
        assert entry["data"]["viability_pct"] == "92.5"
        never_shown(password, seen)


def compound_scan() -> str:
    """An ISBT 128 compound message (CoI and DIN, GS between) behind a Data Matrix AIM id."""
    coi = isbt.CoiId("A9999", "25", "000001")
    din = isbt.Din("A9999", "25", "000123")
    return f"]d1=+02000{coi.barcode()}{GS}{din.barcode()}"


@pytest.mark.parametrize("esc", ["", "\x1b"])
async def test_station_keeps_gs_and_drops_the_esc_prefix_of_a_long_scan(
        db: Path, esc: str) -> None:
    """AIM prefix, GS inside, Tab suffix, with and without an ESC prefix; long enough (over 31
    characters) that Textual turns an ESC prefix into ``^``. Nothing of the scan is lost: the
    refusal (a compound message names no product to record) keeps it exactly."""
    app = make_app(db, user="maya", station="harvest")
    raw = compound_scan()
    assert len(raw) > 31
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        before = last_entry(app.svc)["size"]
        await burst(pilot, esc + raw + "\t")
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        entry = last_entry(app.svc)
        assert entry["size"] == before + 1
        assert entry["type"] == "system.scan_refused"
        assert entry["data"]["scan"] == raw.replace(GS, "<GS>")  # recorded with GS made visible


async def test_station_takes_a_short_esc_prefixed_scan_in_one_read(db: Path) -> None:
    app = make_app(db, user="maya", station="harvest")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        screen = app.screen
        assert isinstance(screen, StationScreen)
        await burst(pilot, "\x1b]Q1" + encode(HARVEST_READY, "C00001") + "\r")
        await settle(pilot, lambda: screen.phase == "fields")
        assert screen.target is not None and screen.target.coi == HARVEST_READY
        assert isinstance(app.screen, StationScreen)  # the ESC did not leave the station


async def test_a_typed_scan_is_told_apart_from_a_burst(db: Path) -> None:
    """Keys a person types (50 ms apart) are "typed" although the app handles each in its
    turn; the same keys in a burst are "scanner": a key's time is when it was read."""
    app = make_app(db, user="maya", station="harvest")
    label = encode(HARVEST_READY, "C00001")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        screen = app.screen
        assert isinstance(screen, StationScreen)
        await burst(pilot, label + "\r", gap_s=0.05)
        await settle(pilot, lambda: screen.phase == "fields")
        assert screen.scan_methods == {"first": "typed"}
        assert "Typed by hand" in str(screen.query_one("#product-info").render())


async def test_bag_and_wristband_scanned_back_to_back(db: Path) -> None:
    """The bedside check with both scans in one burst: the wristband arrives while the bag is
    still being looked up; it is kept and taken as the second scan, not dropped."""
    from tests.test_tui_station import PATIENT, STORED, thawed_app

    app = thawed_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        screen = app.screen
        assert isinstance(screen, StationScreen)
        await burst(pilot, "]Q1" + encode(STORED, "F00001") + "\r]C0" + PATIENT + "\r")
        await settle(pilot, lambda: screen.phase == "fields")
        assert screen.wristband == PATIENT
        assert screen.scan_methods == {"first": "scanner", "second": "scanner"}
