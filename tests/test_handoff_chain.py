"""The chain continues across organisations: what a hand-off brings is a product the receiver
works on as if it had been made there.

Two real ledgers: the clinic (collection and treatment centre) enrols, collects and ships; the
factory receives, takes the bag in at its receipt, makes, releases and ships the final bags
back (the return leg); the clinic receives them, takes them in and infuses. Each ledger replays
its process end to end (`coi verify`), and `coi verify-chain` checks the whole chain over the
files.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain.errors import ReplayError
from coi.domain.facts import Fact
from coi.domain.handoff_import import HANDOFF_RECEIVED, exported, take_in
from coi.domain.loader import load_process
from coi.export.bundle import Scope, export_bundle
from coi.ledger.clock import SystemClock
from coi.service.chain import CoiService
from coi.service.demo import PLAN, STEP_NAMES, Site, Walk, step
from coi.service.errors import Refused
from coi.service.handoff_receive import receive_handoff
from coi.service.ledger import LedgerService
from tests.test_handoff import CLINIC, FACTORY, Org, build, copy_org, pin, send, ship

runner = CliRunner()
CLINIC_FULL = (CLINIC[0], CLINIC[1], (*CLINIC[2], ("nina", "Nina Nurse", ("treatment",)),
                                      ("noah", "Noah Nurse", ("treatment",))))
FACTORY_FULL = (FACTORY[0], FACTORY[1], (*FACTORY[2], ("mo", "Mo Manufacturing",
                                                       ("manufacturing",)),
                                         ("quinn", "Quinn QC", ("qc",)),
                                         ("grace", "Grace QA", ("qa",)),
                                         ("colin", "Colin Courier", ("courier",))))


def _at(org: Org, w: Walk, t0: int, n: int) -> None:
    org.clock.set(t0 + PLAN[n][1])
    step(Site(svc=org.svc, people=org.people), w, n, org.clock.now_ms())


def _bundle(org: Org, coi: str, out: Path) -> Path:
    export_bundle(org.ledger.store, out, scope=Scope("coi", coi=coi),
                  checkpoint=org.ledger.checkpoint(), log_key=org.ledger.log_key(),
                  created_ms=org.clock.now_ms())
    return out


@pytest.mark.req("TRACKING")
def test_the_chain_goes_on_at_the_factory_and_back_at_the_clinic(tmp_path: Path) -> None:
    clinic = build(str(tmp_path / "clinic.db"), tmp_path / "clinic.key", CLINIC_FULL)
    factory = build(str(tmp_path / "factory.db"), tmp_path / "factory.key", FACTORY_FULL)
    pin(clinic, factory, "acme-factory", "manufacturing")
    pin(factory, clinic, "city-clinic", "treatment")
    coi = ship(clinic, 1)
    t0 = clinic.clock.now_ms() - PLAN[3][1]  # ship() enrolled at t0, picked up at t0 + PLAN[3]
    w = Walk(coi=coi, seq=1, din=f"A999826{1:06d}", bags=2, patient_id=f"MRN{1:06d}")
    h1 = send(clinic, coi, "acme-factory", tmp_path / "to-factory.jsonl")

    # At the factory: expected, in transit; nothing but the receipt moves it.
    factory.clock.set(clinic.clock.now_ms() + 60_000)
    receive_handoff(factory.svc, factory.people["maya"], h1)
    product = factory.svc.chain().product(coi)
    assert product is not None and product.state == "in_transit_to_manufacturing"
    assert set(product.steps) >= {"enrolment", "apheresis_collection", "courier_pickup"}
    assert "fresh_product" in product.windows  # started at the clinic, still running
    with pytest.raises(Refused, match="needs receipt at manufacturing first"):
        factory.svc.record("activation", coi, actor=factory.people["maya"],
                           fields={"reagent_lot": "TA-2611"})
    assert [e["coi"] for e in factory.svc.status()["expected"]] == [coi]
    for n in range(STEP_NAMES.index("receipt_at_manufacturing"), STEP_NAMES.index("shipment")):
        _at(factory, w, t0, n)
    assert factory.svc.status()["expected"] == []
    factory.clock.set(t0 + PLAN[STEP_NAMES.index("shipment")][1])
    factory.svc.record("shipment", coi, actor=factory.people["colin"],
                       fields={"shipper_id": "DRY0001", "logger_id": "LGR0001",
                               "receiver": "CITY-CLINIC"})
    h2 = send(factory, coi, "city-clinic", tmp_path / "to-clinic.jsonl")

    # A product the clinic disposed of meanwhile is not taken over (refused, recorded).
    gone = copy_org(clinic, tmp_path / "gone")
    gone.svc.record("disposal", coi, actor=gone.people["nina"],
                    fields={"grounds": "Lost in transit, declared destroyed"})
    before = gone.count()
    with pytest.raises(Refused, match="is at 'disposed' here, not shipped out") as e:
        receive_handoff(gone.svc, gone.people["nina"], h2)
    assert e.value.recorded_index == before and gone.count() == before + 1
    gone.ledger.engine.dispose()

    # The return leg: the clinic takes its product back, shipped, with the final bags.
    clinic.clock.set(factory.clock.now_ms() + 60_000)
    receive_handoff(clinic.svc, clinic.people["nina"], h2)
    back = clinic.svc.chain().product(coi)
    assert back is not None and back.state == "shipped"
    assert {k: i.status for k, i in back.items.items()} == {
        "C00001": "consumed", "F00001": "shipped", "F00002": "shipped"}
    assert [e["coi"] for e in clinic.svc.status()["expected"]] == [coi]
    with pytest.raises(Refused):
        clinic.svc.record("storage", coi, actor=clinic.people["nina"],
                          fields={"location": "LN2", "temperature_c": "-150"})
    for n in range(STEP_NAMES.index("receipt_at_treatment"), len(PLAN)):
        _at(clinic, w, t0, n)
    done = clinic.svc.chain().product(coi)
    assert done is not None and done.state == "infused"
    assert clinic.svc.status()["expected"] == []

    for org in (clinic, factory):  # every process entry replayed, the state table compared
        org.ledger.engine.dispose()
        res = runner.invoke(app, ["verify", "--db", org.db])
        assert res.exit_code == 0, res.output
    files = [h1, _bundle(factory, coi, tmp_path / "factory.jsonl"), h2,
             _bundle(clinic, coi, tmp_path / "clinic.jsonl")]
    keys = ["--trust", clinic.ledger.log_verifier_key(), "--trust",
            factory.ledger.log_verifier_key()]
    res = runner.invoke(app, ["verify-chain", "--coi", coi, *keys, *map(str, files)])
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().endswith("verified across 2 organisation(s), 2 hand-off(s)")
    assert "window OK: fresh-product: started at" in res.output


_PROCESS = load_process()


def _fact(data: object) -> Fact:
    return Fact(index=7, time_ms=1, type=HANDOFF_RECEIVED, subject="CHA999826000001",
                data={"state": data}, signers=())


def test_a_malformed_carried_state_is_a_replay_error() -> None:
    process = load_process()
    good = {"state": "shipped", "steps": ["shipment"], "items": {}, "windows": {},
            "labels": {}, "patient_commitment": None}
    taken = take_in(process, None, _fact(good))
    assert taken is not None and taken.state == "shipped" and taken.steps == {"shipment": [7]}
    for bad in ({**good, "state": "none"}, {**good, "state": "nowhere"},
                {**good, "steps": ["no_such_step"]}, {**good, "extra": 1}, [],
                {**good, "items": {"C1": {"kind": "nothing", "status": "x"}}},
                {**good, "windows": {"w": {"name": "fresh_product", "item": None,
                                           "started_by": "apheresis_collection",
                                           "start_ms": "1", "opens_ms": None,
                                           "deadline_ms": 2}}},
                {**good, "windows": {"w": {"name": "fresh_product", "item": None,
                                           "started_by": "nothing", "start_ms": 1,
                                           "opens_ms": None, "deadline_ms": 2}}}):
        with pytest.raises(ReplayError):
            take_in(process, None, _fact(bad))


@pytest.mark.req("TRACKING")
def test_the_federation_demo_prints_a_verify_chain_command_that_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COI_DATABASE_URL", raising=False)  # the manufacturer on SQLite here
    root = tmp_path / "fed"
    res = runner.invoke(app, ["demo", "--federation", str(root), "--no-tui"])
    assert res.exit_code == 0, res.output
    last = res.output.rstrip().splitlines()[-1]
    assert last.startswith("coi verify-chain --coi CHA99982")
    res_demo = res.output
    for org in ("collection-centre", "manufacturer", "treatment-centre"):
        assert f"{org} FIN A999" in res.output
        db = str(root / org / "coi.db")
        verified = runner.invoke(app, ["verify", "--db", db])
        assert verified.exit_code == 0, verified.output
        if org != "treatment-centre":  # a sender: pinned by its partner's cosignature
            assert "pinned: consistent with the checkpoint of" in verified.output
    # Products at every stage, one expected at each receiving organisation, one stopped at the
    # treatment centre after the patient's lymphodepletion; each product's stage at each
    # organisation it reached, from that organisation's ledger.
    assert "manufacturer: expected (hand-off from collection-centre)" in res.output
    assert "treatment-centre: expected (hand-off from manufacturer)" in res.output
    stages = res.output.split("Products")[1].split("Open an organisation")[0]
    coi_year = last.split("--coi CHA9998")[1][:2]
    assert [x.split()[0] for x in stages.splitlines()
            if x.endswith("  treatment-centre: lymphodepletion")] == [f"CHA9998{coi_year}000002"]
    assert ("    collection-centre  courier_pickup, handed off to manufacturer; state "
            "in_transit_to_manufacturing\n"
            "    manufacturer       shipment, handed off to treatment-centre; state shipped\n"
            "    treatment-centre   lymphodepletion; state stored\n") in stages
    assert "    treatment-centre   infusion; state infused\n" in stages
    assert ("    manufacturer       expected (hand-off from collection-centre); state "
            "in_transit_to_manufacturing\n") in stages
    # How to open each organisation's TUI: its database, as the command line takes it.
    for org, user in (("collection-centre", "alice"), ("manufacturer", "maya"),
                      ("treatment-centre", "nina")):
        line = next(x for x in res.output.splitlines() if x.startswith(f"  {org} ")
                    and "coi tui" in x)
        command = shlex.split(line.split("coi tui", 1)[1].split("   (e.g.")[0])
        assert command == ["--db", str(root / org / "coi.db")] and f"as {user})" in line
    status = runner.invoke(app, ["status", "--db", str(root / "treatment-centre" / "coi.db")])
    assert "expected from partners" in status.output
    monkeypatch.chdir(root)  # the command's paths are relative to the folder
    res = runner.invoke(app, shlex.split(last)[1:])
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().endswith("verified across 3 organisation(s), 2 hand-off(s)")
    assert "window OK: fresh-product: started at collect.demo" in res.output  # across sites
    # That product went the whole chain: collected, made, received, and infused at the
    # treatment centre after its bedside check (witnessed), every bag scan accepted.
    coi = shlex.split(last)[shlex.split(last).index("--coi") + 1]
    timeline = [(line.split()[3].split(".")[0], line.split()[5])
                for line in res.output.splitlines() if line.startswith("  20") and " UTC " in line]
    origins = [o for o, _t in timeline]
    assert origins.index("collect") < origins.index("make") < origins.index("treat")
    assert [t for o, t in timeline if o == "treat"][-3:] == [
        "step.thaw", "step.bedside_verification", "step.infusion"]
    assert timeline[-1] == ("treat", "step.infusion")
    assert "(nina, noah)" in res.output  # the bedside check, verified by a second nurse
    shown = runner.invoke(app, ["show", coi, "--db", "treatment-centre/coi.db"])
    assert f"{coi}  state: infused" in shown.output
    assert "scan_refused" not in shown.output and "refusal" not in shown.output
    # The treatment centre keeps that patient (for the wristband) only under its commitment.
    treat = CoiService(LedgerService.open("treatment-centre/coi.db", None, clock=SystemClock()))
    with pytest.raises(Refused, match="does not match"):
        treat.keep_received_patient(coi, bytes(32), {"patient_id": "MRN000001"})
    secret = treat.patient_secret(coi)
    assert secret is not None
    with pytest.raises(Refused, match="already kept"):
        treat.keep_received_patient(coi, secret, {"patient_id": "MRN000001"})
    elsewhere = next(line.split()[0] for line in res_demo.splitlines()
                     if line.endswith("manufacturer: expected (hand-off from collection-centre)"))
    with pytest.raises(Refused, match="has not come here"):
        treat.keep_received_patient(elsewhere, secret, {"patient_id": "MRN000005"})
    treat.ledger.engine.dispose()
    # Never over an existing folder.
    res = runner.invoke(app, ["demo", "--federation", str(root), "--no-tui"])
    assert res.exit_code != 0 and "not an empty folder" in res.output


@pytest.mark.postgres
def test_the_federation_demo_puts_the_manufacturer_on_postgresql(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    monkeypatch.setenv("COI_DATABASE_URL", pg_url)
    monkeypatch.delenv("COI_LOG_KEY", raising=False)
    root = tmp_path / "fed"
    res = runner.invoke(app, ["demo", "--federation", str(root), "--no-tui"])
    assert res.exit_code == 0, res.output
    assert "manufacturer on PostgreSQL" in res.output
    assert pg_url not in res.output  # a URL may hold a password: never printed
    logkey = root / "manufacturer" / "coi.logkey"
    assert logkey.is_file()
    assert (f"  manufacturer       coi tui --log-key {shlex.quote(str(logkey))} "
            "(COI_DATABASE_URL as now)") in res.output
    res2 = runner.invoke(app, ["verify", "--db", pg_url])
    assert res2.exit_code == 0, res2.output
    monkeypatch.chdir(root)
    last = res.output.rstrip().splitlines()[-1]
    done = runner.invoke(app, shlex.split(last)[1:])
    assert done.exit_code == 0, done.output


def test_a_window_started_at_the_clinic_is_checked_at_the_factory(tmp_path: Path) -> None:
    """The fresh-product window (48 h from collection to the receipt at manufacturing) runs
    across the two organisations: a receipt at the factory after it is refused there and the
    deviation opened, as at one site."""
    clinic = build(str(tmp_path / "clinic.db"), tmp_path / "clinic.key", CLINIC)
    factory = build(str(tmp_path / "factory.db"), tmp_path / "factory.key", FACTORY)
    pin(clinic, factory, "acme-factory", "manufacturing")
    pin(factory, clinic, "city-clinic", "collection")
    coi = ship(clinic, 1)
    h1 = send(clinic, coi, "acme-factory", tmp_path / "h1.jsonl")
    factory.clock.set(clinic.clock.now_ms() + 60_000)
    receive_handoff(factory.svc, factory.people["maya"], h1)
    window = factory.svc.chain().product(coi).windows["fresh_product"]  # type: ignore[union-attr]
    factory.clock.set(window.deadline_ms + 3_600_000)
    with pytest.raises(Refused, match="fresh-product") as e:
        factory.svc.record("receipt_at_manufacturing", coi, actor=factory.people["maya"],
                           fields={"outcome": "accept", "logger": "in_range",
                                   "temperature_c": "5.0", "paperwork": coi},
                           entry_methods={"paperwork": "scanner"})
    assert e.value.recorded_index is not None
    product = factory.svc.chain().product(coi)
    assert product is not None and product.state == "in_transit_to_manufacturing"
    assert [d.kind for d in product.open_deviations()] != []  # opened by itself
    factory.ledger.engine.dispose()
    assert runner.invoke(app, ["verify", "--db", factory.db]).exit_code == 0


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_STATE_KEYS = ("state", "steps", "items", "windows", "labels", "patient_commitment")


_names = st.sampled_from(sorted(_PROCESS.steps))
_window = st.fixed_dictionaries({
    "name": st.sampled_from(sorted(_PROCESS.windows)) | _json, "item": st.none() | _json,
    "started_by": _names | _json, "start_ms": st.integers() | _json,
    "opens_ms": st.none() | st.integers(), "deadline_ms": st.integers() | _json})
_carried = st.fixed_dictionaries({
    "state": st.sampled_from(_PROCESS.states) | _json,
    "steps": st.lists(_names, max_size=3) | _json,
    "items": st.dictionaries(st.text(max_size=6), st.fixed_dictionaries({
        "kind": st.sampled_from(sorted(_PROCESS.items)) | _json, "status": _json}),
        max_size=2) | _json,
    "windows": st.dictionaries(st.text(max_size=6), _window, max_size=2) | _json,
    "labels": st.dictionaries(st.text(max_size=6), st.fixed_dictionaries({
        "item": _json, "status": _json, "replaces": _json}), max_size=2) | _json,
    "patient_commitment": st.none() | _json})


@given(_carried | st.fixed_dictionaries(dict.fromkeys(_STATE_KEYS, _json)) | _json)
def test_a_carried_state_is_taken_in_or_refused_as_a_replay_error(data: object) -> None:
    try:
        taken = take_in(_PROCESS, None, _fact(data))
    except ReplayError:
        return
    assert taken is None or taken.state in _PROCESS.states


def test_what_is_exported_is_taken_in_as_it_was(tmp_path: Path) -> None:
    clinic = build(str(tmp_path / "clinic.db"), tmp_path / "clinic.key", CLINIC)
    coi = ship(clinic, 1)
    sent = clinic.svc.chain().product(coi)
    assert sent is not None
    taken = take_in(_PROCESS, None, Fact(index=3, time_ms=sent.last_time_ms + 1,
                                        type=HANDOFF_RECEIVED, subject=coi,
                                        data={"state": exported(sent)}, signers=()))
    assert taken is not None and exported(taken) == exported(sent)
    assert set(taken.steps) == set(sent.steps) and taken.custodian is None
