"""The federation demo scans each bag at the next organisation with exactly what its label
carries: the payload read back from the printed label (QR decoded with zxing-cpp), signed
(``COS1``) or plain (``COI1``). Its labels are printed signed, and each receiver records and
verifies the partner's key."""

from __future__ import annotations

from pathlib import Path

import pytest
import zxingcpp

from coi.domain import payload
from coi.domain.handoff_import import HANDOFF_RECEIVED
from coi.domain.scan import LabelScan
from coi.ledger.entry import b64, read_statement
from coi.service import demo
from coi.service import labels as L
from coi.service.chain import CoiService
from coi.service.demo_federation import ORGS, Federation, build_federation, printed_payload
from coi.service.errors import Refused
from coi.service.label_codes import labels_of
from coi.service.label_signing import issued, label_key_id
from tests.test_labels import decode, png_image
from tests.tui_support import last_entry


def test_the_demo_scans_the_payload_its_label_was_printed_with(tmp_path: Path) -> None:
    site = demo.create_site(str(tmp_path / "coi.db"), clock=demo.MovableClock(1_780_000_000_000),
                            staff=demo.DEMO_STAFF[:2])
    printed = []
    for seq, signed in ((1, True), (2, False)):
        w = demo.Walk(seq=seq, bags=1)
        demo.enrol(site, w)
        demo.step(site, w, 0, site.svc.clock.now_ms())
        out = tmp_path / f"{seq}.png"
        L.issue_and_print(site.svc, site.people["alice"], w.coi, "C00001", "png", "4x2", None,
                          False, out, signed=signed)
        (qr,) = decode(png_image(out.read_bytes()), zxingcpp.BarcodeFormat.QRCode)
        assert printed_payload(site, w.coi, "C00001") == qr.text
        printed.append(qr.text[:4])
    assert printed == ["COS1", "COI1"]


# ------------------------------------------------------------------ the demo's signed labels
@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory.mktemp("fed") / "demo")


def _open(fed: Federation, org: str) -> CoiService:
    return CoiService.open(str(fed.dir / fed.dbs[org]), None)


def qr_payload(zpl: Path) -> str:
    """The payload in the QR code of a ZPL label file (the ``^FDMA,`` field of its ``^BQ``)."""
    (field,) = [part for part in zpl.read_text().split("^FD") if part.startswith("MA,")]
    return field.removeprefix("MA,").split("^FS")[0]


def _printed(fed: Federation, org: str, coi: str, item: str) -> str:
    """The payload of the label file the demo printed at ``org`` for ``item``."""
    return qr_payload(fed.dir / org / "labels" / f"{coi}-{item}.zpl")


def _issuers(svc: CoiService, coi: str) -> dict[str, dict[str, object]]:
    (rec,) = [read_statement(r.statement).data for r in svc.ledger.store.rows_for_subject(coi)
              if r.type == HANDOFF_RECEIVED]
    issuers = rec["label_issuers"]
    assert isinstance(issuers, dict)
    return issuers


def test_the_demo_prints_signed_and_each_receiver_records_the_issuers_key(
        fed: Federation) -> None:
    """The collection bag's label (collection centre) and the final bags' (manufacturer) are
    printed signed; the receipt at manufacturing and at the treatment centre record who issued
    them, signed, with the issuer's registered key at its own organisation."""
    coi = fed.finished
    collect, make, treat = (_open(fed, o.key) for o in ORGS)
    own = {}  # label -> its issue facts where it was printed
    for svc in (collect, make):
        product = svc.chain().product(coi)
        assert product is not None
        for label in product.labels.values():
            facts = issued(svc, label)
            if facts.partner is None:
                own[label.id] = facts
    kinds = sorted(lab.split("-")[2][0] for lab in own)
    assert kinds == ["C", "F", "F"]  # the collection bag, the two final bags
    assert all(f.signed for f in own.values())
    assert {f.user for f in own.values()} == {"alice", "maya"}
    at_make, at_treat = _issuers(make, coi), _issuers(treat, coi)
    assert set(at_make) == {lab for lab in own if lab.split("-")[2][0] == "C"}
    assert set(at_treat) == set(own)
    for label, facts in own.items():
        origin = (ORGS[0] if facts.user == "alice" else ORGS[1]).origin
        want = {"key": b64(facts.key), "origin": origin, "signed": True, "user": facts.user}
        assert at_treat[label] == want  # the collection label through the manufacturer's record
        if label in at_make:
            assert at_make[label] == want
    for svc in (collect, make, treat):  # every scan of the demo (apply, receipts, bedside) passed
        assert not list(svc.ledger.store.rows_of_types(["system.scan_refused"]))
        svc.ledger.engine.dispose()


def test_the_treatment_centre_verifies_the_printed_signed_label_and_refuses_it_plain(
        fed: Federation) -> None:
    """What the demo scanned at the receipts and at the bedside: the COS1 payload printed on the
    label, verified against the partner's recorded key. The same label scanned plain (COI1) is
    refused at the treatment centre and the refusal recorded."""
    treat, make = _open(fed, "treatment-centre"), _open(fed, "manufacturer")
    stopped = next(c for c, where in fed.products.items()
                   if where == "treatment-centre: lymphodepletion")
    for coi in (fed.finished, stopped):
        raw = _printed(fed, "manufacturer", coi, "F00001")
        product = make.chain().product(coi)
        assert product is not None
        maya = issued(make, labels_of(product, "F00001")[-1]).key
        assert payload.decode(raw).key_id == label_key_id(maya)  # COS1, by the issuer's key
        scan = L.check_scan(treat, raw, expect_coi=coi, expect_item="F00001", station="t")
        assert isinstance(scan, LabelScan) and scan.label.signed
    collected = _printed(fed, "collection-centre", fed.finished, "C00001")
    assert collected.startswith("COS1")
    L.check_scan(make, collected, expect_coi=fed.finished, station="t")  # verified at receipt
    plain = payload.encode(stopped, "F00001")
    with pytest.raises(Refused, match="was printed signed by partner manufacturer, but this "
                                      "scan carries no signature") as refused:
        L.check_scan(treat, plain, expect_coi=stopped, expect_item="F00001",
                     station="bedside_verification", by="nina")
    entry = last_entry(treat)
    assert refused.value.recorded_index == entry["index"]
    assert entry["type"] == "system.scan_refused" and entry["subject"] == stopped
    treat.ledger.engine.dispose()
    make.ledger.engine.dispose()

