"""Pilot tests of the enrolment and correction forms on a real demo ledger: what they record is
read back from the ledger; what they refuse is recorded and leaves the chain as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.widgets import DataTable, Input, Static

from coi.service.demo import demo_password
from coi.tui.screens.correct import CorrectionScreen
from coi.tui.screens.enrol import EnrolScreen
from coi.tui.screens.home import HomeScreen
from coi.tui.screens.product import ProductScreen
from tests.tui_support import last_entry, make_app, settle

pytestmark = pytest.mark.xdist_group("tui")

S = TypeVar("S")
HARVEST_READY = "CHA99992600000G"  # expanded; its expansion entry was recorded by mo


def text_of(screen: Any, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def entry_index(app: Any, coi: str, entry_type: str) -> int:
    return next(t["index"] for t in app.svc.show(coi)["timeline"] if t["type"] == entry_type)


async def open_from_home(pilot: Any, app: Any, how: str, kind: type[S]) -> S:
    """From the home screen, press a key (``f6``) or run an app action (``correct('…', 7)``);
    the screen it opens, once shown (a correction screen once its entry is loaded)."""
    await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
    if how.startswith("f") and how[1:].isdigit():
        await pilot.press(how)
    else:
        await app.run_action(how)
    await settle(pilot, lambda: isinstance(app.screen, kind))
    screen = app.screen
    if isinstance(screen, CorrectionScreen) and "(" in how:  # it loads the entry it names
        await settle(pilot, lambda: screen.target is not None)
    assert isinstance(screen, kind)
    return screen


def correct_expansion(app: Any) -> str:
    """The app action that opens the correction of HARVEST_READY's expansion entry."""
    return f"correct('{HARVEST_READY}', {entry_index(app, HARVEST_READY, 'step.expansion')})"


# ------------------------------------------------------------------------------ enrolment
def fill_enrolment(screen: EnrolScreen, patient: str, site: str, slot: str) -> None:
    screen.query_one("#enrol-patient", Input).value = patient
    screen.query_one("#enrol-site", Input).value = site
    screen.query_one("#enrol-slot", Input).value = slot
    screen.query_one("#enrol-password", Input).value = demo_password("alice")


@pytest.mark.req("PHI")
async def test_enrolment_form_assigns_a_coi_and_keeps_the_patient_out_of_the_ledger(
        db: Path) -> None:
    app = make_app(db, user="alice")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await open_from_home(pilot, app, "f6", EnrolScreen)
        before = last_entry(app.svc)["size"]
        fill_enrolment(screen, "MRN0099123", "A9999-HEMATOLOGY", "SLOT-2026-12-03")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.enrolled is not None)
        entry = last_entry(app.svc)
        assert entry["size"] == before + 1 and entry["index"] == screen.entry_index
        assert entry["type"] == "step.enrolment" and entry["subject"] == screen.enrolled
        assert screen.enrolled is not None and screen.enrolled.startswith("CHA9999")
        row = next(iter(app.svc.ledger.store.rows(entry["index"], entry["index"] + 1)))
        assert "MRN0099123" not in row.statement.decode()  # only the keyed commitment
        assert screen.query_one("#enrol-patient", Input).value == ""  # off the screen too
        assert f"entry {entry['index']}" in text_of(screen, "#enrol-result")
        product = app.svc.chain().product(screen.enrolled)
        assert product is not None and product.state == "enrolled"


async def test_enrolment_with_a_bad_site_is_refused_recorded_and_enrols_nothing(
        db: Path) -> None:
    app = make_app(db, user="alice")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await open_from_home(pilot, app, "enrol", EnrolScreen)
        products = len(app.svc.chain().products)
        fill_enrolment(screen, "MRN0099124", "[red]site\x1b[31m", "S1")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: "Not enrolled" in text_of(screen, "#enrol-result"))
        shown = text_of(screen, "#enrol-result")
        assert "\x1b" not in shown and "recorded as entry" in shown
        assert last_entry(app.svc)["type"] == "system.refusal"
        assert len(app.svc.chain().products) == products and screen.enrolled is None
        # what was typed stays, to be put right (but not the password)
        assert screen.query_one("#enrol-patient", Input).value == "MRN0099124"
        assert screen.query_one("#enrol-password", Input).value == ""


async def test_enrolment_is_not_offered_to_roles_that_may_not_enrol(db: Path) -> None:
    app = make_app(db, user="maya")
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert not app.may("enrol")
        await pilot.press("f6")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


# ----------------------------------------------------------------------------- correction
@pytest.mark.req("AUDIT-CORRECTIONS")
async def test_correction_records_a_new_entry_and_the_original_stays(db: Path) -> None:
    app = make_app(db, user="maya")
    async with app.run_test(size=(100, 32)) as pilot:
        index = entry_index(app, HARVEST_READY, "step.expansion")
        screen = await open_from_home(pilot, app, correct_expansion(app), CorrectionScreen)
        assert screen.target is not None
        fix = screen.query_one("#fix-viable_cells", Input)
        assert fix.value == "3400000000"
        fix.value = "3300000000"
        screen.query_one("#correct-reason", Input).value = "Transcription error: counter 2"
        screen.query_one("#correct-password", Input).value = demo_password("maya")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.recorded is not None)
        entry = last_entry(app.svc)
        assert entry["type"] == "correction" and entry["index"] == screen.recorded
        assert entry["data"]["corrects"] == index
        assert entry["data"]["values"] == {"viable_cells": "3300000000"}
        timeline = {t["index"]: t for t in app.svc.show(HARVEST_READY)["timeline"]}
        assert timeline[index]["corrected_by"] == [screen.recorded]
        assert timeline[index]["data"]["viable_cells"] == "3400000000"  # the original stays


async def test_correction_needs_a_change_a_reason_and_a_step_entry(db: Path) -> None:
    app = make_app(db, user="maya")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await open_from_home(pilot, app, "correct", CorrectionScreen)
        size = last_entry(app.svc)["size"]
        screen.query_one("#correct-coi", Input).value = HARVEST_READY
        screen.query_one("#correct-index", Input).value = "0"  # the genesis, not a step
        screen.query_one("#correct-index", Input).focus()
        await pilot.press("enter")
        await settle(pilot, lambda: "not a recorded step" in text_of(screen, "#correct-result"))
        index = entry_index(app, HARVEST_READY, "step.expansion")
        screen.query_one("#correct-index", Input).value = str(index)
        await pilot.press("enter")
        await settle(pilot, lambda: screen.target is not None)
        await pilot.press("ctrl+s")  # nothing changed, no reason, no password
        await pilot.pause()
        shown = text_of(screen, "#correct-result")
        assert "change at least one value" in shown and "give the reason" in shown
        assert last_entry(app.svc)["size"] == size  # nothing recorded


async def test_correction_refused_by_the_rules_is_recorded(db: Path) -> None:
    app = make_app(db, user="maya")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await open_from_home(pilot, app, correct_expansion(app), CorrectionScreen)
        screen.query_one("#fix-viable_cells", Input).value = "lots"
        screen.query_one("#correct-reason", Input).value = "typo"
        screen.query_one("#correct-password", Input).value = demo_password("maya")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: "refused" in text_of(screen, "#correct-result"))
        entry = last_entry(app.svc)
        assert entry["type"] == "system.refusal"
        assert json.dumps(entry["data"]).count("correction") >= 1
        assert screen.recorded is None


async def test_c_on_the_timeline_corrects_the_highlighted_entry(db: Path) -> None:
    app = make_app(db, user="maya")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await app.push_screen(ProductScreen(HARVEST_READY))
        await settle(pilot, lambda: isinstance(app.screen, ProductScreen)
                     and app.screen.query_one("#timeline", DataTable).row_count > 0)
        table = app.screen.query_one("#timeline", DataTable)
        index = entry_index(app, HARVEST_READY, "step.expansion")
        table.move_cursor(row=table.get_row_index(str(index)))
        await pilot.press("c")
        await settle(pilot, lambda: isinstance(app.screen, CorrectionScreen)
                     and app.screen.target is not None)
        assert app.screen.target.index == index  # type: ignore[attr-defined]
