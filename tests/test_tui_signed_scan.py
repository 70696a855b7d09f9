"""The scan station verifies signed labels (COS1) like ``coi labels check``: a forged one is
refused in red and the refusal recorded before the alert shows; a genuine one goes on to the
next scan. Pilot on a copy of the demo ledger; FIN A9999 only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from textual import events
from textual.pilot import Pilot
from textual.widgets import Button

from coi.domain import payload
from coi.ledger.keys import generate
from coi.service import labels as L
from coi.service.demo import demo_password
from coi.tui.screens.alert import AlertScreen
from coi.tui.screens.station import StationScreen
from coi.tui.widgets.scan_input import ScanInput
from tests.test_labels import decode, png_image, scanned
from tests.tui_support import last_entry, make_app, settle

pytestmark = pytest.mark.xdist_group("tui")

SHIPPED = "CHA99992600000B"  # receipt at the treatment centre is next


async def paste(pilot: Pilot[Any], text: str) -> None:
    pilot.app.screen.query_one(ScanInput).post_message(events.Paste(text))
    await pilot.pause()


@pytest.mark.req("DEVICE-CHECKS")
async def test_station_refuses_a_forged_signed_label_and_takes_a_genuine_one(
        db: Path, tmp_path: Path) -> None:
    app = make_app(db, user="nina", station="receipt_at_treatment")
    svc = app.svc
    maya = svc.ledger.unlock("maya", demo_password("maya"))
    out = tmp_path / "f.png"
    L.issue_and_print(svc, maya, SHIPPED, "F00001", "png", "4x2", None, False, out, signed=True)
    (qr,) = decode(png_image(out.read_bytes()), zxingcpp.BarcodeFormat.QRCode)
    genuine = scanned(qr)
    forged = "]Q1" + payload.sign(SHIPPED, "F00001", bytes.fromhex("DEADBEEF"), generate())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        screen = app.screen
        assert isinstance(screen, StationScreen)
        await paste(pilot, forged + "\r")
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        alert = app.screen
        assert isinstance(alert, AlertScreen)
        assert "DEADBEEF, which is not in this site's key registry" in alert.reason
        entry = last_entry(svc)
        assert entry["type"] == "system.scan_refused" and entry["subject"] == SHIPPED
        await pilot.press("escape")  # an alert is acknowledged, not escaped
        assert app.screen is alert
        ack = alert.query_one("#alert-ack", Button)
        await settle(pilot, lambda: not ack.disabled)
        ack.press()
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        await paste(pilot, genuine + "\r")
        await settle(pilot, lambda: screen.phase == "second")
