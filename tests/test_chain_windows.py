"""`coi verify-chain` checks the stability windows that cross organisations from the files alone.

Two real ledgers: the clinic collects (the fresh-product window of 48 h starts) and ships; the
factory receives the file and takes the bag in at its receipt (which ends the window). The
signed times of the two entries, on two ledgers, are compared directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain.loader import load_process
from coi.export.bundle import Scope, export_bundle
from coi.export.chain_windows import WindowReport, check_windows
from coi.ledger.entry import Statement
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


# ------------------------------------------------------------------- the rule over the entries
_P = load_process()
A, B = "a.example/a9998", "b.example/a9997"
D = 24 * H


def _st(origin: str, index: int, time_ms: int, type_: str, **data: Any) -> Statement:
    return Statement(log=origin, index=index, prev=bytes(32), time_ms=time_ms, tz="UTC",
                     type=type_, subject="CHA999826000001", signers=(), data=data)


def _received(origin: str, index: int, time_ms: int, sender: str, shipment: int,
              windows: Any) -> Statement:
    return _st(origin, index, time_ms, "handoff.received", sender_origin=sender,
               shipment={"index": shipment, "hash": "00" * 32},
               state={"windows": windows})


def _lympho(start: int, carried_start: int | None = None) -> dict[str, dict[int, Statement]]:
    """Lymphodepletion at A (the window of 2 to 14 days opens), infusion at B."""
    carried = {"lymphodepletion_to_infusion": {
        "name": "lymphodepletion_to_infusion", "item": None, "started_by": "lymphodepletion",
        "start_ms": start if carried_start is None else carried_start,
        "opens_ms": start + 2 * D, "deadline_ms": start + 14 * D}}
    return {A: {5: _st(A, 5, start, "step.lymphodepletion", regimen="flu/cy"),
                6: _st(A, 6, start + H, "step.shipment", receiver="B")},
            B: {3: _received(B, 3, start + 2 * H, A, 6, carried)}}


def test_a_step_before_the_window_opens_is_too_early() -> None:
    entries = _lympho(0)
    entries[B][9] = _st(B, 9, D, "step.infusion", item="F00001")
    r = check_windows(entries, {A: _P, B: _P})
    assert r.checked == [] and len(r.problems) == 1
    assert "lymphodepletion-to-infusion: started at a.example/a9998 entry 5" in r.problems[0]
    assert "checked at b.example/a9997 entry 9 (step.infusion): 24 h, limit 14 d, " \
           "minimum 48 h: too early, 24 h before the window opened" in r.problems[0]
    entries[B][9] = _st(B, 9, 3 * D, "step.infusion", item="F00001")
    assert check_windows(entries, {A: _P, B: _P}).problems == []


def test_a_carried_start_that_is_not_the_signed_one_is_a_problem() -> None:
    entries = _lympho(0, carried_start=D)  # the receiver took in a later start
    entries[B][9] = _st(B, 9, 4 * D, "step.infusion", item="F00001")
    (problem,) = check_windows(entries, {A: _P, B: _P}).problems
    assert f"carries it as started at {D} ms, not the 0 ms signed by {A}" in problem


def test_an_unknown_process_is_said_not_checked() -> None:
    entries = _lympho(0)
    (problem,) = check_windows(entries, {A: _P, B: "its genesis names no process"}).problems
    assert problem == f"the windows at {B} are not checked: its genesis names no process"


def test_a_window_started_and_checked_on_one_ledger_is_left_to_that_site() -> None:
    entries = {A: {5: _st(A, 5, 0, "step.lymphodepletion", regimen="x"),
                   9: _st(A, 9, D, "step.infusion", item="F00001")}}
    assert check_windows(entries, {A: _P}) == WindowReport([], [])


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
_types = st.sampled_from(sorted({s.entry_type for s in _P.steps.values()} | {"handoff.received"}))
_near = st.sampled_from([  # values close to real ones, so the walk goes deep
    A, B, 3, "F00001", "fresh_product", "lymphodepletion_to_infusion", "proceed",
    {"index": 2, "hash": "00" * 32}, {"index": True}, {"windows": []},
    {"windows": {"fresh_product": {"start_ms": 0}}},
    {"windows": {"lymphodepletion_to_infusion": {"start_ms": "0"}}}])
_keys = st.sampled_from(["item", "window", "deviation", "disposition", "sender_origin",
                         "shipment", "state"])


@given(st.lists(st.tuples(st.sampled_from([A, B]), _types, st.integers(0, 30 * D),
                          st.dictionaries(_keys, _json | _near, max_size=4)), max_size=12))
def test_whatever_the_signed_data_the_window_check_only_reports(
        raw: list[tuple[str, str, int, dict[str, Any]]]) -> None:
    """Partners sign what they like: the check says what is wrong, it never crashes."""
    entries: dict[str, dict[int, Statement]] = {}
    for n, (origin, type_, t, data) in enumerate(raw):
        entries.setdefault(origin, {})[n] = _st(origin, n, t, type_, **data)
    r = check_windows(entries, {A: _P, B: _P})
    assert all(isinstance(p, str) for p in r.problems + r.checked)
