"""A receiving station shows the products expected from partners (received by hand-off, not yet
taken in), on the federation demo's treatment centre ledger."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from coi.service.chain import CoiService
from coi.service.demo import demo_password
from coi.service.demo_federation import build_federation
from coi.tui.app import CoiApp
from tests.test_tui import open_station


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
