"""Final-product labels: FOR AUTOLOGOUS USE ONLY, product name and ISBT 128 product code, expiry,
storage, the patient's name and date of birth (from a patient source, never the ledger), CoI
with K, DIN with K, bag number. Rendered as PNG and PDF and decoded back with zxing-cpp; the
printed lines are read from the same layout every format draws. FIN A9999 only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from coi.domain import isbt, payload
from coi.domain.scan import CompoundScan, parse_scan
from coi.labels.render import plan
from coi.service import demo
from coi.service import labels as L
from coi.service.errors import ConfigError, Refused
from coi.service.label_files import plan_label
from coi.service.label_final import EnrolmentPatients, PatientOnLabel
from tests.test_labels import decode, png_image, rasterise_pdf, scanned

START_MS = 1_780_000_000_000
_SEQ = iter(range(1, 10_000))
CODE = L.parse_product_code("S1234100")
FINAL = L.FinalLabel("CD19 CAR-T CELLS", "2027-05-28")


class Patients:
    """A patient source as the PHI store will be: the name and date of birth by product."""

    def __init__(self, known: dict[str, PatientOnLabel]) -> None:
        self.known = known

    def label_patient(self, coi: str) -> PatientOnLabel | None:
        return self.known.get(coi)


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("final") / "coi.db"


@pytest.fixture(scope="module")
def site(db_path: Path) -> demo.Site:
    return demo.create_site(str(db_path), clock=demo.MovableClock(START_MS))


def cryopreserved(site: demo.Site, patient: dict[str, str] | None = None) -> demo.Walk:
    clock = site.svc.clock
    assert isinstance(clock, demo.MovableClock)
    w = demo.Walk(seq=next(_SEQ), bags=2, label_bags=False)
    clock.set(clock.now_ms() + demo.D)
    demo.enrol(site, w, patient=patient)
    t0 = clock.now_ms()
    for n, (name, offset, *_rest) in enumerate(demo.PLAN):
        clock.set(t0 + offset)
        demo.step(site, w, n, clock.now_ms())
        if name == "cryopreservation":
            return w
    raise AssertionError


def check_symbols(images: list[Image.Image], w: demo.Walk, code: str) -> None:
    qrs = [b for im in images for b in decode(im, zxingcpp.BarcodeFormat.QRCode)]
    dms = [b for im in images for b in decode(im, zxingcpp.BarcodeFormat.DataMatrix)]
    assert [b.text for b in qrs] == [payload.encode(w.coi, code)]
    (dm,) = dms
    scan = parse_scan(scanned(dm))
    assert isinstance(scan, CompoundScan)
    texts = {s.barcode() for s in scan.structures}  # CoI, DIN, product code
    assert texts == {f"&/{w.coi}", isbt.Din(w.din[:5], w.din[5:7], w.din[7:]).barcode(),
                     CODE.barcode()}


@pytest.mark.req("LABEL-CONTROL")
def test_final_product_label_png_and_pdf(site: demo.Site, tmp_path: Path) -> None:
    w = cryopreserved(site)
    maya = site.people["maya"]
    patients = Patients({w.coi: PatientOnLabel("José Müller-Lüdenscheidt", "1968-03-14")})
    png = tmp_path / "final.png"
    lid, _ = L.issue_and_print(site.svc, maya, w.coi, "F00002", "png", "4x2", None, True, png,
                               product_code=CODE, final=FINAL, patients=patients)
    check_symbols([png_image(png.read_bytes())], w, "F00002")
    planned = plan_label(site.svc, site.svc.chain().product(w.coi),  # type: ignore[arg-type]
                           "F00002", n=1, generation=0, fmt="png", size="4x2", dpi=300,
                           with_isbt=True, product_code=CODE, final=FINAL, patients=patients)
    lines = [t.text for t in plan(planned.content, "4x2", 300).texts]
    din = isbt.Din(w.din[:5], w.din[5:7], w.din[7:])
    assert lines[:2] == [f"{din.fin} {din.year} {din.sequence}", din.check]  # DIN and its K
    assert lines[2:] == [
        isbt.coi_id_from_text(w.coi).printed(),
        "ITEM F00002  BAG 2 OF 2",
        "FOR AUTOLOGOUS USE ONLY",
        "CD19 CAR-T CELLS  S1234 1 00",
        "EXP 2027-05-28  STORE <= -150 C",
        "JOSE MULLER-LUDENSCHEIDT",
        "DOB 1968-03-14  LABEL 1",
    ]
    assert planned.content.isbt is not None and planned.content.isbt.din_text.replace(
        " ", "") == w.din
    # The same label on a PDF sheet, rasterised at 300 dpi: both symbols decode.
    pdf = tmp_path / "final.pdf"
    L.void(site.svc, maya, w.coi, lid, "PDF copy for the batch record instead")
    L.reprint(site.svc, maya, w.coi, lid, "PDF copy", "pdf", "4x2", None, True, pdf,
              product_code=CODE, final=FINAL, patients=patients)
    check_symbols(rasterise_pdf(pdf.read_bytes()), w, "F01002")


def test_final_label_refusals_record_nothing(site: demo.Site, tmp_path: Path) -> None:
    w = cryopreserved(site)
    maya = site.people["maya"]
    nobody = Patients({})
    someone = Patients({w.coi: PatientOnLabel("Ann Lee", "1970-02-30")})
    size = site.svc.ledger.store.count_rows()
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"patients": nobody}, Refused, "no patient name and date of birth"),
        ({"patients": someone}, ConfigError, "not a date of the calendar"),
        ({"item": "C00001"}, ConfigError, "final product bag"),
        ({"size": "2x1"}, ConfigError, "4x2 ISBT 128 label"),
        ({"code": None}, ConfigError, "product code"),
        ({"final": L.FinalLabel("CAR-T \u4e2d", "2027-01-01")}, ConfigError, "ASCII"),
        ({"final": L.FinalLabel("CAR-T", "28.05.2027")}, ConfigError, "YYYY-MM-DD"),
    ]
    for kw, error, words in cases:
        args: dict[str, object] = {"patients": Patients({w.coi: PatientOnLabel("A B",
                                                                                 "1970-01-01")}),
                                   "item": "F00001", "size": "4x2", "code": CODE,
                                   "final": FINAL, **kw}
        with pytest.raises(error, match=words):
            L.issue_and_print(site.svc, maya, w.coi, str(args["item"]), "png",
                              str(args["size"]), None, True, tmp_path / "x.png",
                              product_code=args["code"],  # type: ignore[arg-type]
                              final=args["final"],  # type: ignore[arg-type]
                              patients=args["patients"])  # type: ignore[arg-type]
    assert site.svc.ledger.store.count_rows() == size and not list(tmp_path.iterdir())


def test_the_patient_on_the_label_comes_from_the_phi_store(site: demo.Site) -> None:
    bare, _ = site.svc.enrol(actor=site.people["alice"], patient={"patient_id": "MRN776"},
                             treatment_site="A9999-HEM", manufacturing_slot="S-776")
    assert EnrolmentPatients(site.svc).label_patient(bare) is None  # none given: none printed
    coi, _ = site.svc.enrol(actor=site.people["alice"],
                            patient={"patient_id": "MRN777", "name": "Ann Lee",
                                     "date_of_birth": "1970-01-31"},
                            treatment_site="A9999-HEM", manufacturing_slot="S-777")
    assert EnrolmentPatients(site.svc).label_patient(coi) == PatientOnLabel("Ann Lee",
                                                                            "1970-01-31")


def test_cli_prints_a_final_product_label(site: demo.Site, db_path: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from coi.cli.main import app

    w = cryopreserved(site, {"name": "Ann Lee", "date_of_birth": "1970-01-31"})
    pw = tmp_path / "maya.pw"
    pw.write_text(demo.demo_password("maya") + "\n")
    out = tmp_path / "f.png"
    common = ["--db", str(db_path), "--as", "maya", "--password-file", str(pw)]
    r = CliRunner().invoke(app, ["label", w.coi, "--item", "F00001", "-f", "png", "-o", str(out),
                                 "--size", "4x2", "--isbt", "--product-code", "S1234100",
                                 "--final", "--expiry", "2027-05-28", "--product-name",
                                 "CD19 CAR-T CELLS", *common])
    assert r.exit_code == 0, r.stderr
    check_symbols([png_image(out.read_bytes())], w, "F00001")
    r = CliRunner().invoke(app, ["label", w.coi, "--item", "F00002", "-f", "png", "-o",
                                 str(tmp_path / "g.png"), "--size", "4x2", "--isbt",
                                 "--product-code", "S1234100", "--final", *common])
    assert r.exit_code == 2 and "--expiry" in r.stderr
