"""``coi demo``'s suggestions (``coi.service.tour``), on the real demo ledger the TUI tests use:
every scan it prints is one a station accepts, as the user it names, at the step it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from coi.cli.tui_cmd import _print_demo_scans
from coi.service.scans import LabelScan, read_scan
from coi.service.tour import tour
from coi.service.views import item_for_step, precheck, release_blockers, scan_target
from tests.tui_support import open_service

pytestmark = pytest.mark.xdist_group("tui")


def test_tour_scans_are_accepted_at_their_stations(db: Path) -> None:
    t = tour(str(db))
    svc, _clock = open_service(db)
    assert [s.step for s in t.scans] == ["expansion", "harvest", "receipt_at_treatment"]
    for stop in t.scans:
        target = scan_target(read_scan(stop.scan))
        assert target is not None
        spec = svc.process().step(stop.step)
        assert spec is not None
        item = item_for_step(spec, target.item)
        assert precheck(svc, stop.step, target.coi, user=stop.user, item=item) == []
        if stop.step == "receipt_at_treatment":
            paper = read_scan(stop.paperwork or "")
            assert isinstance(paper, LabelScan)
            assert (paper.label.coi, paper.label.item) == (target.coi, "D00001")
        else:
            assert stop.paperwork is None
    assert t.release is not None
    product = svc.chain().product(t.release)
    assert product is not None and product.state == "qc_testing"
    assert release_blockers(svc, t.release, t.releaser) == []


def test_demo_prints_the_tour(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = tour(str(db))
    _print_demo_scans(str(db))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Try these (coi tui --station STEP")
    assert len(out) == 1 + len(t.scans) + 1
    for line, stop in zip(out[1:], t.scans, strict=False):
        assert line.split()[:5] == [stop.step, "as", stop.user, "scan", stop.scan]
        assert (stop.paperwork or "") in line
    assert out[-1].split() == ["QA", "release", "as", "grace:", "F3,", "open", f"{t.release},",
                               "press", "r"]
