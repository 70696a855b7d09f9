"""Readable everywhere (issue 19): local times with their zone and never epoch milliseconds,
windows that stop counting once the product cannot be inside them any more, Enter in the review
search, the release screen after the release, and the enrol screen's ``coi label`` command,
run for real."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from coi.service.demo import demo_password
from coi.service.views import correction_target, windows_left
from coi.tui.screens.correct import CorrectionScreen
from coi.tui.screens.enrol import EnrolScreen
from coi.tui.screens.home import HomeScreen
from coi.tui.screens.product import ProductScreen
from coi.tui.screens.release import ReleaseScreen
from coi.tui.screens.review import ReviewScreen
from tests.tui_support import burst, make_app, open_service, screen_text, settle

pytestmark = pytest.mark.xdist_group("tui")

INFUSED = "CHA999926000001"  # one final bag, infused
HARVEST_READY = "CHA99992600000G"
QC_READY = "CHA99992600000C"  # qc_testing, gate met for grace
EPOCH_MS = re.compile(r"1[0-9]{12}")


def test_windows_end_when_the_product_can_no_longer_be_inside_them(db: Path) -> None:
    svc, _clock = open_service(db)
    now = svc.clock.now_ms()
    infused = svc.chain().product(INFUSED)
    assert infused is not None and infused.state == "infused"
    assert any(w.ended_index is None for w in infused.windows.values())  # the domain's view
    assert windows_left(svc, infused, now) == []  # but nothing is left to guard
    row = next(r for r in svc.products() if r["coi"] == INFUSED)
    assert row["deadline_ms"] is None  # the review table and home status agree
    assert INFUSED not in {w["coi"] for w in svc.status()["windows"]}
    stored = next(r for r in svc.products() if r["state"] == "stored"
                  and r["deadline_ms"] is not None)
    product = svc.chain().product(stored["coi"])
    left = windows_left(svc, product, now)
    assert left and left[0][0].startswith("lymphodepletion-to-infusion")


async def test_product_screen_shows_no_time_left_on_an_infused_product(db: Path) -> None:
    app = make_app(db, user="grace")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await app.push_screen(ProductScreen(INFUSED))
        screen = app.screen
        await settle(pilot, lambda: "infused" in str(screen.query_one("#product-head",
                                                                       Static).render()))
        head = str(screen.query_one("#product-head", Static).render())
        assert "left" not in head and "exceeded" not in head
        assert "Release gate" not in str(screen.query_one("#gate", Static).render())
        shown = screen_text(app)
        assert not EPOCH_MS.search(shown), shown
        assert "CEST" in shown  # times carry their zone
        assert re.search(r"coi · 2026-05-28 22:26 CEST", shown)  # the header's local time


async def test_correction_form_shows_a_time_as_local_time_and_reads_it_back(db: Path) -> None:
    app = make_app(db, user="alice")
    svc = app.svc
    index = next(t["index"] for t in svc.show(HARVEST_READY)["timeline"]
                 if t["type"] == "step.apheresis_collection")
    target = correction_target(svc, HARVEST_READY, index)
    (spec, text), *_ = [(s, v) for s, v in target.fields if s.type == "timestamp"]
    assert re.fullmatch(r"2026-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?\+02:00", text)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await app.run_action(f"correct('{HARVEST_READY}', {index})")
        await settle(pilot, lambda: isinstance(app.screen, CorrectionScreen)
                     and app.screen.target is not None)
        screen = app.screen
        assert isinstance(screen, CorrectionScreen)
        shown = screen_text(app)
        assert not EPOCH_MS.search(shown), shown
        assert "CEST" in shown
        # unchanged, the local time is no change at all; changed, it is recorded as a time
        assert screen.changes() == {}
        screen.query_one(f"#fix-{spec.name}", Input).value = text[:11] + "10:00+02:00"
        screen.query_one("#correct-reason", Input).value = "clock of the apheresis machine"
        screen.query_one("#correct-password", Input).value = demo_password("alice")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.recorded is not None)
        entry = svc.show(HARVEST_READY)["timeline"][-1]
        recorded = entry["data"]["values"][spec.name]
        assert isinstance(recorded, int)
        assert svc.local_time(recorded).startswith(text[:10] + " 10:00:00 CEST")


async def test_enter_in_the_review_search_opens_the_only_match(db: Path) -> None:
    app = make_app(db, user="grace")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("f3")
        await settle(pilot, lambda: isinstance(app.screen, ReviewScreen))
        await pilot.press("ctrl+f")
        await burst(pilot, HARVEST_READY[-7:] + "\r")  # typed at speed, Enter at once
        await settle(pilot, lambda: isinstance(app.screen, ProductScreen))
        assert app.screen.coi == HARVEST_READY  # type: ignore[attr-defined]
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, ReviewScreen))
        review = app.screen
        review.query_one("#f-search", Input).value = "CHA9999"  # many match: to the table
        await settle(pilot)
        review.query_one("#f-search", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)
        assert app.focused is review.query_one("#products", DataTable)


async def test_the_release_screen_shows_the_released_state_after_signing(db: Path) -> None:
    app = make_app(db, user="grace")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await app.push_screen(ReleaseScreen(QC_READY, "release"))
        screen = app.screen
        assert isinstance(screen, ReleaseScreen)
        await settle(pilot, lambda: "Gate met" in str(screen.query_one("#release-gate",
                                                                        Static).render()))
        await burst(pilot, "COA-1\t" + demo_password("grace") + "\r")
        await settle(pilot, lambda: screen.result_index is not None)
        await settle(pilot)
        gate = str(screen.query_one("#release-gate", Static).render())
        assert "Gate met" not in gate
        assert f"{QC_READY} is now released" in gate
        assert app.svc.chain().product(QC_READY).state == "released"  # type: ignore[union-attr]


async def test_the_label_command_the_enrol_screen_suggests_works(
        db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(db.parent)
    app = make_app(db, user="alice")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("f6")
        await settle(pilot, lambda: isinstance(app.screen, EnrolScreen))
        screen = app.screen
        assert isinstance(screen, EnrolScreen)
        await burst(pilot, "MRN900002\t\t\tA9999-HEMATOLOGY\tSLOT-2\t"  # (no name, no DOB)
                    + demo_password("alice") + "\r")
        await settle(pilot, lambda: screen.enrolled is not None)
        shown = str(screen.query_one("#enrol-result", Static).render())
        coi = screen.enrolled
    command = next(line.strip() for line in shown.splitlines()
                   if line.strip().startswith("coi label"))
    argv = command.split()
    assert argv[:3] == ["coi", "label", coi]
    # What the next step says first: the apheresis collection, which creates the bag.
    svc, _clock = open_service(db)
    alice = svc.ledger.unlock("alice", demo_password("alice"))
    svc.record("apheresis_collection", coi, actor=alice,
               fields={"din": "A999926000777N", "collection_started_ms": str(svc.clock.now_ms()),
                       "volume_ml": "250", "total_nucleated_cells": "12000000000"})
    svc.ledger.engine.dispose()
    password = tmp_path / "pw"
    password.write_text(demo_password("alice") + "\n")
    run = subprocess.run(
        [sys.executable, "-c", "from coi.cli.main import run; run()", *argv[1:],
         "--password-file", str(password)],
        cwd=db.parent, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = db.parent / f"{coi}-C00001.pdf"
    assert out.read_bytes()[:5] == b"%PDF-"
