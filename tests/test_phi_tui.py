"""The PHI store in the TUI, on a real demo ledger: the bedside station shows the patient's name
and date of birth from the PHI store (``erased`` once erased), and an administrator erases a
patient's identifiers from the users screen (witnessed, a signed entry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets import Input, Static

from coi.domain.payload import encode
from coi.service.demo import demo_password
from coi.tui.screens.admin import AdminForm, AdminScreen
from coi.tui.screens.enrol import EnrolScreen
from coi.tui.screens.home import HomeScreen
from coi.tui.screens.station import StationScreen
from coi.tui.widgets.scan_input import ScanInput
from tests.tui_support import last_entry, make_app, settle

pytestmark = pytest.mark.xdist_group("tui")

STORED = "CHA999926000006"  # stored at the treatment centre, one final bag; Demo Patient 6
D = 86_400_000


def bedside_app(db: Path) -> Any:
    app = make_app(db, user="nina", station="bedside_verification")
    svc = app.svc
    nina = svc.ledger.unlock("nina", demo_password("nina"))
    svc.record("lymphodepletion", STORED, actor=nina,
               fields={"regimen": "fludarabine + cyclophosphamide"})
    svc.clock.set(svc.clock.now_ms() + 4 * D)  # type: ignore[attr-defined]
    svc.record("thaw", STORED, actor=nina, item="F00001", fields={"method": "water_bath"})
    app.session.login("nina", demo_password("nina"))
    return app


async def scan_bag(pilot: Any) -> StationScreen:
    await settle(pilot, lambda: isinstance(pilot.app.screen, StationScreen))
    screen = pilot.app.screen
    screen.query_one(ScanInput).post_message(events.Paste(encode(STORED, "F00001") + "\r"))
    await pilot.pause()
    await settle(pilot, lambda: screen.phase == "second")
    return screen  # type: ignore[no-any-return]


@pytest.mark.req("BEDSIDE")
async def test_the_bedside_shows_name_and_birth_date_from_the_phi_store_then_erased(
        db: Path) -> None:
    app = bedside_app(db)
    svc = app.svc
    identity = svc.patient_identity(STORED)
    assert not isinstance(identity, str) and identity.name == "Demo Patient 6"
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await scan_bag(pilot)
        info = str(screen.query_one("#product-info", Static).render())
        assert f"Patient: Demo Patient 6  ·  born {identity.date_of_birth}" in info
        svc.erase_patient(svc.ledger.unlock("admin", demo_password("admin")), STORED,
                          "Request REQ-7", witness=svc.ledger.unlock("grace",
                                                                     demo_password("grace")))
        await pilot.press("escape")
        await settle(pilot, lambda: screen.phase == "scan")
        screen = await scan_bag(pilot)
        info = str(screen.query_one("#product-info", Static).render())
        assert "Patient: name: erased  ·  date of birth: erased" in info
        assert "Demo Patient 6" not in info


async def erase_form(pilot: Any, admin: AdminScreen, coi: str, reason: str,
                     until: str) -> str:
    """Fill the users screen's erase form (x) and sign; what the screen then says."""
    app = pilot.app
    await pilot.press("x")
    await settle(pilot, lambda: isinstance(app.screen, AdminForm))
    form = app.screen
    for name, value in (("coi", coi), ("reason", reason), ("witness", "grace"),
                        ("witness_password", demo_password("grace")),
                        ("password", demo_password("admin"))):
        form.query_one(f"#af-{name}", Input).value = value
    form.query_one("#af-password", Input).focus()
    await pilot.press("enter")
    await settle(pilot, lambda: until in str(admin.query_one("#admin-result").render()))
    return str(admin.query_one("#admin-result").render())


async def test_an_administrator_erases_a_patient_from_the_users_screen(db: Path) -> None:
    app = make_app(db, user="admin")
    phi_key = Path(str(db) + ".phikey")
    async with app.run_test(size=(110, 34)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("f5")
        await settle(pilot, lambda: isinstance(app.screen, AdminScreen))
        admin = app.screen
        assert isinstance(admin, AdminScreen)
        # a PHI key file others may read: said on the screen, nothing erased
        phi_key.chmod(0o644)
        said = await erase_form(pilot, admin, STORED, "Request REQ-2026-3", "Not done")
        assert "chmod 600" in said and last_entry(app.svc)["type"] != "patient.erased"
        phi_key.chmod(0o600)
        said = await erase_form(pilot, admin, STORED.lower(), "Request REQ-2026-3", "erased")
        entry = last_entry(app.svc)
        assert f"entry {entry['index']}" in said
        assert entry["type"] == "patient.erased" and entry["subject"] == STORED
        assert app.svc.patient_identity(STORED) == "erased"
        # a second time: refused, said on the screen
        said = await erase_form(pilot, admin, STORED, "again", "Refused")
        assert "already erased" in said
    app.svc.verify()


@pytest.mark.req("PHI-AT-REST")
async def test_the_enrolment_form_seals_name_and_birth_date_for_the_bedside(db: Path) -> None:
    app = make_app(db, user="alice")
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("f6")
        await settle(pilot, lambda: isinstance(app.screen, EnrolScreen))
        screen = app.screen
        assert isinstance(screen, EnrolScreen)

        async def enrol(dob: str, until: str) -> str:
            for key, value in (("patient", "MRN-TUI-1"), ("name", "Odile Tuiform"),
                               ("dob", dob), ("site", "A9999-HEMATOLOGY"), ("slot", "SLOT-9"),
                               ("password", demo_password("alice"))):
                screen.query_one(f"#enrol-{key}", Input).value = value
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: until in str(screen.query_one("#enrol-result").render()))
            return str(screen.query_one("#enrol-result").render())

        said = await enrol("1975-13-40", "Not enrolled")
        assert "YYYY-MM-DD" in said and screen.enrolled is None
        await enrol("1975-11-30", "ENROLLED")
        assert screen.enrolled is not None
        assert app.svc.patient_identity(screen.enrolled) == ("Odile Tuiform", "1975-11-30")
        for key in ("patient", "name", "dob"):  # the identifiers leave the screen
            assert screen.query_one(f"#enrol-{key}", Input).value == ""
