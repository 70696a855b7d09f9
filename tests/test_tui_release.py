"""Exceptional release at the terminal UI, on a copy of the demo ledger (no mocks).

After an out-of-specification QC result, QA releases only by naming the treating physician's
exceptional release request. The physician records the request at a scan station (F2); the
release screen shows the failure and QA's disposition, lists the requests to pick from, and the
service decides: without a request the release is refused (and the refusal recorded); with one
it is an exceptional release that the product page then shows with both entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static

from coi.service.chain import CoiService
from coi.service.demo import demo_password
from coi.tui.screens.alert import AlertScreen
from coi.tui.screens.home import HomeScreen
from coi.tui.screens.product import ProductScreen
from coi.tui.screens.release import ReleaseScreen
from coi.tui.screens.station import StationPickScreen, StationScreen
from coi.tui.widgets.scan_input import ScanInput
from tests.tui_support import last_entry, make_app, open_service, screen_text, settle

pytestmark = pytest.mark.xdist_group("tui")

GATE_MET = "CHA99992600000C"  # qc_testing, every QC result in and passing, no open deviation
PHYSICIAN = ("pia", "Dr Pia Physician", "pia-demo-2026-physician")


def fail_viability(db: Path) -> tuple[int, int]:
    """A viability retest that fails (an OOS deviation opens by itself), QA dispositions it
    'proceed', and a treating physician is enrolled: (failed result, deviation)."""
    svc, _clock = open_service(db)
    quinn = svc.ledger.unlock("quinn", demo_password("quinn"))
    grace = svc.ledger.unlock("grace", demo_password("grace"))
    admin = svc.ledger.unlock("admin", demo_password("admin"))
    product = svc.chain().product(GATE_MET)
    assert product is not None
    latest = product.latest_qc("viability")
    assert latest is not None and latest.result == "pass"
    fail = svc.record("qc_result", GATE_MET, actor=quinn, fields={
        "test": "viability", "result": "fail", "value": "55", "retest_of": str(latest.index),
        "retest_reason": "trend review: sample re-read"})
    [dev] = fail.auto_deviations
    svc.record("deviation_disposition", GATE_MET, actor=grace, fields={
        "deviation": str(dev), "disposition": "proceed",
        "rationale": "Investigation complete; benefit outweighs risk"})
    user, name, password = PHYSICIAN
    svc.ledger.enrol(admin, user=user, name=name, roles=["physician"], password=password)
    svc.ledger.engine.dispose()
    return fail.entry.index, dev


async def open_release(pilot: Pilot[Any], coi: str, gate: list[str] | None = None
                       ) -> ReleaseScreen:
    """The product's page, then ``r``; ``gate`` gets what the page's gate line said."""
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
    await app.push_screen(ProductScreen(coi))
    await settle(pilot, lambda: bool(str(app.screen.query_one("#gate", Static).render())))
    if gate is not None:
        gate.append(str(app.screen.query_one("#gate", Static).render()))
    await pilot.press("r")
    await settle(pilot, lambda: isinstance(app.screen, ReleaseScreen))
    screen = app.screen
    assert isinstance(screen, ReleaseScreen)
    await settle(pilot, lambda: screen.exceptional is not None)
    return screen


async def sign_release(pilot: Pilot[Any], screen: ReleaseScreen, certificate: str) -> None:
    screen.query_one("#release-field", Input).value = certificate
    screen.query_one("#release-password", Input).value = demo_password("grace")
    await pilot.press("ctrl+s")
    await settle(pilot, lambda: screen.refused is not None or screen.result_index is not None)


async def physician_requests(db: Path, justification: str) -> int:
    """The physician picks the station from the F2 list, scans the product's Chain of Identity
    Identifier, types the justification and signs."""
    user, _name, password = PHYSICIAN
    svc, _clock = open_service(db)
    app = make_app(db, user=None)
    app.session.login(user, password)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("f2")
        await settle(pilot, lambda: isinstance(app.screen, StationPickScreen))
        assert "Exceptional release request" in screen_text(app)
        await pilot.press("enter")  # the physician's only station
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        station = app.screen
        assert isinstance(station, StationScreen)
        assert station.step == "exceptional_release_request"
        station.query_one(ScanInput).post_message(events.Paste(f"&/{GATE_MET}\r"))
        await settle(pilot, lambda: station.phase == "fields")
        station.query_one("#field-justification", Input).value = justification
        station.query_one("#password", Input).value = password
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: station.last_index is not None)
        index = station.last_index
    assert index is not None
    entry = last_entry(svc)
    assert entry["type"] == "step.exceptional_release_request"
    assert entry["index"] == index and entry["data"]["justification"] == justification
    svc.ledger.engine.dispose()
    return index


@pytest.mark.req("RELEASE-QA")
async def test_exceptional_release_refused_without_a_request_then_released_with_one(
        db: Path) -> None:
    failed, dev = fail_viability(db)

    # QA sees the failure and the disposition, but no request yet: signing is refused.
    app = make_app(db, user="grace")
    async with app.run_test(size=(110, 40)) as pilot:
        page: list[str] = []
        screen = await open_release(pilot, GATE_MET, page)
        assert "not met" in page[0] and "exceptional release" in page[0]
        oos = str(screen.query_one("#release-oos", Static).render())
        assert f"viability FAIL 55 % (entry {failed}" in oos
        assert f"OOS deviation {dev}: QA disposition proceed" in oos
        assert "No exceptional release request yet" in oos
        assert screen.physician_request is None
        gate = str(screen.query_one("#release-gate", Static).render())
        assert "blocked" in gate and "exceptional" in gate
        await sign_release(pilot, screen, "COA0012")
        assert screen.refused is not None and screen.result_index is None
        assert "treating physician" in screen.refused.reason
        assert isinstance(app.screen, AlertScreen)
        entry = last_entry(app.svc)
        assert entry["type"] == "system.refusal" and entry["index"] == screen.refused.recorded_index
        assert app.svc.chain().product(GATE_MET).state == "qc_testing"  # type: ignore[union-attr]

    # The treating physician records the request at the TUI's station.
    justification = "No alternative therapy; the patient consents"
    request = await physician_requests(db, justification)

    # QA opens the release again: the request is listed (printed name, time) and picked.
    app = make_app(db, user="grace")
    async with app.run_test(size=(110, 40)) as pilot:
        page = []
        screen = await open_release(pilot, GATE_MET, page)
        assert "Release gate met" in page[0]
        assert f"Exceptional release, on the physician's request (entry {request})" in page[0]
        pick = screen.query_one("#release-request", Select)
        await settle(pilot, lambda: pick.value == request)
        assert screen.physician_request == request
        shown = screen_text(app)
        assert f"entry {request} · Dr Pia Physician (pia) · 2026-05-28" in shown
        await settle(pilot, lambda: "Gate met" in str(
            screen.query_one("#release-gate", Static).render()))
        await sign_release(pilot, screen, "COA0012")
        assert screen.refused is None and screen.result_index is not None
        release = last_entry(app.svc)
        assert release["type"] == "step.qa_release" and release["index"] == screen.result_index
        assert release["data"]["physician_request"] == request
        result = str(screen.query_one("#release-result", Static).render())
        assert "EXCEPTIONAL RELEASE on the request of Dr Pia Physician (pia)" in result
        assert app.svc.chain().product(GATE_MET).state == "released"  # type: ignore[union-attr]

        # The product page: the exceptional release, and both entries on the timeline.
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, ProductScreen))
        await settle(pilot, lambda: "EXCEPTIONAL RELEASE" in screen_text(app))
        head = str(app.screen.query_one("#product-head", Static).render())
        assert (f"EXCEPTIONAL RELEASE entry {release['index']} by Grace QA, on the request of "
                f"Dr Pia Physician (entry {request}): {justification}") in head
        table = app.screen.query_one("#timeline", DataTable)
        rows = {str(table.get_row(str(i))[2]) for i in (request, release["index"])}
        assert rows == {"Exceptional release request", "QA release"}
    view = _show(db)
    [x] = view["exceptional_releases"]
    assert (x["release"], x["request"]) == (release["index"], request)
    assert x["oos_dispositions"][0]["disposition"] == "proceed"


def _show(db: Path) -> dict[str, Any]:
    svc: CoiService
    svc, _clock = open_service(db)
    try:
        return svc.show(GATE_MET)
    finally:
        svc.ledger.engine.dispose()
