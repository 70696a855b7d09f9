"""`coi verify-chain` checks the stability windows that cross organisations from the files alone.

Two real ledgers: the clinic collects (the fresh-product window of 48 h starts) and ships; the
factory receives the file and takes the bag in at its receipt (which ends the window). The
signed times of the two entries, on two ledgers, are compared directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.export.bundle import Scope, export_bundle
from coi.ledger.keys import generate
from coi.service.errors import Refused
from coi.service.handoff_receive import receive_handoff
from coi.service.ledger import Party, Unlocked
from tests.test_handoff import (
    CLINIC,
    FACTORY,
    H,
    Org,
    _template,
    copy_org,
    pin,
    pw,
    send,
    ship,
)

runner = CliRunner()
RECEIPT = {"outcome": "accept", "logger": "in_range", "temperature_c": "5.0"}


@pytest.fixture
def received(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
             ) -> tuple[Org, Org, str, Path, int]:
    """The clinic shipped a product; the factory received the file (not yet the bag)."""
    root = tmp_path_factory.mktemp("windows")
    clinic = copy_org(_template(root, "clinic", CLINIC), tmp_path / "c")
    factory = copy_org(_template(root, "factory", FACTORY), tmp_path / "f")
    pin(clinic, factory, "acme-factory", "manufacturing")
    pin(factory, clinic, "city-clinic", "collection")
    key = generate()  # QA, who dispositions a deviation (kept unlocked: no second scrypt)
    factory.ledger.enrol(factory.people["admin"], user="grace", name="Grace QA", roles=["qa"],
                         password=pw("grace"), key=key)
    factory.people["grace"] = Unlocked("grace", key)
    coi = ship(clinic, 1)
    h1 = send(clinic, coi, "acme-factory", tmp_path / "h1.jsonl")
    factory.clock.set(clinic.clock.now_ms() + 60_000)
    receive_handoff(factory.svc, factory.people["maya"], h1)
    product = factory.svc.chain().product(coi)
    assert product is not None
    return clinic, factory, coi, h1, product.windows["fresh_product"].deadline_ms


def _chain(clinic: Org, factory: Org, coi: str, h1: Path, out: Path) -> tuple[int, str]:
    export_bundle(factory.ledger.store, out, scope=Scope("coi", coi=coi),
                  checkpoint=factory.ledger.checkpoint(), log_key=factory.ledger.log_key(),
                  created_ms=factory.clock.now_ms())
    res = runner.invoke(app, ["verify-chain", "--coi", coi,
                              "--trust", clinic.ledger.log_verifier_key(),
                              "--trust", factory.ledger.log_verifier_key(), str(h1), str(out)])
    return res.exit_code, res.output


def test_a_receipt_in_time_passes(received: tuple[Org, Org, str, Path, int], tmp_path: Path
                                  ) -> None:
    clinic, factory, coi, h1, deadline = received
    factory.clock.set(deadline - H)
    factory.svc.record("receipt_at_manufacturing", coi, actor=factory.people["maya"],
                       fields=RECEIPT)
    code, out = _chain(clinic, factory, coi, h1, tmp_path / "f.jsonl")
    assert code == 0, out
    assert f"window OK: fresh-product: started at {CLINIC[0]} entry " in out
    assert f"checked at {FACTORY[0]} entry " in out and "47 h, limit 48 h: within" in out


@pytest.mark.req("SEQUENCE")
def test_a_receipt_after_the_window_is_reported(received: tuple[Org, Org, str, Path, int],
                                                 tmp_path: Path) -> None:
    """Late and let through (the receiving site's software did not check the carried window,
    or its operator went round it): the two signed times say so, exit 1."""
    clinic, factory, coi, h1, deadline = received
    late = copy_org(factory, tmp_path / "late")
    late.clock.set(deadline + 3 * H)
    # Signed by the receiving person, appended past the process rules: only verify-chain,
    # which trusts no site's software, can see the breach.
    late.ledger.append("step.receipt_at_manufacturing", coi, RECEIPT,
                       [Party(late.people["maya"], "authored")], internal=True)
    code, out = _chain(clinic, late, coi, h1, tmp_path / "late.jsonl")
    assert code == 1, out
    problem = next(line for line in out.splitlines() if line.startswith("PROBLEM: fresh-product"))
    assert f"started at {CLINIC[0]} entry " in problem
    assert "(step.apheresis_collection)" in problem
    assert f"checked at {FACTORY[0]} entry " in problem and "(step.receipt_at_manufacturing)" \
        in problem
    assert "51 h, limit 48 h: exceeded by 3 h" in problem
    assert "no deviation for it was dispositioned 'proceed'" in problem
    assert "does not hold (1 problem(s))" in out


def test_a_late_receipt_handled_by_a_deviation_passes_and_is_shown(
        received: tuple[Org, Org, str, Path, int], tmp_path: Path) -> None:
    """As at a single site: the late receipt is refused and opens a window deviation; QA
    dispositions it 'proceed' and the receipt is recorded. verify-chain shows the breach and how
    it was handled; the chain holds."""
    clinic, factory, coi, h1, deadline = received
    factory.clock.set(deadline + 2 * H)
    with pytest.raises(Refused, match="fresh-product"):
        factory.svc.record("receipt_at_manufacturing", coi, actor=factory.people["maya"],
                           fields=RECEIPT)
    product = factory.svc.chain().product(coi)
    assert product is not None
    (dev,) = product.open_deviations()
    factory.svc.record("deviation_disposition", coi, actor=factory.people["grace"],
                       fields={"deviation": str(dev.index), "disposition": "proceed",
                               "rationale": "Within the validated stability data"})
    factory.svc.record("receipt_at_manufacturing", coi, actor=factory.people["maya"],
                       fields=RECEIPT)
    code, out = _chain(clinic, factory, coi, h1, tmp_path / "f.jsonl")
    assert code == 0, out
    line = next(ln for ln in out.splitlines() if ln.startswith("window OK: fresh-product"))
    assert "exceeded by 2 h" in line
    assert f"handled: deviation {dev.index} at {FACTORY[0]}, dispositioned 'proceed'" in line
