"""Shipping-document (paperwork) labels: issued, printed signed, applied, reprinted and scanned
like a bag's, though the paperwork is no item of the product (its issue names no item; the
label id carries the document, ``L-<CoI>-D00001-<n>``). A receipt station verifies a signed
paperwork scan like a bag's, and the TUI's print action offers the next document. One real
demo site per module (the TUI tests use copies of the demo ledger); FIN A9999 only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from textual import events
from textual.widgets import Select
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain import payload
from coi.domain.scan import parse_scan
from coi.labels.symbols import qr_symbol
from coi.ledger.keys import generate
from coi.service import demo
from coi.service import labels as L
from coi.service.errors import Refused
from coi.service.label_signing import label_key_id
from tests.test_labels import decode, png_image, scanned, symbol_image, zpl_fields

START_MS = 1_780_000_000_000
_SEQ = iter(range(1, 10_000))
runner = CliRunner()


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("document") / "coi.db"


@pytest.fixture(scope="module")
def site(db_path: Path) -> demo.Site:
    return demo.create_site(str(db_path), clock=demo.MovableClock(START_MS))


def packaged(site: demo.Site) -> demo.Walk:
    """A product collected, labelled and packaged: its paperwork goes with the courier."""
    clock = site.svc.clock
    assert isinstance(clock, demo.MovableClock)
    w = demo.Walk(seq=next(_SEQ), bags=1)
    clock.set(clock.now_ms() + demo.D)
    demo.enrol(site, w)
    for n in range(3):
        demo.step(site, w, n, clock.now_ms())
    return w


def entry_data(site: demo.Site, index: int) -> dict[str, Any]:
    row = site.svc.ledger.store.row(index)
    assert row is not None
    return dict(json.loads(row.statement))


@pytest.mark.req("LABEL-CONTROL")
def test_cli_issues_a_signed_paperwork_label_that_scans_verify(
        site: demo.Site, db_path: Path, tmp_path: Path) -> None:
    w = packaged(site)
    pw = tmp_path / "alice.pw"
    pw.write_text(demo.demo_password("alice") + "\n")
    common = ["--db", str(db_path), "--as", "alice", "--password-file", str(pw)]
    out = tmp_path / "doc.png"
    r = runner.invoke(app, ["label", w.coi, "--item", "D00001", "-f", "png", "-o", str(out),
                            "--size", "4x2", "--signed", *common])
    assert r.exit_code == 0, r.stderr
    lid = f"L-{w.coi}-D00001-{len(site.svc.chain().product(w.coi).labels)}"  # type: ignore[union-attr]
    assert f"label {lid} printed" in r.stdout
    (qr,) = decode(png_image(out.read_bytes()), zxingcpp.BarcodeFormat.QRCode)
    text = scanned(qr)
    decoded = payload.decode(text[3:])
    assert text.startswith("]Q1COS1") and decoded.item == "D00001" and decoded.coi == w.coi
    assert decoded.key_id == label_key_id(site.people["alice"].public_key)
    # Recorded like any label, with no item: the paperwork is not a bag of the product.
    product = site.svc.chain().product(w.coi)
    assert product is not None and product.labels[lid].item is None
    issue = entry_data(site, product.labels[lid].events[0])
    assert issue["type"] == "label.issue" and "item" not in issue["data"]
    assert issue["data"]["template"] == "4x2 png 300dpi signed"
    (row,) = [x for x in L.reconciliation(site.svc, w.coi) if x["label"] == lid]
    assert (row["item"], row["code"], row["outcome"]) == ("D00001", "D00001", "outstanding")

    ok = runner.invoke(app, ["labels", "check", "--scan", text, "--coi", w.coi, *common])
    assert ok.exit_code == 0 and '"signature": "verified with the key that issued the label"' \
        in ok.stdout
    forged = "]Q1" + payload.sign(w.coi, "D00001", bytes.fromhex("DEADBEEF"), generate())
    bad = runner.invoke(app, ["labels", "check", "--scan", forged, "--coi", w.coi, *common])
    assert bad.exit_code == 1 and "not in this site's key registry" in bad.stderr
    plain = runner.invoke(app, ["labels", "check", "--scan", payload.encode(w.coi, "D00001"),
                                "--coi", w.coi, *common])
    assert plain.exit_code == 1 and "printed signed" in plain.stderr
    again = runner.invoke(app, ["label", w.coi, "--item", "D00001", "-f", "png", "-o",
                                str(tmp_path / "again.png"), "--size", "4x2", "--signed", *common])
    assert again.exit_code == 1 and f"already has label {lid}" in again.stderr
    applied = runner.invoke(app, ["labels", "apply", w.coi, lid, "--scan", text, *common])
    assert applied.exit_code == 0, applied.stderr
    assert [x["outcome"] for x in L.reconciliation(site.svc, w.coi) if x["label"] == lid] \
        == ["applied"]


def test_paperwork_reprint_supersedes_the_old_label(site: demo.Site, tmp_path: Path) -> None:
    w = packaged(site)
    alice = site.people["alice"]
    old, _ = L.issue_and_print(site.svc, alice, w.coi, "d00002", "zpl", "2x1", None, False,
                               tmp_path / "d.zpl")
    L.apply(site.svc, alice, w.coi, old, payload.encode(w.coi, "D00002"))
    new, _ = L.reprint(site.svc, alice, w.coi, old, "torn in the courier's pouch", "zpl", "2x1",
                       None, False, tmp_path / "d2.zpl")
    assert "MA,COI1" + w.coi + "D01002" in (tmp_path / "d2.zpl").read_text()
    rows = {x["label"]: x for x in L.reconciliation(site.svc, w.coi)}
    assert rows[new]["code"] == "D01002" and rows[new]["replaces"] == old
    with pytest.raises(Refused, match="voided and superseded") as exc:
        L.check_scan(site.svc, payload.encode(w.coi, "D00002"), expect_coi=w.coi)
    assert exc.value.recorded_index is not None
    L.apply(site.svc, alice, w.coi, new, payload.encode(w.coi, "D01002"))


def test_only_documents_are_labelled_beside_the_products_items(site: demo.Site,
                                                                tmp_path: Path) -> None:
    w = packaged(site)
    size = site.svc.ledger.store.head().size  # type: ignore[union-attr]
    for item, says in (("W00001", "does not belong"), ("D00000", "numbered 1 to 999"),
                       ("D01000", "numbered 1 to 999")):
        with pytest.raises(Refused, match=says):
            L.issue_and_print(site.svc, site.people["alice"], w.coi, item, "zpl", "2x1", None,
                              False, tmp_path / f"{item}.zpl")
    assert site.svc.ledger.store.head().size == size  # type: ignore[union-attr]


@pytest.mark.xdist_group("tui")
@pytest.mark.req("DEVICE-CHECKS")
async def test_receipt_station_verifies_a_signed_paperwork_label(db: Path,
                                                                 tmp_path: Path) -> None:
    from textual.widgets import Button

    from coi.tui.screens.alert import AlertScreen
    from coi.tui.screens.station import StationScreen
    from coi.tui.widgets.scan_input import ScanInput
    from tests.tui_support import last_entry, make_app, settle

    shipped = "CHA99992600000B"  # receipt at the treatment centre is next
    app = make_app(db, user="nina", station="receipt_at_treatment")
    svc = app.svc
    maya = svc.ledger.unlock("maya", demo.demo_password("maya"))
    out = tmp_path / "paperwork.png"
    L.issue_and_print(svc, maya, shipped, "D00001", "png", "4x2", None, False, out, signed=True)
    (qr,) = decode(png_image(out.read_bytes()), zxingcpp.BarcodeFormat.QRCode)
    forged = "]Q1" + payload.sign(shipped, "D00001", bytes.fromhex("DEADBEEF"), generate())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))
        screen = app.screen
        assert isinstance(screen, StationScreen)

        async def scan(text: str) -> None:
            screen.query_one(ScanInput).post_message(events.Paste(text + "\r"))
            await pilot.pause()

        await scan(payload.encode(shipped, "F00001"))
        await settle(pilot, lambda: screen.phase == "second")
        await scan(forged)
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        assert "not in this site's key registry" in app.screen.reason  # type: ignore[attr-defined]
        assert last_entry(svc)["type"] == "system.scan_refused"
        alert = app.screen
        ack = alert.query_one("#alert-ack", Button)
        await settle(pilot, lambda: not ack.disabled)
        ack.press()
        await settle(pilot, lambda: app.screen is screen and screen.phase == "scan")
        await scan(payload.encode(shipped, "F00001"))
        await settle(pilot, lambda: screen.phase == "second")
        await scan(scanned(qr))
        await settle(pilot, lambda: screen.phase == "fields")
        assert screen.paperwork == "D00001"


@pytest.mark.xdist_group("tui")
async def test_tui_print_action_prints_the_paperwork_label_signed(db: Path) -> None:
    from coi.tui.screens.print_label import PrintLabelScreen
    from tests.test_label_printer import Printer
    from tests.tui_support import make_app, settle

    shipped = "CHA99992600000B"
    printer = Printer()
    app = make_app(db, user="maya", printer=f"127.0.0.1:{printer.port}")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = PrintLabelScreen(shipped, f"127.0.0.1:{printer.port}")
        await app.push_screen(screen)
        select = screen.query_one("#print-item", Select)
        await settle(pilot, lambda: select.value == "D00001")  # every bag already labelled
        assert not screen.query_one("#print-final").display  # not a final bag
        screen.query_one("#print-password").value = demo.demo_password("maya")  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.result is not None)
    printer.thread.join(5)
    (qr,) = [f for f in zpl_fields(printer.received.decode("ascii")) if f[2].startswith("^BQ")]
    (bar,) = decode(symbol_image(qr_symbol(qr[4][3:]), int(qr[2].split(",")[2])),
                    zxingcpp.BarcodeFormat.QRCode)
    assert bar.text.startswith(f"COS1{shipped}D00001")
    (row,) = [r for r in L.reconciliation(app.svc, shipped) if r["label"] == screen.result]
    assert (row["item"], row["code"], row["printed"]) == ("D00001", "D00001", True)
    assert L.trust_problem(app.svc, parse_scan(scanned(bar))) is None
