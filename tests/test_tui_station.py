"""Pilot tests of the scan station's second-identifier and witness paths, and the scanner's ESC
prefix, on a real demo ledger: the bedside check (bag + wristband + a witness who signs on the
same screen), refusals recorded in the ledger, and the paperwork recorded at receipt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Input, Static

from coi.domain.payload import encode
from coi.service.demo import demo_password
from coi.tui.screens.alert import AlertScreen
from coi.tui.screens.home import HomeScreen
from coi.tui.screens.station import StationScreen
from coi.tui.widgets.scan_input import ESC_WAIT_S, ScanInput
from tests.tui_support import last_entry, make_app, settle

pytestmark = pytest.mark.xdist_group("tui")

STORED = "CHA999926000006"  # stored at the treatment centre, one final bag; patient MRN000006
PATIENT = "MRN000006"
OTHER_PATIENT = "MRN000007"
SHIPPED = "CHA99992600000B"  # receipt at the treatment centre is next
HARVEST_READY = "CHA99992600000G"
D = 86_400_000


def thawed_app(db: Path) -> Any:
    """The bedside station for nina, with STORED lymphodepleted and its bag thawed."""
    app = make_app(db, user="nina", station="bedside_verification")
    svc = app.svc
    nina = svc.ledger.unlock("nina", demo_password("nina"))
    svc.record("lymphodepletion", STORED, actor=nina,
               fields={"regimen": "fludarabine + cyclophosphamide"})
    svc.clock.set(svc.clock.now_ms() + 4 * D)  # type: ignore[attr-defined]
    svc.record("thaw", STORED, actor=nina, item="F00001", fields={"method": "water_bath"})
    app.session.login("nina", demo_password("nina"))  # four days on: the session starts anew
    return app


async def paste(pilot: Pilot[Any], text: str) -> None:
    """What a scanner in paste mode sends: one Paste event, the suffix included."""
    pilot.app.screen.query_one(ScanInput).post_message(events.Paste(text))
    await pilot.pause()


async def at_station(pilot: Pilot[Any], step: str) -> StationScreen:
    await settle(pilot, lambda: isinstance(pilot.app.screen, StationScreen))
    screen = pilot.app.screen
    assert isinstance(screen, StationScreen) and screen.step == step
    return screen


async def bag_then_wristband(pilot: Pilot[Any], screen: StationScreen, wristband: str) -> None:
    await paste(pilot, encode(STORED, "F00001") + "\r")
    await settle(pilot, lambda: screen.phase == "second")
    assert "wristband" in str(screen.query_one("#prompt", Static).render())
    await paste(pilot, wristband + "\r")
    await settle(pilot, lambda: screen.phase == "fields")


def fill_signatures(screen: StationScreen, *, witness: str | None, witness_pw: str | None,
                    password: str = demo_password("nina")) -> None:
    if witness is not None:
        screen.query_one("#witness-user", Input).value = witness
    if witness_pw is not None:
        screen.query_one("#witness-password", Input).value = witness_pw
    screen.query_one("#password", Input).value = password


def statement(app: Any, index: int) -> dict[str, Any]:
    row = next(iter(app.svc.ledger.store.rows(index, index + 1)))
    return json.loads(row.statement)  # type: ignore[no-any-return]


# -------------------------------------------------------------------------------- bedside
async def test_bedside_match_with_witness_records_both_signatures(db: Path) -> None:
    app = thawed_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await at_station(pilot, "bedside_verification")
        await bag_then_wristband(pilot, screen, PATIENT)
        # the scanned fields are filled from the scans, never offered for typing
        assert not screen.query("#field-wristband_commitment")
        assert not screen.query("#field-scanned_bag")
        fill_signatures(screen, witness="noah", witness_pw=demo_password("noah"))
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.last_index is not None)
        st = statement(app, screen.last_index)  # type: ignore[arg-type]
        assert st["type"] == "step.bedside_verification" and st["subject"] == STORED
        assert st["data"]["scanned_coi"] == STORED and st["data"]["scanned_bag"] == "F00001"
        assert PATIENT not in json.dumps(st)  # only the keyed commitment enters the ledger
        signers = [(s["user"], s["meaning"]) for s in st["signers"]]
        assert signers == [("nina", "authored"), ("noah", "verified")]
        confirm = str(screen.query_one("#confirm", Static).render())
        assert "Nina Nurse" in confirm and "Noah Nurse" in confirm
        product = app.svc.chain().product(STORED)
        assert product is not None and product.state == "verified"


@pytest.mark.req("BEDSIDE")
async def test_bedside_wrong_wristband_is_refused_recorded_and_opens_a_deviation(
        db: Path) -> None:
    app = thawed_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await at_station(pilot, "bedside_verification")
        before = last_entry(app.svc)["size"]
        await bag_then_wristband(pilot, screen, OTHER_PATIENT)
        fill_signatures(screen, witness="noah", witness_pw=demo_password("noah"))
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        alert = app.screen
        assert isinstance(alert, AlertScreen)
        assert "wristband does not match" in alert.reason
        product = app.svc.chain().product(STORED)
        assert product is not None and product.state == "thawed"  # nothing moved
        kinds = [d.kind for d in product.open_deviations()]
        assert "label_mismatch" in kinds
        types = [statement(app, i)["type"] for i in range(before, last_entry(app.svc)["size"])]
        assert "system.refusal" in types and "deviation.open" in types
        assert "step.bedside_verification" not in types


async def test_bedside_typed_wristband_is_refused_and_recorded(db: Path) -> None:
    app = thawed_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await at_station(pilot, "bedside_verification")
        await paste(pilot, encode(STORED, "F00001") + "\r")
        await settle(pilot, lambda: screen.phase == "second")
        await pilot.press(*PATIENT, "enter")  # by hand, one key at a time
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        entry = last_entry(app.svc)
        assert entry["type"] == "system.scan_refused" and entry["subject"] == STORED
        assert "must be scanned, not typed" in entry["data"]["reasons"][0]


@pytest.mark.req("TWO-PERSON")
async def test_witness_is_required_and_a_wrong_witness_password_records_nothing(
        db: Path) -> None:
    app = thawed_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await at_station(pilot, "bedside_verification")
        await bag_then_wristband(pilot, screen, PATIENT)
        size = last_entry(app.svc)["size"]
        fill_signatures(screen, witness=None, witness_pw=None)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert screen.phase == "fields" and last_entry(app.svc)["size"] == size
        assert app.focused is screen.query_one("#witness-user", Input)
        fill_signatures(screen, witness="noah", witness_pw="not-noahs-password")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: "Signature refused" in
                     str(screen.query_one("#confirm", Static).render()))
        assert screen.phase == "fields"
        entry = last_entry(app.svc)  # the failed witness login is recorded, not the step
        assert entry["type"] == "system.login_failed" and entry["subject"] == "noah"
        product = app.svc.chain().product(STORED)
        assert product is not None and product.state == "thawed"


async def test_a_person_cannot_witness_their_own_step(db: Path) -> None:
    app = thawed_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await at_station(pilot, "bedside_verification")
        await bag_then_wristband(pilot, screen, PATIENT)
        fill_signatures(screen, witness="nina", witness_pw=demo_password("nina"))
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        entry = last_entry(app.svc)
        assert entry["type"] == "system.refusal"
        product = app.svc.chain().product(STORED)
        assert product is not None and product.state == "thawed"


@pytest.mark.req("RECEIPT")
async def test_receipt_records_the_paperwork_scanned(db: Path) -> None:
    app = make_app(db, user="nina", station="receipt_at_treatment")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await at_station(pilot, "receipt_at_treatment")
        await paste(pilot, encode(SHIPPED, "F00001") + "\r")
        await settle(pilot, lambda: screen.phase == "second")
        await paste(pilot, encode(SHIPPED, "D00001") + "\r")
        await settle(pilot, lambda: screen.phase == "fields")
        assert not screen.query("#field-paperwork")
        screen.query_one("#field-logger").value = "in_range"  # type: ignore[attr-defined]
        screen.query_one("#password", Input).value = demo_password("nina")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.last_index is not None)
        entry = last_entry(app.svc)
        assert entry["type"] == "step.receipt_at_treatment"
        assert entry["data"]["paperwork"] == "D00001"


# ----------------------------------------------------------------------- the ESC prefix
class _ScanApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.scans: list[ScanInput.Scanned] = []
        self.escapes = 0

    def compose(self) -> ComposeResult:
        yield ScanInput(id="scan")

    def on_scan_input_scanned(self, event: ScanInput.Scanned) -> None:
        self.scans.append(event)

    def on_scan_input_escaped(self, _event: ScanInput.Escaped) -> None:
        self.escapes += 1


async def test_esc_prefix_is_dropped_and_a_lone_escape_is_passed_on() -> None:
    app = _ScanApp()
    async with app.run_test() as pilot:
        scan = app.query_one(ScanInput)
        scan.focus()
        await pilot.press("escape", "C", "O", "I", "1", "enter")  # ESC then the scan's keys
        assert app.scans[-1].raw == "COI1" and app.escapes == 0
        # the terminal merged ESC with the next key: alt+shift+c is "C", alt+1 is "1"
        await pilot.press("alt+shift+c", "O", "enter")
        assert app.scans[-1].raw == "CO" and app.escapes == 0
        await pilot.press("alt+1", "2", "enter")
        assert app.scans[-1].raw == "12" and app.escapes == 0
        await pilot.press("escape")  # a person's Escape: nothing follows
        await pilot.pause(ESC_WAIT_S + 0.2)
        assert app.escapes == 1 and len(app.scans) == 3
        await pilot.press("X", "escape")  # mid-entry: at once
        await pilot.pause()
        assert app.escapes == 2


async def test_station_takes_an_esc_prefixed_scan_and_escape_still_leaves(db: Path) -> None:
    app = make_app(db, user="maya", station="harvest")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await at_station(pilot, "harvest")
        await pilot.press("escape", *encode(HARVEST_READY, "C00001"), "enter")
        await settle(pilot, lambda: screen.phase == "fields")
        assert isinstance(app.screen, StationScreen)
        await pilot.press("escape")  # focus is on the form now: the screen's own Escape
        await settle(pilot, lambda: screen.phase == "scan")
        assert app.focused is screen.query_one(ScanInput)
        await pilot.press("escape")  # in the scan field: held, then passed on
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
