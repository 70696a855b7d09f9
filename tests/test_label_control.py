"""Label control over the ledger: issue, print, apply by scan, void, reprint, scan checks,
reconciliation, and the release gate. One real demo site per module (key derivation is slow),
a fresh product per test. FIN A9999 only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coi.domain import payload
from coi.domain.scan import CompoundScan, DinScan, LabelScan
from coi.service import demo
from coi.service import labels as L
from coi.service.errors import ConfigError, Refused

START_MS = 1_780_000_000_000


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> demo.Site:
    d = tmp_path_factory.mktemp("labels")
    return demo.create_site(str(d / "coi.db"), clock=demo.MovableClock(START_MS))


def _clock(site: demo.Site) -> demo.MovableClock:
    clock = site.svc.clock
    assert isinstance(clock, demo.MovableClock)
    return clock


_SEQ = iter(range(1, 10_000))


def walk_to(site: demo.Site, last_step: str = "apheresis_collection") -> demo.Walk:
    """A new product walked along the demo plan up to and including ``last_step``; its final
    bags are not labelled (the tests do that)."""
    clock = _clock(site)
    w = demo.Walk(seq=next(_SEQ), bags=2, label_bags=False)
    clock.set(clock.now_ms() + demo.D)
    demo.enrol(site, w)
    t0 = clock.now_ms()
    for n, (name, offset, *_rest) in enumerate(demo.PLAN):
        clock.set(t0 + offset)
        demo.step(site, w, n, clock.now_ms())
        if name == last_step:
            break
    return w


def scan_of(coi: str, code: str) -> str:
    """What a scanner types for a coi label with this item field (AIM prefix, Enter)."""
    return f"]Q1{payload.encode(coi, code)}\r"


def refusals(site: demo.Site, kind: str = "system.scan_refused") -> list[int]:
    return [r.index for r in site.svc.ledger.store.rows() if r.type == kind]


def test_label_codes_round_trip_and_the_first_is_the_item_id() -> None:
    assert L.label_code("F00001", 0) == "F00001"
    assert L.label_code("F00001", 1) == "F01001"
    assert L.label_code("C00003", 42) == "C42003"
    assert L.parse_label_code("f01001") == L.LabelCode("F00001", 1)
    assert L.parse_label_code("F00000") is None
    assert L.parse_label_code("FX0001") is None
    with pytest.raises(Refused, match="at most 100"):
        L.label_code("F00001", 100)
    with pytest.raises(Refused, match="numbered 1 to 999"):
        L.label_code("F01000", 0)
    assert L.label_id("CHA999926000001", "F00001", 3) == "L-CHA999926000001-F00001-3"


@pytest.mark.req("LABEL-CONTROL")
def test_issue_print_apply_by_scan(site: demo.Site, tmp_path: Path) -> None:
    w = walk_to(site)
    alice = site.people["alice"]
    out = tmp_path / "c.png"
    lid, path = L.issue_and_print(site.svc, alice, w.coi, "c00001", "png", "2x1", None, False,
                                  out)
    assert lid == f"L-{w.coi}-C00001-1" and path == out and out.read_bytes()[:4] == b"\x89PNG"
    product = site.svc.chain().product(w.coi)
    assert product is not None and product.labels[lid].status == "printed"
    assert [r["outcome"] for r in L.reconciliation(site.svc, w.coi)] == ["outstanding"]
    assert L.outstanding(site.svc, w.coi) == [lid]

    # A scan of something else does not confirm the application; each refusal is recorded.
    before = len(refusals(site))
    other = walk_to(site)
    for wrong in (scan_of(other.coi, "C00001"), scan_of(w.coi, "C01001"), "garbage",
                  f"&/{w.coi}"):
        with pytest.raises(Refused) as exc:
            L.apply(site.svc, alice, w.coi, lid, wrong)
        assert exc.value.recorded_index is not None
    assert len(refusals(site)) == before + 4
    assert site.svc.chain().product(w.coi).labels[lid].status == "printed"  # type: ignore[union-attr]

    # Case and AIM prefix do not matter; the right label confirms it.
    idx = L.apply(site.svc, alice, w.coi, lid, scan_of(w.coi, "C00001").lower())
    rows = L.reconciliation(site.svc, w.coi)
    assert rows[0]["outcome"] == "applied" and idx in rows[0]["events"]
    with pytest.raises(Refused, match="already has label"):
        L.issue_and_print(site.svc, alice, w.coi, "C00001", "png", "2x1", None, False,
                          tmp_path / "again.png")


@pytest.mark.req("AUDIT-REFUSALS")
def test_void_then_scan_is_refused_and_recorded(site: demo.Site, tmp_path: Path) -> None:
    w = walk_to(site)
    alice = site.people["alice"]
    lid, _ = L.issue_and_print(site.svc, alice, w.coi, "C00001", "svg", "2x1", None, False,
                               tmp_path / "c.svg")
    assert isinstance(L.check_scan(site.svc, scan_of(w.coi, "C00001"), w.coi), LabelScan)
    L.void(site.svc, alice, w.coi, lid, "smudged")
    before = len(refusals(site))
    with pytest.raises(Refused, match="was voided") as exc:
        L.check_scan(site.svc, scan_of(w.coi, "C00001"), w.coi, "C00001", station="s1",
                     by="alice")
    assert len(refusals(site)) == before + 1
    entry = site.svc.ledger.store.row(exc.value.recorded_index or -1)
    assert entry is not None and b"smudged" not in (entry.statement or b"")
    assert b"was voided" in (entry.statement or b"") and b"s1" in (entry.statement or b"")
    rows = L.reconciliation(site.svc, w.coi)
    assert rows[0]["outcome"] == "voided" and rows[0]["grounds"] == "smudged"
    # A voided label cannot be applied or voided again.
    with pytest.raises(Refused):
        L.apply(site.svc, alice, w.coi, lid, scan_of(w.coi, "C00001"))
    with pytest.raises(Refused, match="voided"):
        L.void(site.svc, alice, w.coi, lid, "again")
    with pytest.raises(ConfigError, match="grounds"):
        L.void(site.svc, alice, w.coi, lid, "  \n ")


@pytest.mark.req("LABEL-CONTROL")
def test_reprint_voids_the_old_label_and_refuses_its_scan(site: demo.Site,
                                                          tmp_path: Path) -> None:
    w = walk_to(site)
    alice = site.people["alice"]
    old, _ = L.issue_and_print(site.svc, alice, w.coi, "C00001", "zpl", "2x1", None, False,
                               tmp_path / "old.zpl")
    new, path = L.reprint(site.svc, alice, w.coi, old, "torn during application", "zpl",
                          "2x1", None, False, tmp_path / "new.zpl")
    assert new == f"L-{w.coi}-C00001-2"
    assert f"MA,{payload.encode(w.coi, 'C01001')}" in path.read_text()
    product = site.svc.chain().product(w.coi)
    assert product is not None
    assert product.labels[old].status == "voided"
    assert product.labels[new].status == "printed" and product.labels[new].replaces == old

    before = len(refusals(site))
    with pytest.raises(Refused, match=f"superseded by {new}") as exc:
        L.apply(site.svc, alice, w.coi, new, scan_of(w.coi, "C00001"))
    assert exc.value.recorded_index in refusals(site) and len(refusals(site)) == before + 1
    L.apply(site.svc, alice, w.coi, new, scan_of(w.coi, "C01001"))
    # A code for a generation never printed is refused: not printed by this coi.
    with pytest.raises(Refused, match="not printed by this site"):
        L.check_scan(site.svc, scan_of(w.coi, "C02001"), w.coi)

    rows = L.reconciliation(site.svc, w.coi)
    assert [(r["label"], r["code"], r["outcome"], r["replaced_by"], r["replaces"])
            for r in rows] == [(old, "C00001", "voided", new, None),
                               (new, "C01001", "applied", None, old)]
    assert rows[0]["grounds"] == "torn during application"
    with pytest.raises(Refused, match="already reprinted"):
        L.reprint(site.svc, alice, w.coi, old, "again", "zpl", "2x1", None, False,
                  tmp_path / "third.zpl")


@pytest.mark.req("DEVICE-CHECKS")
def test_isbt_scans_are_accepted_only_for_the_right_product(site: demo.Site) -> None:
    from coi.domain import isbt

    w = walk_to(site)
    din = L.product_din(site.svc, site.svc.chain().product(w.coi))  # type: ignore[arg-type]
    assert din.text == w.din
    assert isinstance(L.check_scan(site.svc, din.barcode(), w.coi), DinScan)
    compound = isbt.compound([isbt.coi_id_from_text(w.coi), din,
                              isbt.ProductCode("S1234", "1", "00")])
    assert isinstance(L.check_scan(site.svc, "]d1" + compound, w.coi), CompoundScan)
    other = isbt.Din("A9999", din.year, "999999")
    for raw, why in ((other.barcode(), "not"), (f"&/{w.coi[:-1]}Z", "not"),
                     ("=<S1234100", "does not say which product"),
                     (din.barcode(), "an ISBT 128 code is checked against")):
        expect = None if why.startswith("an ISBT") else w.coi
        with pytest.raises(Refused, match=why):
            L.check_scan(site.svc, raw, expect)
    with pytest.raises(Refused, match="names the product, not the bag"):
        L.check_scan(site.svc, din.barcode(), w.coi, "C00001")


def test_issue_refuses_bad_arguments_before_recording_anything(site: demo.Site,
                                                              tmp_path: Path) -> None:
    w = walk_to(site)
    alice = site.people["alice"]
    size_before = site.svc.ledger.store.count_rows()
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"keep")
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"fmt": "gif"}, ConfigError, "format"),
        ({"size": "3x3"}, ConfigError, "size"),
        ({"dpi": 600}, ConfigError, "dpi"),
        ({"fmt": "pdf", "dpi": 203}, ConfigError, "PDF"),
        ({"out": existing}, ConfigError, "never overwritten"),
        ({"out": tmp_path / "missing" / "x.png"}, ConfigError, "does not exist"),
        ({"out": tmp_path / ("y" * 300)}, ConfigError, "cannot write"),
        ({"item": "F00009"}, Refused, "does not belong"),
    ]
    for kw, error, words in cases:
        args: dict[str, object] = {"fmt": "png", "size": "2x1", "dpi": None,
                                   "out": tmp_path / "x.png", "item": "C00001", **kw}
        with pytest.raises(error, match=words):
            L.issue_and_print(site.svc, alice, w.coi, str(args["item"]), str(args["fmt"]),
                              str(args["size"]), args["dpi"], False,  # type: ignore[arg-type]
                              Path(str(args["out"])))
    assert existing.read_bytes() == b"keep"
    assert site.svc.ledger.store.count_rows() == size_before
    assert list(tmp_path.iterdir()) == [existing]


def test_a_label_whose_file_cannot_be_written_is_voided(site: demo.Site, tmp_path: Path) -> None:
    w = walk_to(site)
    # A legal name, but the temporary file beside it (".<name>.<pid>.tmp") is too long.
    out = tmp_path / ("x" * 246 + ".png")
    with pytest.raises(ConfigError, match="was voided"):
        L.issue_and_print(site.svc, site.people["alice"], w.coi, "C00001", "png", "2x1", None,
                          False, out)
    assert list(tmp_path.iterdir()) == []
    (row,) = L.reconciliation(site.svc, w.coi)
    assert row["outcome"] == "voided" and not row["printed"]
    assert row["grounds"].startswith("render failed")
    # The item can be labelled again; the new label has the next print generation.
    lid, _ = L.issue_and_print(site.svc, site.people["alice"], w.coi, "C00001", "png", "2x1",
                               None, False, tmp_path / "ok.png")
    assert lid.endswith("-2")
    assert isinstance(L.check_scan(site.svc, scan_of(w.coi, "C01001"), w.coi), LabelScan)


def test_isbt_label_needs_a_collection(site: demo.Site, tmp_path: Path) -> None:
    clock = _clock(site)
    w = demo.Walk(seq=next(_SEQ))
    clock.set(clock.now_ms() + demo.H)
    demo.enrol(site, w)
    with pytest.raises(Refused, match="does not belong"):
        L.issue_and_print(site.svc, site.people["alice"], w.coi, "C00001", "png", "2x1", None,
                          True, tmp_path / "x.png")


@pytest.mark.req("LABEL-RECONCILIATION")
def test_an_unreconciled_product_cannot_be_released(site: demo.Site, tmp_path: Path) -> None:
    w = walk_to(site, "qc_result")
    while len([s for s in w.done if s == "qc_result"]) < len(demo.QC_VALUES):
        n = len(w.done) - 1
        demo.step(site, w, n, _clock(site).now_ms())
    maya = site.people["maya"]
    lid, _ = L.issue_and_print(site.svc, maya, w.coi, "F00001", "pdf", "2x1", None, True,
                               tmp_path / "f.pdf", product_code=L.parse_product_code("S1234100"))
    release = demo.STEP_NAMES.index("qa_release")
    with pytest.raises(Refused, match=f"label {lid} was printed but neither applied nor voided"):
        demo.step(site, w, release, _clock(site).now_ms())
    L.apply(site.svc, maya, w.coi, lid, scan_of(w.coi, "F00001"))
    # Every final bag must carry an applied label: F00002 has none yet.
    with pytest.raises(Refused, match="F00002 has no label applied") as exc:
        demo.step(site, w, release, _clock(site).now_ms())
    assert exc.value.recorded_index is not None
    other, _ = L.issue_and_print(site.svc, maya, w.coi, "F00002", "png", "2x1", None, False,
                                 tmp_path / "f2.png")
    with pytest.raises(Refused, match="F00002 has no label applied"):  # printed, not applied
        demo.step(site, w, release, _clock(site).now_ms())
    L.apply(site.svc, maya, w.coi, other, scan_of(w.coi, "F00002"))
    demo.step(site, w, release, _clock(site).now_ms())
    product = site.svc.chain().product(w.coi)
    assert product is not None and product.state == "released"


@pytest.mark.req("LABEL-RECONCILIATION")
def test_shipment_needs_every_final_bag_labelled(site: demo.Site, tmp_path: Path) -> None:
    """A label voided after release leaves its bag unlabelled: shipment is refused until the
    reprint is applied."""
    w = walk_to(site, "cryopreservation")
    maya = site.people["maya"]
    demo.label_bags(site, w.coi, "cryopreservation")
    walk_on(site, w, "qa_release")
    lab = next(r["label"] for r in L.reconciliation(site.svc, w.coi) if r["item"] == "F00002")
    L.void(site.svc, maya, w.coi, lab, "torn in the shipper")
    shipment = demo.STEP_NAMES.index("shipment")
    with pytest.raises(Refused, match="F00002 has no label applied; 'Shipment' needs") as exc:
        demo.step(site, w, shipment, _clock(site).now_ms())
    assert exc.value.recorded_index is not None
    new, _ = L.reprint(site.svc, maya, w.coi, lab, "torn", "png", "2x1", None, False,
                       tmp_path / "r.png")
    L.apply(site.svc, maya, w.coi, new, scan_of(w.coi, "F01002"))
    demo.step(site, w, shipment, _clock(site).now_ms())


@pytest.mark.req("LABEL-CONTROL")
def test_no_label_for_an_item_that_is_gone(site: demo.Site, tmp_path: Path) -> None:
    """The collection bag is consumed at activation: no label is issued or reprinted for it."""
    w = walk_to(site, "receipt_at_manufacturing")
    alice = site.people["alice"]
    old, _ = L.issue_and_print(site.svc, alice, w.coi, "C00001", "png", "2x1", None, False,
                               tmp_path / "c.png")
    L.void(site.svc, alice, w.coi, old, "smudged")
    walk_on(site, w, "activation")
    assert site.svc.chain().product(w.coi).items["C00001"].status == "consumed"  # type: ignore[union-attr]
    for attempt in (
        lambda: L.issue_and_print(site.svc, alice, w.coi, "C00001", "png", "2x1", None, False,
                                  tmp_path / "again.png"),
        lambda: L.reprint(site.svc, alice, w.coi, old, "smudged", "png", "2x1", None, False,
                          tmp_path / "re.png"),
    ):
        with pytest.raises(Refused, match="C00001 is consumed: no label is issued") as exc:
            attempt()
        assert exc.value.recorded_index is not None
    assert not (tmp_path / "again.png").exists() and not (tmp_path / "re.png").exists()


def walk_on(site: demo.Site, w: demo.Walk, last_step: str) -> None:
    """Go on along the plan from where ``w`` is, up to and including ``last_step``."""
    clock = _clock(site)
    start = len(w.done) - 1
    for n in range(start, len(demo.PLAN)):
        clock.set(clock.now_ms() + demo.H)
        demo.step(site, w, n, clock.now_ms())
        if demo.PLAN[n][0] == last_step:
            break
