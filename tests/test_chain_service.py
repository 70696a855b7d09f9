"""The chain-of-identity service (CoiService) on real ledgers: what a site sees end to end.

The rule matrices themselves are tested on the pure domain (tests/test_state.py); here the same
rules are driven through the service that records them: every refusal lands in the ledger as a
site-signed ``system.refusal`` and changes no state, windows open deviations, release is gated,
people who are locked, revoked or reset cannot sign, patients stay outside the ledger, Part 11
sessions time out, signatures carry name, time and meaning, and ``coi verify`` replays it all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain.replay import replay
from coi.service.chain import CoiService, fact_of, refuse_process_types
from coi.service.demo import demo_password, label_bags
from coi.service.errors import Refused, VerificationError
from coi.service.session import SigningSession
from tests.chain_site import (
    MIN,
    T0,
    ChainSite,
    D,
    H,
    PWalk,
    copy_site,
    do,
    new_site,
    new_walk,
    plan_index,
    walk,
)

runner = CliRunner()


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> ChainSite:
    return copy_site(tmp_path_factory.getbasetemp() / "chain-template", tmp_path / "site")


# ------------------------------------------------------------------------------------- helpers


def snapshot(site: ChainSite, coi: str) -> dict[str, Any]:
    """Everything a refusal must leave alone: the state row and the chain state of ``coi``."""
    product = site.svc.chain().product(coi)
    return {"row": site.state_row(coi),
            "chain": product.to_json() if product is not None else None}


def refused(site: ChainSite, coi: str, fn: Any, *, contains: str) -> dict[str, Any]:
    """Run ``fn``, expect a refusal saying ``contains``; check it is recorded and changed nothing.

    Returns the recorded ``system.refusal`` entry.
    """
    before = snapshot(site, coi)
    size = site.entry_count()
    with pytest.raises(Refused) as exc:
        fn()
    assert contains in exc.value.reason, exc.value.reason
    idx = exc.value.recorded_index
    assert idx is not None and idx >= size
    entry = site.entry(idx)
    assert entry["type"] == "system.refusal"
    assert entry["signer"] == "@site"
    assert entry["subject"] == coi
    assert any(contains in r for r in entry["data"]["reasons"])
    assert snapshot(site, coi) == before
    return entry


def record(site: ChainSite, step: str, coi: str, who: str, *, witness: str | None = None,
           item: str | None = None, **fields: str) -> Any:
    return site.svc.record(step, coi, actor=site.people[who],
                           witness=site.people[witness] if witness else None, item=item,
                           fields=fields)


def scanned(site: ChainSite, step: str, coi: str, who: str, *, witness: str | None = None,
            item: str | None = None, **fields: str) -> Any:
    """As a scan station records: every field it can scan, scanned (a burst of key presses)."""
    return site.svc.record(step, coi, actor=site.people[who],
                           witness=site.people[witness] if witness else None, item=item,
                           fields=fields, entry_methods=dict.fromkeys(fields, "scanner"))


def close_deviation(site: ChainSite, coi: str, dev: int, *, by: str = "grace",
                    disposition: str = "proceed") -> None:
    site.advance(10 * MIN)
    record(site, "deviation_disposition", coi, by, deviation=str(dev), disposition=disposition,
           rationale="Reviewed the logger trace against the stability data")
    site.advance(10 * MIN)
    record(site, "deviation_close", coi, by, deviation=str(dev),
           summary="Closed after QA review")


def infuse(site: ChainSite, w: PWalk, bag: str, at: int) -> None:
    """Thaw, bedside check (two nurses and the wristband) and infusion of one final bag."""
    site.at(at)
    record(site, "thaw", w.coi, "nina", item=bag, method="water_bath")
    site.advance(15 * MIN)
    scanned(site, "bedside_verification", w.coi, "nina", witness="noah", item=bag,
            scanned_coi=w.coi, scanned_bag=bag, wristband=w.patient_id)
    site.advance(10 * MIN)
    record(site, "infusion", w.coi, "nina", item=bag,
           infusion_started_ms=str(site.clock.now_ms()))


def cli_verify(db: str) -> Any:
    return runner.invoke(app, ["verify", "--db", db])


def ledger_bytes(site: ChainSite) -> list[bytes]:
    """Every column of every ledger row, as bytes."""
    out = []
    for r in site.sql("SELECT idx, prev_hash, entry_hash, time_ms, type, subject, signer, "
                      "statement, signatures FROM ledger_entry ORDER BY idx"):
        out.append(b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in r))
    return out


# ------------------------------------------------------------------------------- end to end


@pytest.mark.req("TRACKING")
def test_one_product_end_to_end(site: ChainSite) -> None:
    """Enrolment to infusion of three bags, a temperature excursion closed by QA, a correction."""
    w = new_walk(site, excursion=True, bags=3, start_ms=T0 + H)
    walk(site, w, until="receipt_at_manufacturing")
    rec = do(site, w)  # logger=excursion at receipt
    assert len(rec.auto_deviations) == 1
    dev = rec.auto_deviations[0]
    opened = site.entry(dev)
    assert opened["type"] == "deviation.open"
    assert opened["data"]["kind"] == "temperature_excursion"
    assert site.state_row(w.coi)[0] == "received"  # type: ignore[index]

    walk(site, w, until="qa_release")
    product = site.svc.chain().product(w.coi)
    assert product is not None
    assert sorted(product.items) == ["C00001", "F00001", "F00002", "F00003"]
    formulation = product.steps["formulation"][0]
    refused(site, w.coi, lambda: do(site, w, plan_index("qa_release")),
            contains=f"deviation {dev} is open")

    close_deviation(site, w.coi, dev)
    site.advance(H)
    corr = record(site, "correction", w.coi, "maya", corrects=str(formulation),
                  reason="Volume transcribed from the wrong line of the batch record",
                  volume_ml="72").entry.index
    walk(site, w, until="thaw")  # release, shipment, receipt, storage, lymphodepletion
    lympho = site.svc.chain().product(w.coi).steps["lymphodepletion"][0]  # type: ignore[union-attr]
    lympho_ms = site.entry(lympho)["statement"]["time"]
    for n, bag in enumerate(("F00001", "F00002", "F00003")):
        infuse(site, w, bag, lympho_ms + 4 * D + n * H)

    product = site.svc.chain().product(w.coi)
    assert product is not None and product.state == "infused"
    assert {k: v.status for k, v in product.items.items()} == {
        "C00001": "consumed", "F00001": "infused", "F00002": "infused", "F00003": "infused"}
    assert product.open_deviations() == []
    assert product.deviations[dev].disposition == "proceed"
    assert product.corrections == {formulation: [corr]}
    assert site.state_row(w.coi)[0] == "infused"  # type: ignore[index]

    view = site.svc.show(w.coi)
    by_index = {t["index"]: t for t in view["timeline"]}
    assert by_index[formulation]["data"]["volume_ml"] == "70"  # the original stays visible
    assert by_index[formulation]["corrected_by"] == [corr]
    assert by_index[corr]["data"]["corrects"] == formulation
    assert by_index[corr]["data"]["values"] == {"volume_ml": "72"}
    assert all(t["signature_ok"] for t in view["timeline"])
    steps = [t["type"] for t in view["timeline"]]
    assert steps.count("step.infusion") == 3
    assert "system.refusal" in steps  # the refused release is on the product's timeline

    site.svc.verify()
    site.svc.ledger.engine.dispose()
    res = cli_verify(site.db)
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"OK: {site.entry_count()} entries verified")


# ------------------------------------------------------------------------------------ refusals


@pytest.fixture
def in_transit(site: ChainSite) -> tuple[ChainSite, PWalk]:
    """A product on its way to the factory (collected, labelled, packaged, picked up)."""
    w = new_walk(site, start_ms=T0 + H)
    walk(site, w, until="receipt_at_manufacturing")
    return site, w


RECEIPT = {"outcome": "accept", "logger": "in_range", "temperature_c": "5.0"}


@pytest.mark.parametrize(("who", "witness", "step", "fields", "item", "contains"), [
    pytest.param("alice", None, "receipt_at_manufacturing", RECEIPT, None,
                 "Only manufacturing may record 'Receipt at manufacturing'; alice has roles: "
                 "apheresis", id="wrong-role"),
    pytest.param("grace", None, "receipt_at_manufacturing", RECEIPT, None,
                 "grace has roles: qa", id="qa-is-not-manufacturing"),
    pytest.param("maya", None, "activation", {"reagent_lot": "TA-1"}, None,
                 "Activation needs", id="out-of-order"),
    pytest.param("maya", None, "harvest", {"viable_cells": "1", "viability_pct": "90"}, None,
                 "Harvest needs", id="far-out-of-order"),
    pytest.param("alice", None, "labelling", {"labels_applied": "1"}, None,
                 "'Labelling' was already recorded", id="repeat"),
    pytest.param("maya", "maya", "receipt_at_manufacturing", RECEIPT, None,
                 "a witness must be a different person from the author", id="self-witness"),
    pytest.param("maya", None, "receipt_at_manufacturing", {**RECEIPT, "outcome": "maybe"},
                 None, "maybe", id="bad-enum"),
    pytest.param("maya", None, "receipt_at_manufacturing", {"outcome": "accept"}, None,
                 "logger", id="missing-field"),
    pytest.param("maya", None, "receipt_at_manufacturing", RECEIPT, "F00001",
                 "do not name an item", id="item-on-a-whole-product-step"),
    pytest.param("nina", None, "thaw", {"method": "water_bath"}, "F00001",
                 "Thaw needs", id="thaw-before-anything"),
    pytest.param("maya", None, "no_such_step", {}, None, "unknown step", id="unknown-step"),
])
@pytest.mark.req("AUDIT-REFUSALS")
def test_refused_attempts_are_recorded_and_change_nothing(
        in_transit: tuple[ChainSite, PWalk], who: str, witness: str | None, step: str,
        fields: dict[str, str], item: str | None, contains: str) -> None:
    site, w = in_transit
    site.advance(H)
    entry = refused(site, w.coi, lambda: record(site, step, w.coi, who, witness=witness,
                                                item=item, **fields), contains=contains)
    assert entry["data"]["attempted"] == step
    assert entry["data"]["by"] == who
    if witness:
        assert entry["data"]["witness"] == witness
    if item:
        assert entry["data"]["item"] == item
    assert site.state_row(w.coi)[0] == "in_transit_to_manufacturing"  # type: ignore[index]
    site.svc.verify()  # the refusal is a valid site entry; the replay agrees with the table


def test_missing_witness_is_refused_and_recorded(site: ChainSite) -> None:
    w = new_walk(site, start_ms=T0 + H)
    walk(site, w, until="labelling")
    entry = refused(site, w.coi, lambda: record(site, "labelling", w.coi, "alice",
                                                labels_applied="1"),
                    contains="'Labelling' needs a witness (a second person co-signs)")
    assert "witness" not in entry["data"]
    refused(site, w.coi, lambda: record(site, "labelling", w.coi, "alice", witness="colin",
                                        labels_applied="1"),
            contains="The witness for 'Labelling' must be apheresis; colin has roles: courier")
    rec = record(site, "labelling", w.coi, "alice", witness="amir", labels_applied="1")
    assert [s.user for s in rec.entry.statement.signers] == ["alice", "amir"]


def test_unenrolled_product_is_refused_and_recorded(site: ChainSite) -> None:
    entry = refused(site, "CHA999926999999", lambda: record(
        site, "apheresis_collection", "CHA999926999999", "alice", din="A999926000001 8",
        collection_started_ms=str(T0), volume_ml="250", total_nucleated_cells="1"),
        contains="No product with chain of identity CHA999926999999 is enrolled")
    assert entry["data"]["attempted"] == "apheresis_collection"
    assert site.state_row("CHA999926999999") is None


@pytest.mark.req("DEVIATIONS")
def test_expired_window_is_refused_and_opens_a_deviation(
        in_transit: tuple[ChainSite, PWalk]) -> None:
    site, w = in_transit
    collected = site.svc.chain().product(w.coi).windows["fresh_product"]  # type: ignore[union-attr]
    site.at(collected.deadline_ms + 30 * MIN)  # the courier was late: 48 h have passed
    before_devs = site.svc.chain().product(w.coi).deviations  # type: ignore[union-attr]
    assert before_devs == {}
    with pytest.raises(Refused) as exc:
        record(site, "receipt_at_manufacturing", w.coi, "maya", **RECEIPT)
    assert "The fresh-product window closed at" in exc.value.reason
    assert "48 h after apheresis collection" in exc.value.reason
    refusal = site.entry(exc.value.recorded_index)  # type: ignore[arg-type]
    assert refusal["type"] == "system.refusal"
    [dev] = refusal["data"]["deviations_opened"]
    opened = site.entry(dev)
    assert opened["type"] == "deviation.open"
    assert opened["data"]["kind"] == "window_exceeded"
    assert opened["data"]["window"] == "fresh_product"
    assert dev < refusal["index"]
    row = site.state_row(w.coi)
    assert row is not None and row[0] == "in_transit_to_manufacturing"  # no step happened
    assert json.loads(row[1])["deviations"][str(dev)]["closed_index"] is None
    assert site.svc.status()["open_deviations"] == [
        {"coi": w.coi, "state": "in_transit_to_manufacturing", "count": 1}]

    # trying again does not open a second deviation: it waits for QA
    site.advance(MIN)
    with pytest.raises(Refused) as again:
        record(site, "receipt_at_manufacturing", w.coi, "maya", **RECEIPT)
    assert f"deviation {dev} awaits a QA disposition" in again.value.reason
    assert len(site.svc.chain().product(w.coi).deviations) == 1  # type: ignore[union-attr]

    # QA decides to proceed: the late receipt may now be recorded
    site.advance(10 * MIN)
    record(site, "deviation_disposition", w.coi, "grace", deviation=str(dev),
           disposition="proceed", rationale="Cells within the validated 56 h stability data")
    record(site, "receipt_at_manufacturing", w.coi, "maya", **RECEIPT)
    assert site.state_row(w.coi)[0] == "received"  # type: ignore[index]
    site.svc.verify()


def test_status_shows_windows_running_out_and_exceeded(
        in_transit: tuple[ChainSite, PWalk]) -> None:
    site, w = in_transit
    deadline = site.svc.chain().product(w.coi).windows["fresh_product"].deadline_ms  # type: ignore[union-attr]
    site.at(deadline - 2 * H)
    [win] = site.svc.status()["windows"]
    assert (win["coi"], win["window"], win["exceeded"]) == (w.coi, "fresh_product", False)
    assert win["remaining_ms"] == 2 * H
    site.at(deadline + MIN)
    [win] = site.svc.status()["windows"]
    assert win["exceeded"] is True and win["remaining_ms"] == -MIN


# ------------------------------------------------------------------------------------- release


@pytest.fixture
def at_qc(site: ChainSite) -> tuple[ChainSite, PWalk]:
    """A product cryopreserved into three bags, no QC result yet."""
    w = new_walk(site, start_ms=T0 + H)
    walk(site, w, until="qc_result")
    return site, w


def qc(site: ChainSite, w: PWalk, test: str, result: str, value: str) -> Any:
    site.advance(H)
    return record(site, "qc_result", w.coi, "quinn", test=test, result=result, value=value)


PASSING = {"sterility": "no_growth", "endotoxin": "0.5", "mycoplasma": "not_detected",
           "viability": "91.5", "car_expression": "42.0", "vector_copy_number": "1.8"}


def release(site: ChainSite, w: PWalk, who: str = "grace") -> Any:
    site.advance(H)
    return record(site, "qa_release", w.coi, who, certificate_id="COA0001")


def test_release_blocked_while_a_qc_result_is_missing(at_qc: tuple[ChainSite, PWalk]) -> None:
    site, w = at_qc
    for test, value in list(PASSING.items())[:-1]:
        qc(site, w, test, "pass", value)
    refused(site, w.coi, lambda: release(site, w),
            contains="Release blocked: QC result 'vector_copy_number' missing")
    qc(site, w, "vector_copy_number", "pass", "1.8")
    release(site, w)
    assert site.state_row(w.coi)[0] == "released"  # type: ignore[index]


def test_release_blocked_by_a_failed_qc_result_and_its_deviation(
        at_qc: tuple[ChainSite, PWalk]) -> None:
    site, w = at_qc
    for test, value in PASSING.items():
        if test != "endotoxin":
            qc(site, w, test, "pass", value)
    failed = qc(site, w, "endotoxin", "fail", "7.2")
    [oos] = failed.auto_deviations
    assert site.entry(oos)["data"]["kind"] == "oos_result"
    entry = refused(site, w.coi, lambda: release(site, w),
                    contains=f"OOS deviation {oos} has no QA disposition yet")
    assert "exceptional release" in entry["data"]["reasons"][0]
    # a second result without naming the first is refused: a result is never replaced
    refused(site, w.coi, lambda: qc(site, w, "endotoxin", "pass", "0.4"),
            contains="a result is never replaced")
    site.advance(H)
    record(site, "qc_result", w.coi, "quinn", test="endotoxin", result="pass", value="0.4",
           retest_of=str(failed.entry.index), retest_reason="OOS investigation: lab error")
    # QA closes the deviation as 'proceed': release still needs the physician's request
    close_deviation(site, w.coi, oos)
    refused(site, w.coi, lambda: release(site, w), contains="treating physician")
    admin = site.people["admin"]
    site.svc.ledger.enrol(admin, user="pia", name="Dr Pia Physician", roles=["physician"],
                          password="pia-password-1234")
    pia = site.svc.ledger.unlock("pia", "pia-password-1234")
    site.advance(H)
    request = site.svc.record("exceptional_release_request", w.coi, actor=pia,
                              fields={"justification": "No other option; benefit outweighs risk"})
    site.advance(H)
    rec = record(site, "qa_release", w.coi, "grace", certificate_id="COA0001",
                 physician_request=str(request.entry.index))
    assert rec.entry.statement.data["physician_request"] == request.entry.index
    assert site.state_row(w.coi)[0] == "released"  # type: ignore[index]
    view = site.svc.show(w.coi)
    results = [t["data"].get("result") for t in view["timeline"] if t["type"] == "step.qc_result"]
    assert results.count("fail") == 1  # the failure stays on the timeline
    site.svc.verify()


@pytest.mark.req("RELEASE-QA")
def test_a_qa_user_who_did_manufacturing_may_not_release(site: ChainSite) -> None:
    """hana holds both qa and manufacturing: after recording a harvest she cannot release."""
    w = new_walk(site, start_ms=T0 + H)
    walk(site, w, until="harvest")
    site.at(w.t0 + 11 * D)
    record(site, "harvest", w.coi, "hana", viable_cells="3100000000", viability_pct="92.5")
    w.next = plan_index("harvest") + 1
    walk(site, w, until="qa_release")
    refused(site, w.coi, lambda: release(site, w, "hana"),
            contains="Separation of duties: hana recorded 'harvest' on this product and may "
                     "not release it")
    release(site, w, "grace")


def test_a_qa_user_who_witnessed_manufacturing_may_not_release(site: ChainSite) -> None:
    w = new_walk(site, start_ms=T0 + H)
    walk(site, w, until="cryopreservation")
    site.at(w.t0 + 11 * D + 5 * H)
    record(site, "cryopreservation", w.coi, "maya", witness="hana", bag_count="2",
           volume_ml_per_bag="35")
    label_bags(site.demo, w.coi, "cryopreservation")  # release needs every bag labelled
    w.next = plan_index("cryopreservation") + 1
    walk(site, w, until="qa_release")
    refused(site, w.coi, lambda: release(site, w, "hana"),
            contains="Separation of duties: hana witnessed 'cryopreservation'")
    # a QA reviewer who took no part in it may; the dual-role user also may on other products
    release(site, w, "grace")


# ---------------------------------------------------------------------------- who may sign


@pytest.mark.req("LOCKOUT")
def test_lockout_after_five_failures_is_recorded_and_stops_signing(
        in_transit: tuple[ChainSite, PWalk]) -> None:
    site, w = in_transit
    ledger = site.svc.ledger
    start = site.entry_count()
    for _ in range(1, 5):  # the count is recorded, not told (it would tell who exists)
        with pytest.raises(Refused, match="^unknown user or wrong password$"):
            ledger.unlock("maya", "not-her-password")
    with pytest.raises(Refused, match="maya is now locked after 5 failed attempts"):
        ledger.unlock("maya", "not-her-password")
    new = [site.entry(i) for i in range(start, site.entry_count())]
    assert [e["type"] for e in new] == ["system.login_failed"] * 5 + ["system.lockout"]
    assert all(e["signer"] == "@site" for e in new)
    assert [e["data"].get("attempt") for e in new[:5]] == [1, 2, 3, 4, 5]
    assert new[-1]["data"] == {"user": "maya", "attempts": 5}
    # the right password no longer opens her key
    with pytest.raises(Refused, match="maya is locked"):
        ledger.unlock("maya", demo_password("maya"))
    # and a session she opened before the lockout cannot sign either
    site.advance(H)
    entry = refused(site, w.coi, lambda: record(site, "receipt_at_manufacturing", w.coi,
                                                "maya", **RECEIPT), contains="maya is locked")
    assert entry["data"]["by"] == "maya"
    # an administrator unlocks her (recorded); she signs again
    ledger.unlock_account(site.people["admin"], user="maya", reason="Identity confirmed")
    site.people["maya"] = ledger.unlock("maya", demo_password("maya"))
    record(site, "receipt_at_manufacturing", w.coi, "maya", **RECEIPT)
    site.svc.verify()


@pytest.mark.req("KEY-PROTECTION")
def test_a_revoked_user_cannot_sign(in_transit: tuple[ChainSite, PWalk]) -> None:
    site, w = in_transit
    site.svc.ledger.revoke(site.people["admin"], user="maya", reason="Left the company")
    site.advance(H)
    entry = refused(site, w.coi, lambda: record(site, "receipt_at_manufacturing", w.coi, "maya",
                                                **RECEIPT),
                    contains="maya's key has been revoked or replaced; they cannot sign")
    assert entry["data"]["by"] == "maya"
    # nor as a witness
    walk_to_labelling = new_walk(site, seq=2)
    walk(site, walk_to_labelling, until="labelling")
    site.svc.ledger.revoke(site.people["admin"], user="amir", reason="Left the company")
    refused(site, walk_to_labelling.coi, lambda: record(
        site, "labelling", walk_to_labelling.coi, "alice", witness="amir", labels_applied="1"),
        contains="amir's key has been revoked")
    # the password no longer opens anything (recorded as a failed login)
    size = site.entry_count()
    with pytest.raises(Refused, match="unknown user or wrong password"):
        site.svc.ledger.unlock("maya", demo_password("maya"))
    assert site.entry(size)["type"] == "system.login_failed"
    record(site, "receipt_at_manufacturing", w.coi, "mo", **RECEIPT)
    site.svc.verify()


@pytest.mark.req("SIG-UNIQUE")
def test_a_password_reset_enrols_a_new_key_and_retires_the_old(
        in_transit: tuple[ChainSite, PWalk]) -> None:
    site, w = in_transit
    old = site.people["maya"]
    e = site.svc.ledger.reset(site.people["admin"], user="maya", password="maya-new-pass-2026",
                              reason="Forgot her password")
    assert e.statement.type == "key.rotate"
    site.advance(H)
    refused(site, w.coi, lambda: record(site, "receipt_at_manufacturing", w.coi, "maya",
                                        **RECEIPT), contains="maya's key has been revoked or "
                                                             "replaced")
    with pytest.raises(Refused, match="unknown user or wrong password"):
        site.svc.ledger.unlock("maya", demo_password("maya"))
    new = site.svc.ledger.unlock("maya", "maya-new-pass-2026")
    assert new.public_key != old.public_key
    rec = site.svc.record("receipt_at_manufacturing", w.coi, actor=new, fields=RECEIPT)
    assert rec.entry.statement.signers[0].key == new.public_key
    site.svc.verify()


def test_generic_append_refuses_the_process_entry_types(site: ChainSite, tmp_path: Path) -> None:
    w = new_walk(site, start_ms=T0 + H)
    process = site.svc.process()
    for step in ("qa_release", "deviation_close", "correction", "enrolment", "label_print"):
        type_ = process.steps[step].entry_type
        with pytest.raises(Refused, match="record it with `coi record`"):
            refuse_process_types(site.svc.ledger, type_)
    refuse_process_types(site.svc.ledger, "note.comment")  # other types are the ledger's
    site.svc.ledger.engine.dispose()
    pw = tmp_path / "pw"
    pw.write_text(demo_password("grace"))
    size = site.entry_count()
    res = runner.invoke(app, ["append", "step.qa_release", "--subject", w.coi, "--data",
                              '{"certificate_id": "COA1"}', "--as", "grace", "--db", site.db,
                              "--password-file", str(pw)])
    assert res.exit_code == 1, res.output
    assert "belongs to the process autologous-car-t" in res.stderr
    assert site.entry_count() == size + 1  # only the refusal itself is recorded
    refusal = site.svc.ledger.store.row(size)
    assert refusal is not None and refusal.type == "system.refusal"
    assert b'"attempted":"step.qa_release"' in refusal.statement
    assert site.state_row(w.coi)[0] == "enrolled"  # type: ignore[index]
    res = runner.invoke(app, ["append", "note.comment", "--subject", w.coi, "--data",
                              '{"text": "QA looked at it"}', "--as", "grace", "--db", site.db,
                              "--password-file", str(pw)])
    assert res.exit_code == 0, res.output


@pytest.mark.req("SEQUENCE")
def test_a_process_entry_slipped_in_below_the_service_fails_verify(site: ChainSite) -> None:
    """The ledger's own append does not check the process: verify's replay catches it."""
    w = new_walk(site, start_ms=T0 + H)
    site.svc.ledger.append("step.qa_release", w.coi, {"certificate_id": "COA1"},
                           [_party(site, "grace")])
    with pytest.raises(VerificationError, match="the process refuses this entry"):
        site.svc.verify()


def _party(site: ChainSite, who: str) -> Any:
    from coi.service.ledger import Party

    return Party(site.people[who], "released")


# ------------------------------------------------------------------------------------ patients


PATIENT = {"patient_id": "MRN-778899-Q", "name": "Jeanne Testpatient",
           "date_of_birth": "1961-02-03", "record_number": "RN-55443322"}


@pytest.mark.req("PHI")
def test_patient_identifiers_never_enter_the_ledger(site: ChainSite) -> None:
    site.at(T0 + H)
    coi, rec = site.svc.enrol(actor=site.people["alice"], patient=PATIENT,
                              treatment_site="A9999-HEMATOLOGY", manufacturing_slot="SLOT-7")
    assert rec.entry.statement.subject == coi
    rows = ledger_bytes(site)
    for value in PATIENT.values():
        for needle in (value.encode(), value.encode("utf-16-le"), value.lower().encode()):
            assert not any(needle in r for r in rows), value
    state_rows = [r[2] for r in site.svc.store.states()]
    assert not any(v in s for v in PATIENT.values() for s in state_rows)
    # the patient is in their own table, sealed, linked by a keyed commitment
    assert site.svc.patient_identity(coi) == ("Jeanne Testpatient", "1961-02-03")
    assert site.svc.patient_secret(coi) is not None
    assert rec.entry.statement.data["patient_commitment"] != PATIENT["patient_id"]


@pytest.mark.req("PHI")
def test_erasing_a_patient_leaves_the_ledger_verifiable(site: ChainSite) -> None:
    w = new_walk(site, start_ms=T0 + H, patient_id="MRN-ERASE-ME")
    walk(site, w, until="activation")
    with pytest.raises(Refused, match="only an administrator"):
        site.svc.erase_patient(site.people["grace"], w.coi, "Patient asked",
                               witness=site.people["alice"])
    idx = site.svc.erase_patient(site.people["admin"], w.coi, "Patient withdrew consent",
                                 witness=site.people["alice"])
    assert site.entry(idx)["type"] == "patient.erased"
    assert site.svc.patient_identity(w.coi) == "erased"
    assert site.svc.patient_secret(w.coi) is None
    site.svc.verify()
    site.svc.ledger.engine.dispose()
    assert cli_verify(site.db).exit_code == 0
    with pytest.raises(Refused, match="no patient record"):
        site.svc.erase_patient(site.people["admin"], "CHA999926999999", "typo",
                               witness=site.people["alice"])


@pytest.fixture
def thawed(site: ChainSite) -> tuple[ChainSite, PWalk]:
    w = new_walk(site, start_ms=T0 + H, patient_id="MRN-BEDSIDE-1")
    walk(site, w, until="bedside_verification")
    return site, w


def bedside(site: ChainSite, w: PWalk, wristband: str) -> Any:
    return scanned(site, "bedside_verification", w.coi, "nina", witness="noah", item="F00001",
                   scanned_coi=w.coi, scanned_bag="F00001", wristband=wristband)


@pytest.mark.req("BEDSIDE")
def test_bedside_with_the_wrong_wristband_is_refused(thawed: tuple[ChainSite, PWalk]) -> None:
    site, w = thawed
    site.advance(5 * MIN)
    with pytest.raises(Refused) as exc:
        bedside(site, w, "MRN-SOMEONE-ELSE")
    assert "the wristband does not match the patient enrolled for this product" in \
        exc.value.reason
    refusal = site.entry(exc.value.recorded_index)  # type: ignore[arg-type]
    assert refusal["type"] == "system.refusal"
    assert "MRN-SOMEONE-ELSE" not in json.dumps(refusal)
    [dev] = refusal["data"]["deviations_opened"]
    assert site.entry(dev)["data"]["kind"] == "label_mismatch"
    assert site.state_row(w.coi)[0] == "thawed"  # type: ignore[index]
    assert not any(b"MRN-SOMEONE-ELSE" in r for r in ledger_bytes(site))
    site.svc.verify()


def test_bedside_after_erasure_cannot_match_electronically(
        thawed: tuple[ChainSite, PWalk]) -> None:
    site, w = thawed
    site.svc.erase_patient(site.people["admin"], w.coi, "Erasure request",
                           witness=site.people["nina"])
    site.advance(5 * MIN)
    entry = refused(site, w.coi, lambda: bedside(site, w, w.patient_id),
                    contains="no patient secret is on file")
    assert entry["data"]["attempted"] == "bedside_verification"


@pytest.mark.req("BEDSIDE")
def test_bedside_with_the_right_wristband_passes(thawed: tuple[ChainSite, PWalk]) -> None:
    site, w = thawed
    site.advance(5 * MIN)
    rec = bedside(site, w, " MRN-BEDSIDE-1 ")  # scanner padding is trimmed
    assert [s.meaning for s in rec.entry.statement.signers] == ["authored", "verified"]
    assert "wristband" not in rec.entry.statement.data
    assert site.state_row(w.coi)[0] == "verified"  # type: ignore[index]


# ----------------------------------------------------------------------------- Part 11 session


@pytest.mark.req("SIG-COMPONENTS")
def test_signing_session_rules(in_transit: tuple[ChainSite, PWalk]) -> None:
    site, w = in_transit
    session = SigningSession(site.svc.ledger, site.clock, idle_timeout_s=15 * 60)
    with pytest.raises(Refused, match="no one is logged in"):
        session.sign(demo_password("maya"))
    site.advance(H)
    key = session.login("maya", demo_password("maya"))  # first signing: user id + password
    assert session.active and session.user == "maya" and "manufacturing" in session.roles
    site.svc.record("receipt_at_manufacturing", w.coi, actor=key, fields=RECEIPT)
    site.advance(10 * MIN)  # within the idle timeout: the password alone
    key = session.sign(demo_password("maya"))
    site.svc.record("activation", w.coi, actor=key, fields={"reagent_lot": "TA-1"})
    size = site.entry_count()
    with pytest.raises(Refused, match="wrong password"):
        session.sign("not-her-password")
    assert site.entry(size)["type"] == "system.login_failed"
    site.advance(14 * MIN)  # activity keeps it alive
    session.touch()
    site.advance(14 * MIN)
    assert session.active
    site.advance(2 * MIN)  # 16 min idle: the session is closed
    assert not session.active
    with pytest.raises(Refused, match="the session timed out: enter your user id and password"):
        session.sign(demo_password("maya"))
    with pytest.raises(Refused, match="no one is logged in"):
        session.sign(demo_password("maya"))
    key = session.login("maya", demo_password("maya"))
    site.svc.record("transduction", w.coi, actor=key, fields={"vector_lot": "LV-1", "moi": "2"})
    session.logout()
    assert not session.active and session.roles == frozenset()


# ---------------------------------------------------------------------------- signatures, show


@pytest.mark.req("SIG-MANIFEST")
def test_show_gives_each_signature_name_time_and_meaning(site: ChainSite) -> None:
    w = new_walk(site, start_ms=T0 + H)
    walk(site, w, until="packaging")
    view = site.svc.show(w.coi)
    labelling = next(t for t in view["timeline"] if t["type"] == "step.labelling")
    assert labelling["signers"] == [
        {"user": "alice", "name": "Alice Apheresis", "meaning": "authored"},
        {"user": "amir", "name": "Amir Apheresis", "meaning": "witnessed"}]
    t = labelling["time_ms"]
    assert t == w.t0 + 1 * D + 10 * MIN
    assert labelling["time_utc"] == "2026-09-22 15:23:20 UTC"
    assert labelling["time_local"] == "2026-09-22 17:23:20 CEST (UTC+0200)"
    # the name and meaning are inside the signed statement, not looked up later
    stored = site.entry(labelling["index"])["statement"]
    assert [(s["name"], s["meaning"]) for s in stored["signers"]] == [
        ("Alice Apheresis", "authored"), ("Amir Apheresis", "witnessed")]
    assert stored["tz"] == "Europe/Paris"

    site.svc.ledger.engine.dispose()
    res = runner.invoke(app, ["show", w.coi, "--db", site.db])
    assert res.exit_code == 0, res.output
    assert f"{w.coi}  state: labelled" in res.stdout
    row = next(ln for ln in res.stdout.splitlines() if "Labelling" in ln)
    assert re.search(r"2026-09-22 17:23:20 CEST \(UTC\+0200\) +Labelling +✓ +Alice Apheresis "
                     r"\(alice, authored\); Amir Apheresis \(amir, witnessed\)$", row), row


@pytest.mark.req("SIG-MANIFEST")
def test_release_and_qa_signatures_carry_their_meaning(at_qc: tuple[ChainSite, PWalk]) -> None:
    site, w = at_qc
    for test, value in PASSING.items():
        qc(site, w, test, "pass", value)
    rec = release(site, w)
    assert [(s.name, s.meaning) for s in rec.entry.statement.signers] == [
        ("Grace QA", "released")]
    view = site.svc.show(w.coi)
    assert view["timeline"][-1]["signers"] == [
        {"user": "grace", "name": "Grace QA", "meaning": "released"}]


# ------------------------------------------------------------------------------- tampering


def test_tampering_with_the_state_table_fails_verify(site: ChainSite) -> None:
    w = new_walk(site, start_ms=T0 + H)
    walk(site, w, until="labelling")
    site.svc.verify()
    site.sql("UPDATE product_state SET data = replace(data, '\"collected\"', '\"released\"') "
             "WHERE coi = :coi", coi=w.coi)
    with pytest.raises(VerificationError, match=f"product_state table disagrees with the ledger "
                                                f"for {w.coi}"):
        CoiService.open(site.db, str(site.log_key)).verify()
    site.svc.ledger.engine.dispose()
    res = cli_verify(site.db)
    assert res.exit_code == 1
    assert "verification FAILED" in res.stderr and w.coi in res.stderr


def test_a_deleted_or_invented_state_row_fails_verify(site: ChainSite) -> None:
    w = new_walk(site, start_ms=T0 + H)
    row = site.sql("SELECT state, data, last_index FROM product_state WHERE coi = :c", c=w.coi)[0]
    site.sql("DELETE FROM product_state WHERE coi = :c", c=w.coi)
    with pytest.raises(VerificationError, match="product_state table disagrees"):
        site.svc.verify()
    site.sql("INSERT INTO product_state (coi, state, data, last_index, open_deviations) "
             "VALUES (:c, :s, :d, :i, 0)", c=w.coi, s=row[0], d=row[1], i=row[2])
    site.svc.verify()
    site.sql("INSERT INTO product_state (coi, state, data, last_index, open_deviations) "
             "VALUES ('CHA999926777777', 'released', '{}', 1, 0)")
    with pytest.raises(VerificationError, match="CHA999926777777"):
        site.svc.verify()


def test_the_table_equals_the_replay_of_the_ledger(site: ChainSite) -> None:
    """``replay`` over the facts read back from the ledger rebuilds exactly the stored table."""
    a = new_walk(site, seq=1, start_ms=T0 + H, excursion=True)
    walk(site, a, until="qa_release")
    b = new_walk(site, seq=2)
    walk(site, b, until="courier_pickup")
    with pytest.raises(Refused):
        record(site, "qa_release", b.coi, "grace", certificate_id="COA9")
    reg = site.svc.ledger.registry()
    facts = [fact_of(_statement(r), reg) for r in site.svc.ledger.store.rows()]
    rebuilt = replay(site.svc.process(), facts)
    stored = {c: json.loads(d) for c, _s, d, _i in site.svc.store.states()}
    assert stored == {c: p.to_json() for c, p in rebuilt.products.items()}
    assert set(stored) == {a.coi, b.coi}


def _statement(row: Any) -> Any:
    from coi.ledger import jcs
    from coi.ledger.entry import Statement

    return Statement.from_json(jcs.decode(row.statement))


# ------------------------------------------------------------------------- on each backend


def test_end_to_end_and_a_refusal_on_each_backend(backend_db: tuple[str, Path]) -> None:
    """The whole chain on SQLite and PostgreSQL, a refusal recorded, then verify passes."""
    url, log_key = backend_db
    site = new_site(url, log_key)
    w = new_walk(site, excursion=True, bags=2, start_ms=T0 + H)
    walk(site, w, until="receipt_at_manufacturing")
    dev = do(site, w).auto_deviations[0]
    walk(site, w, until="qa_release")
    entry = refused(site, w.coi, lambda: do(site, w, plan_index("qa_release")),
                    contains=f"deviation {dev} is open")
    assert entry["data"]["by"] == "grace"
    wrong = refused(site, w.coi, lambda: record(site, "qa_release", w.coi, "pat",
                                                certificate_id="COA1"),
                    contains="Only QA may record 'QA release'")
    assert wrong["index"] == entry["index"] + 1
    close_deviation(site, w.coi, dev)
    walk(site, w, until="thaw")
    lympho = site.svc.chain().product(w.coi).steps["lymphodepletion"][0]  # type: ignore[union-attr]
    start = site.entry(lympho)["statement"]["time"] + 3 * D
    for n, bag in enumerate(("F00001", "F00002")):
        infuse(site, w, bag, start + n * H)
    assert site.state_row(w.coi)[0] == "infused"  # type: ignore[index]
    assert site.svc.status()["by_state"] == {"infused": 1}
    result = CoiService.open(url, str(log_key)).verify()
    assert result.size == site.entry_count()
    site.svc.ledger.engine.dispose()
