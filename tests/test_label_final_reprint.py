"""Reprinting a final-product label: the replacement is final again, with the expiry, product
name, ISBT 128 product code and storage the ledger recorded on the label's entry (never the
patient, whose name and date of birth come from the PHI store at each print). FIN A9999 only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coi.domain import isbt
from coi.labels.render import plan
from coi.service import demo
from coi.service import labels as L
from coi.service.errors import ConfigError, Refused
from coi.service.label_files import plan_label
from coi.service.label_final import EnrolmentPatients, FinalLabel, final_record, recorded_final
from tests.test_label_final import CODE, FINAL, START_MS, check_symbols, cryopreserved
from tests.test_labels import png_image

ANN = {"name": "Ann Lee", "date_of_birth": "1970-01-31"}
RECORD = "final 2027-05-28 S1234100 <= -150 C|CD19 CAR-T CELLS"


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("final-reprint") / "coi.db"


@pytest.fixture(scope="module")
def site(db_path: Path) -> demo.Site:
    return demo.create_site(str(db_path), clock=demo.MovableClock(START_MS))


def statements(site: demo.Site, first: int) -> list[bytes]:
    rows = [site.svc.ledger.store.row(i) for i in range(first, site.svc.ledger.store.count_rows())]
    return [r.statement for r in rows if r is not None]


def printed_lines(site: demo.Site, coi: str, n: int, generation: int) -> list[str]:
    planned = plan_label(site.svc, site.svc.chain().product(coi),  # type: ignore[arg-type]
                         "F00001", n=n, generation=generation, fmt="png", size="4x2", dpi=300,
                         with_isbt=True, product_code=CODE, final=FINAL,
                         patients=EnrolmentPatients(site.svc))
    return [t.text for t in plan(planned.content, "4x2", 300).texts][2:]


@pytest.mark.req("LABEL-CONTROL")
def test_reprint_of_a_final_label_is_final_with_the_recorded_details(
        site: demo.Site, tmp_path: Path) -> None:
    w = cryopreserved(site, ANN)
    maya = site.people["maya"]
    before = site.svc.ledger.store.count_rows()
    lid, _ = L.issue_and_print(site.svc, maya, w.coi, "F00001", "png", "4x2", None, True,
                               tmp_path / "a.png", product_code=CODE, final=FINAL)
    # No size, no --isbt, no final details given: the reprint takes them from the record.
    new, out = L.reprint(site.svc, maya, w.coi, lid, "torn at the seal", "png",
                         out_path=tmp_path / "b.png")
    assert new != lid and new.endswith("-2") and out is not None
    check_symbols([png_image(out.read_bytes())], w, "F01001")
    assert printed_lines(site, w.coi, 2, 1) == [
        isbt.coi_id_from_text(w.coi).printed(),
        "ITEM F00001  BAG 1 OF 2",
        "FOR AUTOLOGOUS USE ONLY",
        "CD19 CAR-T CELLS  S1234 1 00",
        "EXP 2027-05-28  STORE <= -150 C",
        "ANN LEE",
        "DOB 1970-01-31  LABEL 2 REPRINT 1",
    ]
    product = site.svc.chain().product(w.coi)
    assert product is not None and product.labels[lid].status == "voided"
    rows = statements(site, before)
    issue, reprint = (r for r in rows if b'"template"' in r)
    for row in (issue, reprint):
        assert f"4x2 png 300dpi isbt {RECORD}".encode() in row
    assert b'"replaces"' in reprint and lid.encode() in reprint
    for row in rows:  # the patient is never in the ledger
        assert b"ann lee" not in row.lower() and b"1970-01-31" not in row


def test_reprint_after_erasure_is_refused_and_records_nothing(
        site: demo.Site, tmp_path: Path) -> None:
    w = cryopreserved(site, ANN)
    maya = site.people["maya"]
    lid, _ = L.issue_and_print(site.svc, maya, w.coi, "F00001", "png", "4x2", None, True,
                               tmp_path / "a.png", product_code=CODE, final=FINAL)
    site.svc.erase_patient(site.people["admin"], w.coi, "Request 31", witness=site.people["grace"])
    size = site.svc.ledger.store.count_rows()
    with pytest.raises(Refused, match="were erased"):
        L.reprint(site.svc, maya, w.coi, lid, "torn", "png", out_path=tmp_path / "b.png")
    assert site.svc.ledger.store.count_rows() == size
    assert not (tmp_path / "b.png").exists()
    product = site.svc.chain().product(w.coi)
    assert product is not None and product.labels[lid].status == "printed"


def test_final_reprint_refusals_record_nothing(site: demo.Site, tmp_path: Path) -> None:
    w = cryopreserved(site, ANN)
    maya = site.people["maya"]
    size = site.svc.ledger.store.count_rows()
    too_long = FinalLabel("X" * 21, "2027-05-28", "Y" * 10)  # each fits its line
    with pytest.raises(ConfigError, match="shorten the product name"):
        L.issue_and_print(site.svc, maya, w.coi, "F00001", "zpl", "4x2", None, True,
                          tmp_path / "a.zpl", product_code=CODE, final=too_long, signed=True)
    with pytest.raises(ConfigError, match="'|'"):
        L.issue_and_print(site.svc, maya, w.coi, "F00001", "zpl", "4x2", None, True,
                          tmp_path / "a.zpl", product_code=CODE,
                          final=FinalLabel("CAR-T", "2027-05-28", "-150|C"))
    assert site.svc.ledger.store.count_rows() == size
    lid, _ = L.issue_and_print(site.svc, maya, w.coi, "F00001", "png", "4x2", None, True,
                               tmp_path / "a.png", product_code=CODE, final=FINAL)
    size = site.svc.ledger.store.count_rows()
    cases: list[tuple[dict[str, object], str]] = [
        ({"size": "2x1"}, "4x2 ISBT 128 label"),
        ({"product_code": L.parse_product_code("S9999100")}, "same"),
    ]
    for kw, words in cases:
        with pytest.raises(ConfigError, match=words):
            L.reprint(site.svc, maya, w.coi, lid, "torn", "png",
                      out_path=tmp_path / "b.png", **kw)  # type: ignore[arg-type]
    assert site.svc.ledger.store.count_rows() == size and not (tmp_path / "b.png").exists()


def test_cli_reprints_a_final_label_final(site: demo.Site, db_path: Path,
                                         tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from coi.cli.main import app

    w = cryopreserved(site, ANN)
    lid, _ = L.issue_and_print(site.svc, site.people["maya"], w.coi, "F00002", "png", "4x2",
                               None, True, tmp_path / "a.png", product_code=CODE, final=FINAL)
    pw = tmp_path / "maya.pw"
    pw.write_text(demo.demo_password("maya") + "\n")
    out = tmp_path / "b.png"
    r = CliRunner().invoke(app, ["labels", "reprint", w.coi, lid, "--grounds", "smudged",
                                 "-f", "png", "-o", str(out), "--db", str(db_path),
                                 "--as", "maya", "--password-file", str(pw)])
    assert r.exit_code == 0, r.stderr
    check_symbols([png_image(out.read_bytes())], w, "F01002")
    # The reprint's own entry carries the record, so its reprint is final too.
    again = next(lab.id for lab in site.svc.chain().product(w.coi).labels.values()  # type: ignore[union-attr]
                 if lab.replaces == lid)
    _, third = L.reprint(site.svc, site.people["maya"], w.coi, again, "wet", "png",
                         out_path=tmp_path / "c.png")
    assert third is not None
    check_symbols([png_image(third.read_bytes())], w, "F02002")


_TEXT = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=14)


@given(name=_TEXT, storage=_TEXT.filter(lambda s: "|" not in s),
       day=st.dates(min_value=__import__("datetime").date(2000, 1, 1)))
def test_the_record_reads_back(name: str, storage: str, day: object) -> None:
    final = FinalLabel(name, str(day), storage).checked()
    text = "4x2 zpl 203dpi isbt signed " + final_record(final, CODE)
    assert recorded_final(text) == (final, "S1234100")
    assert recorded_final("4x2 zpl 203dpi isbt signed") is None
