"""Exporting an audit bundle from the audit screen (F4, then ``e``), on a real demo ledger.

What the screen writes is checked with the real offline verifier and the site's log key, and
against the ledger's own rows; failures must leave no file behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, Input, RadioButton, Static

from coi.export.verifier import verify_bundle
from coi.service import exporting
from coi.service.errors import ConfigError, Refused
from coi.service.exporting import Scope
from coi.tui.app import CoiApp
from coi.tui.screens.audit import AuditScreen
from coi.tui.screens.export import ConfirmOverwrite, ExportScreen
from coi.tui.screens.home import HomeScreen
from tests.tui_support import copy_demo, make_app, settle

pytestmark = pytest.mark.xdist_group("tui")

INFUSED = "CHA999926000001"
TODAY = "2026-05-28"  # the demo's fixed "now" in Europe/Paris


@pytest.fixture
def db(demo_db: Path, tmp_path: Path) -> Path:
    """The demo copy in its own folder: tmp_path itself is where exports are written."""
    site = tmp_path / "site"
    site.mkdir()
    return copy_demo(demo_db, site)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


async def open_export(pilot: Pilot[Any]) -> ExportScreen:
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
    await pilot.press("f4")
    await settle(pilot, lambda: isinstance(app.screen, AuditScreen))
    await pilot.press("e")
    await settle(pilot, lambda: isinstance(app.screen, ExportScreen))
    screen = app.screen
    assert isinstance(screen, ExportScreen)
    await settle(pilot, lambda: screen.allowed)
    return screen


def fill(screen: ExportScreen, **values: str) -> None:
    for name, value in values.items():
        screen.query_one(f"#export-{name}", Input).value = value


async def choose(pilot: Pilot[Any], screen: ExportScreen, mode: str) -> None:
    screen.query_one(f"#scope-{mode}", RadioButton).value = True
    await pilot.pause()
    assert screen.mode == mode


async def export(pilot: Pilot[Any], screen: ExportScreen) -> None:
    await pilot.press("ctrl+s")
    await settle(pilot, lambda: screen.result is not None or screen.error is not None
                 or isinstance(pilot.app.screen, ConfirmOverwrite))


def result_text(screen: ExportScreen) -> str:
    return str(screen.query_one("#export-result", Static).render())


def bundle_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def subjects_in_scope(path: Path) -> list[tuple[int, str, int]]:
    import base64

    out = []
    for rec in bundle_records(path):
        if rec["kind"] == "entry" and rec["in_scope"]:
            st = json.loads(base64.b64decode(rec["statement"]))
            out.append((st["index"], st["subject"], st["time"]))
    return out


def trust_of(app: CoiApp) -> str:
    return app.svc.ledger.log_verifier_key()


# --------------------------------------------------------------------------------- product
async def test_product_export_verifies_offline_and_holds_that_product(db: Path, out: Path
                                                                      ) -> None:
    app = make_app(db, user="ari")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot)
        fill(screen, coi=INFUSED)
        await pilot.pause()
        assert screen.query_one("#export-path", Input).value == (
            f"coi-export-{INFUSED}-{TODAY}.jsonl")
        target = out / "product.jsonl"
        fill(screen, path=str(target))
        await export(pilot, screen)
        assert screen.error is None, screen.error
        r = screen.result
        assert r is not None and target.is_file()
        key = trust_of(app)
        report = verify_bundle(target, key)  # the real offline verifier, the site's key
        assert report.scope == {"mode": "coi", "coi": INFUSED}
        assert report.process_sha256 == app.svc.process().sha256  # the one in force
        inside = subjects_in_scope(target)
        assert {s for _i, s, _t in inside} == {INFUSED}
        expected = [row.index for row in app.svc.ledger.store.rows_where(subject=INFUSED)]
        assert [i for i, _s, _t in inside] == expected and report.in_scope == len(expected)
        shown = result_text(screen)
        assert r.summary.file_sha256 == hashlib.sha256(target.read_bytes()).hexdigest()
        assert r.summary.file_sha256 in shown and r.summary.bundle_sha256 in shown
        assert f"coi verify-export {target} --trust {key}" in shown.replace("\n", "")
        assert f"{len(expected)} in scope" in shown
        bar = screen.query_one("#export-progress")
        assert bar.progress == bar.total == r.summary.tree_size  # type: ignore[attr-defined]
        copy = screen.query_one("#export-copy", Button)
        assert copy.display and copy.has_focus
        await pilot.press("enter")  # copies the command (OSC 52); the app keeps it too
        assert app.clipboard == r.verify_command


async def test_default_name_in_the_current_folder_and_html_report(db: Path, out: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    monkeypatch.chdir(out)
    app = make_app(db, user="admin")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot)
        await choose(pilot, screen, "all")
        assert screen.query_one("#export-path", Input).value == f"coi-export-all-{TODAY}.jsonl"
        screen.query_one("#export-html", Checkbox).value = True
        await export(pilot, screen)
        assert screen.error is None, screen.error
        bundle = out / f"coi-export-all-{TODAY}.jsonl"
        html = out / f"coi-export-all-{TODAY}.html"
        assert sorted(p.name for p in out.iterdir()) == sorted([bundle.name, html.name])
        report = verify_bundle(bundle, trust_of(app))
        assert report.entries == report.tree_size
        assert screen.result is not None and screen.result.report_ok
        assert "verified" in html.read_text().lower()


# ---------------------------------------------------------------------------------- period
async def test_period_export_in_the_site_time_zone(db: Path, out: Path) -> None:
    app = make_app(db, user="grace")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot)
        assert "Europe/Paris" in str(screen.query_one("#export-tz", Static).render())
        await choose(pilot, screen, "period")
        assert screen.query_one("#export-path", Input).value == (
            f"coi-export-period-{TODAY}.jsonl")
        fill(screen, since="2026-05-20", until="2026-05-21")
        await pilot.pause()
        assert screen.query_one("#export-path", Input).value == (
            f"coi-export-2026-05-20_2026-05-21-{TODAY}.jsonl")
        target = out / "period.jsonl"
        fill(screen, path=str(target))
        await export(pilot, screen)
        assert screen.error is None, screen.error
        # 2026-05-20 00:00 to 2026-05-22 00:00 Paris (CEST, UTC+2): the until day is included
        since = exporting.parse_when("2026-05-20T00:00+02:00", "UTC", end=False)
        until = exporting.parse_when("2026-05-22T00:00+02:00", "UTC", end=False)
        report = verify_bundle(target, trust_of(app))
        assert report.scope == {"mode": "period", "since_ms": since, "until_ms": until}
        inside = subjects_in_scope(target)
        expected = [row.index for row in app.svc.ledger.store.rows_where(since_ms=since,
                                                                         until_ms=until)]
        assert expected and [i for i, _s, _t in inside] == expected
        assert all(since <= t < until for _i, _s, t in inside)


async def test_bad_period_says_what_is_wrong(db: Path, out: Path) -> None:
    app = make_app(db, user="grace")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot)
        await choose(pilot, screen, "period")
        fill(screen, since="2026-05-22", until="2026-05-20", path=str(out / "p.jsonl"))
        await export(pilot, screen)
        assert screen.error is not None and "swap the dates" in screen.error
        fill(screen, since="20 May", until="2026-05-20")
        await export(pilot, screen)
        assert "is not an ISO date" in (screen.error or "")
        fill(screen, since="2020-01-01", until="2020-01-02")
        await export(pilot, screen)
        assert "No entry was recorded from 2020-01-01 to 2020-01-02" in (screen.error or "")
        assert list(out.iterdir()) == []


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("typed", "says"), [
    ("CHA99992600001", "has 15 characters"),
    ("hello [bold]x[/]", "is not a Chain of Identity Identifier"),
    ("=A999926000001", "DIN"),
])
async def test_bad_coi_shows_the_error_and_writes_nothing(db: Path, out: Path, typed: str,
                                                          says: str) -> None:
    app = make_app(db, user="ari")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot)
        fill(screen, coi=typed, path=str(out / "x.jsonl"))
        await export(pilot, screen)
        assert screen.result is None and screen.error is not None
        assert says in screen.error and says in result_text(screen)
        assert "NOT EXPORTED" in result_text(screen)
        assert screen.query_one("#export-coi", Input).has_focus
        assert list(out.iterdir()) == []


async def test_unknown_coi_is_refused_and_leaves_no_file(db: Path, out: Path) -> None:
    app = make_app(db, user="ari")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot)
        fill(screen, coi="CHA999926ZZZZZZ", path=str(out / "x.jsonl"))
        await export(pilot, screen)
        assert "No entry in this ledger is about product CHA999926ZZZZZZ" in (screen.error or "")
        assert list(out.iterdir()) == []  # not even a temporary file
        fill(screen, coi=INFUSED, path=str(out / "missing" / "x.jsonl"))
        await export(pilot, screen)
        assert "does not exist" in (screen.error or "")
        assert list(out.iterdir()) == []


# -------------------------------------------------------------------------- existing file
async def test_existing_file_is_kept_unless_replacing_is_confirmed(db: Path, out: Path) -> None:
    target = out / "b.jsonl"
    target.write_text("the auditor's earlier bundle\n")
    app = make_app(db, user="ari")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot)
        fill(screen, coi=INFUSED, path=str(target))
        await export(pilot, screen)
        assert isinstance(app.screen, ConfirmOverwrite)
        await pilot.press("escape")  # keep it
        await settle(pilot, lambda: app.screen is screen)
        assert "kept" in (screen.error or "")
        assert target.read_text() == "the auditor's earlier bundle\n"
        assert sorted(p.name for p in out.iterdir()) == ["b.jsonl"]

        await export(pilot, screen)
        assert isinstance(app.screen, ConfirmOverwrite)
        app.screen.query_one("#confirm-replace", Button).press()
        await settle(pilot, lambda: screen.result is not None or bool(screen.error))
        assert screen.error is None, screen.error
        assert verify_bundle(target, trust_of(app)).scope["coi"] == INFUSED


def test_service_refuses_to_overwrite_when_asked_not_to(db: Path, out: Path) -> None:
    from tests.tui_support import open_service

    svc, _clock = open_service(db)
    target = out / "b.jsonl"
    target.write_text("keep\n")
    with pytest.raises(exporting.OutputExists):
        exporting.export(svc.ledger, Scope("all"), target, by="ari", overwrite=False)
    assert target.read_text() == "keep\n" and [p.name for p in out.iterdir()] == ["b.jsonl"]


# ------------------------------------------------------------------------------------ roles
async def test_a_role_without_access_cannot_export(db: Path, out: Path) -> None:
    app = make_app(db, user="maya")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert not app.may("audit")
        await pilot.press("f4")
        await settle(pilot)
        assert not isinstance(app.screen, AuditScreen)
        # Even if the screens are reached another way: no key, no button, and no export.
        audit = AuditScreen()
        await app.push_screen(audit)
        await settle(pilot)
        assert audit.check_action("export", ()) is False
        assert not audit.query("#audit-export")
        await pilot.press("e")
        await settle(pilot)
        assert app.screen is audit
        screen = ExportScreen()
        await app.push_screen(screen)
        await settle(pilot)
        assert not screen.allowed and screen.query_one("#export-go", Button).disabled
        fill(screen, coi=INFUSED, path=str(out / "x.jsonl"))
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "may not export" in (screen.error or "")
    assert list(out.iterdir()) == []


def test_the_service_refuses_a_role_without_access(db: Path, out: Path) -> None:
    from tests.tui_support import open_service

    svc, _clock = open_service(db)
    with pytest.raises(Refused, match="may not export"):
        exporting.export(svc.ledger, Scope("coi", coi=INFUSED), out / "x.jsonl", by="maya")
    with pytest.raises(Refused):
        exporting.export(svc.ledger, Scope("all"), out / "x.jsonl", by="")
    assert list(out.iterdir()) == []
    r = exporting.export(svc.ledger, Scope("coi", coi=INFUSED), out / "x.jsonl", by="grace")
    assert r.summary.in_scope > 0


# ----------------------------------------------------------------------------- the parser
@pytest.mark.parametrize("typed", [INFUSED, INFUSED.lower(), f"  {INFUSED}  ",
                                   f"&/{INFUSED}"])
def test_product_scope_reads_what_people_type_or_scan(typed: str) -> None:
    assert exporting.product_scope(typed) == Scope("coi", coi=INFUSED)


def test_product_scope_checks_the_check_character() -> None:
    from coi.domain.isbt import coi_id_from_text

    k = coi_id_from_text(INFUSED).check
    assert exporting.product_scope(f"{INFUSED} {k}") == Scope("coi", coi=INFUSED)
    wrong = "A" if k != "A" else "B"
    with pytest.raises(ConfigError, match="check character"):
        exporting.product_scope(f"{INFUSED} {wrong}")
    with pytest.raises(ConfigError, match="enter the product"):
        exporting.product_scope("   ")
