"""A receiving station shows the products expected from partners (received by hand-off, not yet
taken in), on the federation demo's treatment centre ledger (the database the demo prints
`coi tui --db` for), and takes the bag in by scanning the label the manufacturer printed signed
there, a plain scan of it refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual import events
from textual.widgets import Button, Static

from coi.domain import payload
from coi.service.chain import CoiService
from coi.service.demo import demo_password
from coi.service.demo_federation import build_federation
from coi.tui.app import CoiApp
from coi.tui.screens.alert import AlertScreen
from coi.tui.widgets.scan_input import ScanInput
from tests.test_demo_federation import qr_payload
from tests.test_tui import open_station
from tests.tui_support import last_entry, settle


@pytest.fixture(scope="module")
def treatment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("fed") / "demo"
    fed = build_federation(root)
    arriving = [c for c, where in fed.products.items()
                if where.startswith("treatment-centre: expected")]
    assert len(arriving) == 1
    return root / "treatment-centre" / "coi.db", arriving[0]


async def _title(db: Path, step: str) -> str:
    app = CoiApp(CoiService.open(str(db)), station=step)
    app.session.login("nina", demo_password("nina"))
    async with app.run_test(size=(140, 30)) as pilot:
        screen = await open_station(pilot, step)
        return str(screen.query_one("#station-title", Static).render())


async def test_the_receipt_station_lists_what_is_expected(treatment: tuple[Path, str]) -> None:
    db, coi = treatment
    title = await _title(db, "receipt_at_treatment")
    assert f"Expected from partners: {coi} from manufacturer (F00001, F00002)" in title
    assert "Expected" not in await _title(db, "storage")  # not a receiving station


async def test_the_receipt_takes_the_bag_in_by_its_signed_label(
        treatment: tuple[Path, str]) -> None:
    db, coi = treatment
    signed = qr_payload(db.parent.parent / "manufacturer" / "labels" / f"{coi}-F00001.zpl")
    assert signed.startswith("COS1")
    app = CoiApp(CoiService.open(str(db)), station="receipt_at_treatment")
    app.session.login("nina", demo_password("nina"))
    async with app.run_test(size=(140, 30)) as pilot:
        screen = await open_station(pilot, "receipt_at_treatment")
        scan = screen.query_one(ScanInput)
        scan.post_message(events.Paste("]Q1" + payload.encode(coi, "F00001") + "\r"))
        await settle(pilot, lambda: isinstance(app.screen, AlertScreen))
        alert = app.screen
        assert isinstance(alert, AlertScreen)
        assert "printed signed by partner manufacturer" in alert.reason
        refused = last_entry(app.svc)
        assert refused["type"] == "system.scan_refused" and refused["subject"] == coi
        ack = alert.query_one("#alert-ack", Button)
        await settle(pilot, lambda: not ack.disabled)
        ack.press()
        await settle(pilot, lambda: app.screen is screen)
        scan.post_message(events.Paste("]Q1" + signed + "\r"))
        await settle(pilot, lambda: screen.phase == "second")  # the paperwork next
