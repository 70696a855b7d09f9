"""Pilot tests of the terminal UI's behaviour, on a real demo ledger (no mocks).

Each test gets its own copy of the demo SQLite file; what the screens claim is checked against
the ledger itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Input, Static

from coi.domain.payload import encode
from coi.service.demo import demo_password
from coi.tui.screens.admin import AdminForm, AdminScreen
from coi.tui.screens.alert import AlertScreen
from coi.tui.screens.audit import AuditScreen
from coi.tui.screens.home import HomeScreen
from coi.tui.screens.login import LoginScreen
from coi.tui.screens.product import ProductScreen
from coi.tui.screens.release import ReleaseScreen
from coi.tui.screens.review import ReviewScreen
from coi.tui.screens.station import StationScreen
from coi.tui.widgets.scan_input import GS, GS_SHOWN, ScanInput
from tests.tui_support import last_entry, make_app, settle

pytestmark = pytest.mark.xdist_group("tui")

HARVEST_READY = "CHA99992600000G"  # expanded: harvest is next (maya)
SHIPPED = "CHA99992600000B"  # shipped: receipt at the treatment centre is next (nina)
GATE_MET = "CHA99992600000C"  # qc_testing, every QC result in, no open deviation
GATE_BLOCKED = "CHA999926000004"  # qc_testing with an open temperature-excursion deviation
INFUSED = "CHA999926000001"


async def paste(pilot: Pilot[Any], text: str) -> None:
    """What a scanner in paste mode (or a person pasting) sends, as one Paste event."""
    pilot.app.screen.query_one(ScanInput).post_message(events.Paste(text))
    await pilot.pause()


async def type_scan(pilot: Pilot[Any], payload: str, suffix: str = "enter") -> None:
    await pilot.press(*list(payload), suffix)


async def open_station(pilot: Pilot[Any], step: str) -> StationScreen:
    await settle(pilot, lambda: isinstance(pilot.app.screen, StationScreen | HomeScreen))
    if not isinstance(pilot.app.screen, StationScreen):
        await pilot.app.run_action(f"station('{step}')")
    await settle(pilot, lambda: isinstance(pilot.app.screen, StationScreen))
    screen = pilot.app.screen
    assert isinstance(screen, StationScreen) and screen.step == step
    return screen


# ---------------------------------------------------------------------------------- login
async def test_login_then_home_with_role_aware_menu(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        app.screen.query_one("#login-user", Input).value = "grace"
        pw = app.screen.query_one("#login-password", Input)
        pw.value = demo_password("grace")
        pw.focus()
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert app.session.user == "grace"
        assert app.may("review") and app.may("audit") and not app.may("admin")
        await pilot.press("f5")  # Users: not for QA; nothing opens
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)


@pytest.mark.req("AUDIT-REFUSALS")
async def test_wrong_password_is_refused_and_recorded(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.screen.query_one("#login-user", Input).value = "grace"
        pw = app.screen.query_one("#login-password", Input)
        pw.value = "not-her-password"
        pw.focus()
        await pilot.press("enter")
        await settle(pilot, lambda: "wrong password" in str(
            app.screen.query_one("#login-message", Static).render()))
        assert isinstance(app.screen, LoginScreen)
        assert last_entry(app.svc)["type"] == "system.login_failed"


@pytest.mark.req("SIG-COMPONENTS")
async def test_idle_lock_needs_user_and_password_again(db: Path) -> None:
    app = make_app(db, user="maya", idle_timeout_s=60)
    clock = app.svc.clock
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        clock.set(clock.now_ms() + 61_000)  # type: ignore[attr-defined]
        app.check_idle_lock()
        await settle(pilot, lambda: isinstance(app.screen, LoginScreen))
        screen = app.screen
        assert isinstance(screen, LoginScreen) and screen.locked_user == "maya"
        assert app.session.user is None
        screen.query_one("#login-password", Input).value = demo_password("maya")
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert app.session.user == "maya"


# ------------------------------------------------------------------------------- stations
async def test_scan_sign_appends_an_entry(db: Path) -> None:
    app = make_app(db, user="maya", station="harvest")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_station(pilot, "harvest")
        before = last_entry(app.svc)["size"]
        await type_scan(pilot, encode(HARVEST_READY, "C00001"))
        await settle(pilot, lambda: screen.phase == "fields")
        assert "expanded" in str(screen.query_one("#product-info", Static).render())
        screen.query_one("#field-viable_cells", Input).value = "3100000000"
        screen.query_one("#field-viability_pct", Input).value = "92.5"
        screen.query_one("#password", Input).value = demo_password("maya")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.last_index is not None)
        entry = last_entry(app.svc)
        assert entry["size"] == before + 1
        assert entry["type"] == "step.harvest" and entry["subject"] == HARVEST_READY
        assert screen.last_index == entry["index"]
        assert f"entry {entry['index']}" in str(screen.query_one("#confirm", Static).render())
        assert app.svc.chain().product(HARVEST_READY).state == "harvested"  # type: ignore[union-attr]
        assert screen.phase == "scan" and app.focused is screen.query_one(ScanInput)


async def test_product_not_at_this_step_raises_alert_and_is_recorded(db: Path) -> None:
    app = make_app(db, user="maya", station="harvest")
    async with app.run_test(size=(100, 30)) as pilot:
        await open_station(pilot, "harvest")
        await type_scan(pilot, encode(INFUSED, "F00001"), suffix="tab")
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        alert = app.screen
        assert isinstance(alert, AlertScreen)
        entry = last_entry(app.svc)
        assert entry["type"] == "system.scan_refused" and entry["subject"] == INFUSED
        assert alert.recorded_index == entry["index"]
        await pilot.press("escape")  # Escape does not dismiss an alert
        assert isinstance(app.screen, AlertScreen)
        await settle(pilot, lambda: not alert.query_one("#alert-ack").disabled)
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, StationScreen))


@pytest.mark.req("DEVICE-CHECKS")
async def test_wrong_paperwork_at_receipt_raises_alert_and_is_recorded(db: Path) -> None:
    app = make_app(db, user="nina", station="receipt_at_treatment")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_station(pilot, "receipt_at_treatment")
        await type_scan(pilot, encode(SHIPPED, "F00001"))
        await settle(pilot, lambda: screen.phase == "second")
        await type_scan(pilot, encode(GATE_MET, "D00001"))  # another patient's paperwork
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        entry = last_entry(app.svc)
        assert entry["type"] == "system.scan_refused"
        assert entry["subject"] == SHIPPED
        assert "MISMATCH" in entry["data"]["reasons"][0]
        assert app.svc.chain().product(SHIPPED).state == "shipped"  # type: ignore[union-attr]


@pytest.mark.req("RECEIPT")
async def test_matching_paperwork_at_receipt_records_receipt(db: Path) -> None:
    app = make_app(db, user="nina", station="receipt_at_treatment")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_station(pilot, "receipt_at_treatment")
        await type_scan(pilot, encode(SHIPPED, "F00001"))
        await settle(pilot, lambda: screen.phase == "second")
        await paste(pilot, encode(SHIPPED, "D00001") + "\r")
        await settle(pilot, lambda: screen.phase == "fields")
        screen.query_one("#field-logger").value = "in_range"  # type: ignore[attr-defined]
        screen.query_one("#password", Input).value = demo_password("nina")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.last_index is not None)
        assert last_entry(app.svc)["type"] == "step.receipt_at_treatment"


@pytest.mark.req("DEVICE-CHECKS")
async def test_unreadable_scan_is_refused_and_recorded_inertly(db: Path) -> None:
    app = make_app(db, user="maya", station="harvest")
    evil = "[bold red]x[/]\x1b]0;pwn\x07\x1b[31mCOI1"
    async with app.run_test(size=(100, 30)) as pilot:
        await open_station(pilot, "harvest")
        await paste(pilot, evil + "\n")
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        alert = app.screen
        scanned = alert.query_one("#alert-scanned", Static).render()
        text = str(scanned)
        assert "[bold red]x[/]" in text  # markup shown, not interpreted
        assert "\\e]0;pwn\\x07\\e[31m" in text  # escapes shown visibly
        assert "\x1b" not in text and "\x07" not in text
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\x07" not in svg and "[bold red]x[/]" in svg.replace(
            "&#160;", " ")
        entry = last_entry(app.svc)
        assert entry["type"] == "system.scan_refused"
        assert "\x1b" not in entry["data"]["scan"]


@pytest.mark.req("RELEASE-QA")
async def test_non_qa_cannot_release_even_when_the_screen_is_pushed(db: Path) -> None:
    app = make_app(db, user="maya")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        screen = ReleaseScreen(GATE_MET, "release")
        await app.push_screen(screen)
        await settle(pilot)
        assert "blocked" in str(screen.query_one("#release-gate", Static).render())
        screen.query_one("#release-field", Input).value = "COA0012"
        screen.query_one("#release-password", Input).value = demo_password("maya")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: screen.refused is not None)
        assert screen.refused is not None and "qa" in screen.refused.reason.lower()
        assert isinstance(app.screen, AlertScreen)
        assert last_entry(app.svc)["type"] == "system.refusal"
        assert app.svc.chain().product(GATE_MET).state == "qc_testing"  # type: ignore[union-attr]


async def test_release_gate_blocks_then_qa_releases_when_met(db: Path) -> None:
    app = make_app(db, user="grace")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await app.run_action("review")
        await settle(pilot, lambda: isinstance(app.screen, ReviewScreen))
        await app.push_screen(ProductScreen(GATE_BLOCKED))
        await settle(pilot)
        gate = str(app.screen.query_one("#gate", Static).render())
        assert "not met" in gate and "is open" in gate
        await pilot.press("r")
        await settle(pilot, lambda: isinstance(app.screen, ReleaseScreen))
        blocked = app.screen
        assert isinstance(blocked, ReleaseScreen)
        blocked.query_one("#release-field", Input).value = "COA0004"
        blocked.query_one("#release-password", Input).value = demo_password("grace")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: blocked.refused is not None)
        assert blocked.refused is not None and "Release blocked" in blocked.refused.reason
        assert last_entry(app.svc)["type"] == "system.refusal"

        release = ReleaseScreen(GATE_MET, "release")
        await app.push_screen(release)
        await settle(pilot)
        assert "Gate met" in str(release.query_one("#release-gate", Static).render())
        release.query_one("#release-field", Input).value = "COA0012"
        release.query_one("#release-password", Input).value = demo_password("grace")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: release.result_index is not None)
        entry = last_entry(app.svc)
        assert entry["type"] == "step.qa_release" and entry["index"] == release.result_index
        assert app.svc.chain().product(GATE_MET).state == "released"  # type: ignore[union-attr]


async def test_review_filters_and_timeline(db: Path) -> None:
    app = make_app(db, user="grace")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("f3")
        await settle(pilot, lambda: isinstance(app.screen, ReviewScreen))
        review = app.screen
        assert isinstance(review, ReviewScreen)
        assert len(review.rows) == 20
        review.query_one("#f-filter").value = "deviation"  # type: ignore[attr-defined]
        await settle(pilot, lambda: len(review.rows) == 2)
        assert {r["coi"] for r in review.rows} == {GATE_BLOCKED, "CHA99992600000I"}
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, ProductScreen))
        product = app.screen
        await settle(pilot)
        from textual.widgets import DataTable

        table = product.query_one("#timeline", DataTable)
        assert table.row_count > 10
        row = [str(c) for c in table.get_row_at(1)]
        assert "Alice Apheresis (authored)" in row[3]
        assert "CEST" in row[1] and "UTC+0200" in row[1]
        assert row[4] == "✓"
        devs = product.query_one("#deviations", DataTable)
        assert devs.row_count == 1


async def test_audit_verifies_in_a_worker_with_progress(db: Path) -> None:
    app = make_app(db, user="ari")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("f4")
        await settle(pilot, lambda: isinstance(app.screen, AuditScreen))
        audit = app.screen
        assert isinstance(audit, AuditScreen)
        await pilot.press("v")
        await settle(pilot, lambda: audit.outcome is not None)
        assert audit.outcome == "ok"
        from textual.widgets import ProgressBar

        bar = audit.query_one("#audit-progress", ProgressBar)
        size = last_entry(app.svc)["size"]
        assert bar.total == size and bar.progress == size
        assert "— " in str(audit.query_one("#audit-checkpoint", Static).render())
        # the root in base64, as the checkpoint and `coi verify` write it
        import base64

        root = base64.b64encode(app.svc.ledger.store.head().root).decode()  # type: ignore[union-attr]
        assert root in str(audit.query_one("#audit-result", Static).render())


async def test_admin_enrols_a_user(db: Path) -> None:
    app = make_app(db, user="admin")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("f5")
        await settle(pilot, lambda: isinstance(app.screen, AdminScreen))
        admin = app.screen
        await pilot.press("e")
        await settle(pilot, lambda: isinstance(app.screen, AdminForm))
        form = app.screen
        for name, value in (("user", "sam"), ("name", "Sam Second-QA"), ("roles", "qa"),
                            ("new_password", "sam-password-1"),
                            ("password", demo_password("admin"))):
            form.query_one(f"#af-{name}", Input).value = value
        form.query_one("#af-password", Input).focus()
        await pilot.press("enter")
        await settle(pilot, lambda: "sam" in str(admin.query_one("#admin-result").render()))
        assert "sam" in {u["user"] for u in app.svc.ledger.users()}
        assert last_entry(app.svc)["type"] == "key.enrol"


# ---------------------------------------------------------------------------- scan input
class _ScanApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.scans: list[ScanInput.Scanned] = []

    def compose(self) -> ComposeResult:
        yield ScanInput(id="scan")
        yield Input(id="other")

    def on_scan_input_scanned(self, event: ScanInput.Scanned) -> None:
        self.scans.append(event)


async def test_scan_input_keeps_gs_takes_tab_and_lf_and_keeps_focus() -> None:
    app = _ScanApp()
    async with app.run_test() as pilot:
        scan = app.query_one(ScanInput)
        scan.focus()
        await pilot.press("=", "A")
        await scan._on_key(events.Key("ctrl+right_square_bracket", GS))
        assert GS_SHOWN in scan.value
        await pilot.press("B", "tab")
        assert app.focused is scan  # Tab submitted; focus stayed
        assert app.scans[-1].raw == f"=A{GS}B"
        await pilot.press("X", "Y", "ctrl+j")
        assert app.scans[-1].raw == "XY"
        scan.post_message(events.Paste("]Q1COI1ABC\t"))
        await pilot.pause()
        assert app.scans[-1].raw == "]Q1COI1ABC" and app.scans[-1].method == "pasted"
        assert app.focused is scan and scan.value == ""
