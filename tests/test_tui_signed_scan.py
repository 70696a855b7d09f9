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
    (applied,) = [r["label"] for r in L.reconciliation(svc, SHIPPED) if r["item"] == "F00001"]
    L.reprint(svc, maya, SHIPPED, applied, "a signed label instead", "png", "4x2", None, False,
              out, signed=True)
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


async def test_print_action_sends_a_signed_label_to_the_station_printer(db: Path) -> None:
    from coi.service.demo import Site as DemoSite
    from coi.service.demo import Walk, enrol, step
    from coi.tui.screens.print_label import PrintLabelScreen
    from coi.tui.screens.product import ProductScreen
    from tests.test_label_printer import Printer, free_port

    printer = Printer()
    app = make_app(db, user="alice", printer=f"127.0.0.1:{printer.port}")
    svc = app.svc
    people = {u: svc.ledger.unlock(u, demo_password(u)) for u in ("alice",)}
    site = DemoSite(svc, people)
    w = Walk(seq=900)
    enrol(site, w)
    step(site, w, 0, svc.clock.now_ms())  # collected: C00001 has no label yet
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await app.push_screen(ProductScreen(w.coi))
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot, lambda: isinstance(app.screen, PrintLabelScreen))
        screen = app.screen
        assert isinstance(screen, PrintLabelScreen)
        await settle(pilot, lambda: screen.query_one("#print-item").value == "C00001")  # type: ignore[attr-defined]
        screen.query_one("#print-password").value = demo_password("alice")  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.result is not None)
        printer.thread.join(5)
        text = printer.received.decode("ascii")
        assert f"MA,COS1{w.coi}C00001" in text
        (row,) = L.reconciliation(svc, w.coi)
        assert row["printed"] and row["label"] == screen.result
    # A station printer that takes nothing: the label stays issued, not printed.
    app2 = make_app(db, user="alice", printer=f"127.0.0.1:{free_port()}")
    w2 = Walk(seq=901)
    site2 = DemoSite(app2.svc, {"alice": app2.svc.ledger.unlock("alice", demo_password("alice"))})
    enrol(site2, w2)
    step(site2, w2, 0, app2.svc.clock.now_ms())
    async with app2.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await app2.push_screen(PrintLabelScreen(w2.coi, f"127.0.0.1:{free_port()}"))
        screen2 = app2.screen
        assert isinstance(screen2, PrintLabelScreen)
        await settle(pilot, lambda: screen2.query_one("#print-item").value == "C00001")  # type: ignore[attr-defined]
        screen2.query_one("#print-password").value = demo_password("alice")  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: isinstance(app2.screen, AlertScreen))
        assert "was issued but not printed" in app2.screen.reason  # type: ignore[attr-defined]
        assert L.reconciliation(app2.svc, w2.coi)[0]["outcome"] == "not printed"
