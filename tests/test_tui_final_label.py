"""The TUI's print action prints the final-product label of a final bag on the station printer:
signed QR, ISBT 128 Data Matrix, product name and code, expiry, and the patient's name and date
of birth from the PHI store (never the ledger). What the printer received is parsed field by
field and its symbols decoded back with zxing-cpp. Pilot on a copy of the demo; FIN A9999 only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zxingcpp
from textual.widgets import Checkbox, Input, Select

from coi.domain import isbt, payload
from coi.domain.scan import CompoundScan, LabelScan, parse_scan
from coi.labels.symbols import datamatrix_symbol, qr_symbol
from coi.labels.zpl import zpl_unescape
from coi.service import labels as L
from coi.service.demo import demo_password
from coi.tui.screens.alert import AlertScreen
from coi.tui.screens.print_label import PrintLabelScreen
from coi.tui.screens.product import ProductScreen
from tests.test_label_printer import Printer
from tests.test_labels import decode, scanned, symbol_image, zpl_fields
from tests.tui_support import last_entry, make_app, settle

pytestmark = pytest.mark.xdist_group("tui")

GATE_MET = "CHA99992600000C"  # qc_testing; its final bags carry applied labels


@pytest.mark.req("LABEL-CONTROL")
async def test_print_action_prints_the_final_product_label_with_the_patient_from_phi(
        db: Path) -> None:
    printer = Printer()
    app = make_app(db, user="maya", printer=f"127.0.0.1:{printer.port}")
    svc = app.svc
    maya = svc.ledger.unlock("maya", demo_password("maya"))
    (old,) = [r["label"] for r in L.reconciliation(svc, GATE_MET) if r["item"] == "F00001"]
    L.void(svc, maya, GATE_MET, old, "torn while handling")  # F00001 needs a new label
    who = svc.patient_identity(GATE_MET)
    assert not isinstance(who, str)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await app.push_screen(ProductScreen(GATE_MET))
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot, lambda: isinstance(app.screen, PrintLabelScreen))
        screen = app.screen
        assert isinstance(screen, PrintLabelScreen)
        await settle(pilot, lambda: screen.query_one("#print-item", Select).value == "F00001")
        assert screen.query_one("#print-final", Checkbox).value  # a final bag: final label
        assert screen.query_one("#print-final-form").display
        assert screen.query_one("#print-storage", Input).value == "<= -150 C"
        screen.query_one("#print-product_name", Input).value = "CD19 CAR-T cells"
        screen.query_one("#print-product_code", Input).value = "S1234100"
        screen.query_one("#print-password", Input).value = demo_password("maya")

        # An impossible expiry is refused before anything is recorded or sent.
        size = last_entry(svc)["size"]
        screen.query_one("#print-expiry", Input).value = "2027-02-30"
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        assert "is not a date of the calendar" in app.screen.reason  # type: ignore[attr-defined]
        assert last_entry(svc)["size"] == size and printer.received == b""
        await app.pop_screen()
        await settle(pilot)

        screen.query_one("#print-expiry", Input).value = "2027-05-28"
        screen.query_one("#print-password", Input).value = demo_password("maya")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.result is not None)
    printer.thread.join(5)
    zpl = printer.received.decode("ascii")
    fields = zpl_fields(zpl)

    # The QR code: coi's signed payload of this bag's second label (print generation 1).
    (qr,) = [f for f in fields if f[2].startswith("^BQ")]
    mag = int(qr[2].split(",")[2])
    (bar,) = decode(symbol_image(qr_symbol(qr[4][3:]), mag), zxingcpp.BarcodeFormat.QRCode)
    scan = parse_scan(scanned(bar))
    assert isinstance(scan, LabelScan) and scan.label.coi == GATE_MET
    assert scan.label.item == "F01001" and bar.text.startswith("COS1")
    assert payload.decode(bar.text).item == "F01001"
    # The Data Matrix: the CoI, the collection's DIN and the product code.
    (dm,) = [f for f in fields if f[2].startswith("^BX")]
    module = int(dm[2].split(",")[1])
    message = zpl_unescape(dm[4]) if dm[3] else dm[4]
    (mat,) = decode(symbol_image(datamatrix_symbol(message), module),
                    zxingcpp.BarcodeFormat.DataMatrix)
    compound = parse_scan(scanned(mat))
    assert isinstance(compound, CompoundScan)
    texts = {s.barcode() for s in compound.structures}
    assert f"&/{GATE_MET}" in texts and "=<S1234100" in texts
    assert any(isinstance(s, isbt.Din) for s in compound.structures)
    # The printed lines, the patient's name and date of birth among them.
    shown = [zpl_unescape(f[4]) for f in fields if f[2].startswith("^A0N")]
    assert "FOR AUTOLOGOUS USE ONLY" in shown and "CD19 CAR-T CELLS  S1234 1 00" in shown
    assert "EXP 2027-05-28  STORE <= -150 C" in shown
    assert who.name.upper() in shown
    assert any(s.startswith(f"DOB {who.date_of_birth}  LABEL ") for s in shown)
    assert "ITEM F00001  BAG 1 OF" in " ".join(shown)

    # Recorded issued (signed, ISBT) and printed on the station printer; no name in the ledger.
    row = next(r for r in L.reconciliation(svc, GATE_MET) if r["label"] == screen.result)
    assert row["printed"] and row["item"] == "F00001"
    issue = [t for t in svc.show(GATE_MET)["timeline"] if t["type"] == "label.issue"][-1]
    assert issue["data"]["template"] == ("4x2 zpl 203dpi isbt signed final 2027-05-28 S1234100 "
                                         "<= -150 C|CD19 CAR-T CELLS")  # what it carried
    assert who.name not in json.dumps(svc.show(GATE_MET)["timeline"])
