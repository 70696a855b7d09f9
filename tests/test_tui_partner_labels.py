"""The scan stations of a treatment centre verify the manufacturer's signed labels against the
key its hand-off file brought (three real ledgers, see tests/test_handoff_labels.py): at the
receipt a forged label, or a genuine one of a bag the hand-off did not ship, is refused in red
and recorded, the genuine one goes on; at the bedside
a plain scan of a label printed signed is refused, the genuine one goes on. The receipt
station's list of expected arrivals follows a hand-off received while it is open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import Button, Static

from coi.domain import payload
from coi.ledger.keys import generate
from coi.tui.app import CoiApp
from coi.tui.screens.alert import AlertScreen
from coi.tui.screens.station import StationScreen
from coi.tui.widgets.scan_input import ScanInput
from coi.tui.widgets.station_title import StationTitle
from tests.test_handoff import pw, reopen
from tests.test_handoff_labels import Chain, received, shipped, thawed
from tests.tui_support import last_entry, settle

pytestmark = pytest.mark.xdist_group("tui")


def _app(c: Chain, station: str) -> CoiApp:
    app = CoiApp(reopen(c.hospital).svc, station=station)
    app.session.login("nina", pw("nina"))
    return app


async def _scan(pilot: Pilot[Any], text: str) -> None:
    pilot.app.screen.query_one(ScanInput).post_message(events.Paste(text + "\r"))
    await pilot.pause()


async def _refused(pilot: Pilot[Any], c: Chain, raw: str, words: str) -> None:
    """Scanning ``raw`` raises the red alert with ``words``, recorded before it shows."""
    app = pilot.app
    await _scan(pilot, raw)
    await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
    alert = app.screen
    assert isinstance(alert, AlertScreen) and words in alert.reason, alert.reason
    entry = last_entry(reopen(c.hospital).svc)
    assert entry["type"] == "system.scan_refused" and entry["subject"] == c.coi
    ack = alert.query_one("#alert-ack", Button)
    await settle(pilot, lambda: not ack.disabled)
    ack.press()
    await settle(pilot, lambda: isinstance(app.screen, StationScreen))


def _title(app: CoiApp) -> str:
    return str(app.screen.query_one("#station-title", Static).render())


@pytest.mark.req("DEVICE-CHECKS")
async def test_partner_labels_at_the_receipt_and_bedside_stations(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StationTitle, "REFRESH_S", 0.2)
    c = shipped(tmp_path)
    maya = payload.decode(c.final_label[3:]).key_id
    assert maya is not None
    app = _app(c, "receipt_at_treatment")
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        assert "Expected" not in _title(app)
        received(c)  # at another desk, while this station is open
        await settle(pilot, lambda: "Expected from partners" in _title(app))
        assert f"{c.coi} from acme-factory (F00001, F00002)" in _title(app)
        forged = "]Q1" + payload.sign(c.coi, "F00001", maya, generate())
        await _refused(pilot, c, forged, "does not verify with key "
                                          f"{maya.hex().upper()} of maya at partner acme-factory")
        # The clinic's genuine label (verified through the factory's record) is not of a bag
        # this hand-off shipped.
        await _refused(pilot, c, c.collection_label, "C00001 is not a bag acme-factory shipped "
                                                     "with this hand-off (it shipped F00001, "
                                                     "F00002)")
        screen = app.screen
        assert isinstance(screen, StationScreen)
        await _scan(pilot, c.final_label)
        await settle(pilot, lambda: screen.phase == "second")  # the paperwork next
    thawed(c)
    app = _app(c, "bedside_verification")
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        await _refused(pilot, c, "]Q1" + payload.encode(c.coi, "F00001"),
                       "was printed signed by partner acme-factory, but this scan carries no "
                       "signature")
        screen = app.screen
        assert isinstance(screen, StationScreen)
        await _scan(pilot, c.final_label)
        await settle(pilot, lambda: screen.phase == "second")  # the wristband next


async def test_the_arrivals_are_read_again_when_the_station_comes_back(tmp_path: Path) -> None:
    c = shipped(tmp_path)  # no timer in this test: only the screen's return refreshes
    app = _app(c, "receipt_at_treatment")
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        received(c)
        await pilot.pause()
        assert "Expected" not in _title(app)  # not read yet: the timer is 15 s
        await _refused(pilot, c, "]Q1" + payload.encode(c.coi, "F00001"),
                       "printed signed by partner acme-factory")  # an alert, acknowledged
        await settle(pilot, lambda: "Expected from partners" in _title(app))
