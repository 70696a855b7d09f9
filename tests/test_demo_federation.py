"""The federation demo scans each bag at the treatment centre with exactly what its label
carries: the payload read back from the printed label (QR decoded with zxing-cpp), signed
(``COS1``) or plain (``COI1``)."""

from __future__ import annotations

from pathlib import Path

import zxingcpp

from coi.service import demo
from coi.service import labels as L
from coi.service.demo_federation import printed_payload
from tests.test_labels import decode, png_image


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
