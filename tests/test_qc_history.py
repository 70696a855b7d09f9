"""QC is a history and release after an OOS result is exceptional; return, disposal and
destruction end an item or a product (process 1.2.0). Real rules, real replay; no service."""

from __future__ import annotations

import hashlib

import pytest

from coi.domain.facts import Fact
from coi.domain.loader import shipped_for, shipped_source
from coi.domain.replay import replay
from coi.domain.state import FINAL_ITEM_STATUSES, FINAL_PRODUCT_STATES
from tests.test_state import COI, PROCESS, Driver, driver_at, fail_viability, user_for


def _oos_then(d: Driver) -> tuple[Fact, int]:
    """A failing viability retest and the OOS deviation it opened: (the result, deviation)."""
    fact = fail_viability(d)
    product = d.chain.product(COI)
    assert product is not None
    (dev,) = [x.index for x in product.deviations.values() if x.kind == "oos_result"]
    return fact, dev


def _proceed(d: Driver, dev: int) -> None:
    d.record("deviation_disposition",
             {"deviation": str(dev), "disposition": "proceed", "rationale": "Benefit > risk"})


@pytest.mark.req("RELEASE-QA")
def test_a_result_is_never_replaced_a_retest_names_the_one_it_follows() -> None:
    d = driver_at("qc_testing")
    product = d.chain.product(COI)
    assert product is not None
    first = product.latest_qc("sterility")
    assert first is not None
    before = d.chain.to_json()
    _, decision = d.attempt("qc_result", {"test": "sterility", "result": "pass",
                                          "value": "no_growth"})
    assert decision.reasons == (
        f"QC test 'sterility' already has a result (entry {first.index}, pass); a result is "
        f"never replaced: record a retest with retest_of={first.index} and retest_reason (e.g. "
        "the OOS investigation that calls for it)",)
    _, decision = d.attempt("qc_result", {"test": "sterility", "result": "pass",
                                          "value": "no_growth", "retest_of": "3"})
    assert any("not the latest result" in r for r in decision.reasons)
    assert any("needs retest_reason" in r for r in decision.reasons)
    assert d.chain.to_json() == before
    fresh = driver_at("cryopreserved")
    _, decision = fresh.attempt("qc_result", {"test": "sterility", "result": "pass",
                                              "value": "no_growth", "retest_reason": "why"})
    assert decision.reasons == ("retest_reason is for a retest: name the result it follows in "
                                "retest_of",)


@pytest.mark.req("RELEASE-QA")
def test_a_passing_retest_does_not_test_a_failure_away() -> None:
    d = driver_at("qc_testing")
    fail, dev = _oos_then(d)
    d.record("qc_result", {"test": "viability", "result": "pass", "value": "88",
                           "retest_of": str(fail.index), "retest_reason": "OOS investigation"})
    _proceed(d, dev)
    d.record("deviation_close", {"deviation": str(dev), "summary": "Retest passed"})
    _, decision = d.attempt("qa_release")
    assert not decision.allowed
    assert "out-of-specification QC result was recorded (viability)" in decision.reasons[0]
    product = d.chain.product(COI)
    assert product is not None
    history = product.qc_history("viability")
    assert [r.result for r in history] == ["pass", "fail", "pass"]
    assert history[2].retest_of == fail.index and history[2].retest_reason == "OOS investigation"
    assert product.to_json()["qc_results"][str(fail.index)]["result"] == "fail"


@pytest.mark.req("RELEASE-QA", "DEVIATIONS")
def test_exceptional_release_needs_qa_proceed_and_the_physicians_request() -> None:
    d = driver_at("qc_testing")
    fail, dev = _oos_then(d)
    _, early = d.attempt("exceptional_release_request")
    assert early.allowed  # the physician may ask before QA has decided
    # proceed alone no longer leaves release blocked by the open deviation, but asks for the
    # physician's request
    _proceed(d, dev)
    _, decision = d.attempt("qa_release")
    assert decision.reasons == ("Release blocked: an out-of-specification QC result was "
                                "recorded (viability); release goes only through exceptional "
                                "release: QA dispositions every OOS deviation 'proceed', the "
                                "treating physician records exceptional_release_request, and "
                                "QA names it in physician_request",)
    _, refused = d.attempt("exceptional_release_request", actor=user_for("qa"))
    assert not refused.allowed and "may record" in refused.reasons[0]
    request = d.record("exceptional_release_request", actor=user_for("physician"))
    _, decision = d.attempt("qa_release", {"certificate_id": "COA-1",
                                           "physician_request": str(fail.index)})
    assert any("is not an exceptional release request" in r for r in decision.reasons)
    release = d.record("qa_release", {"certificate_id": "COA-1",
                                      "physician_request": str(request.index)})
    assert release.data["physician_request"] == request.index
    product = d.chain.product(COI)
    assert product is not None and product.state == "released"
    assert replay(PROCESS, d.facts).to_json() == d.chain.to_json()


@pytest.mark.req("RELEASE-QA")
def test_exceptional_release_refusals() -> None:
    d = driver_at("qc_testing")
    _, decision = d.attempt("exceptional_release_request")
    assert decision.reasons == ("there is no out-of-specification QC result to release "
                                "exceptionally; an exceptional release request is for a product "
                                "with an OOS result",)
    _, decision = d.attempt("qa_release", {"certificate_id": "C-1", "physician_request": "5"})
    assert "no QC result is out of specification" in decision.reasons[0]
    # a request made before the (latest) failure does not cover it
    first, dev = _oos_then(d)
    request = d.record("exceptional_release_request")
    second = d.record("qc_result", {"test": "viability", "result": "fail", "value": "40",
                                    "retest_of": str(first.index), "retest_reason": "Confirm"})
    product = d.chain.product(COI)
    assert product is not None
    for x in product.open_deviations():
        _proceed(d, x.index)
    _, decision = d.attempt("qa_release", {"certificate_id": "C-1",
                                           "physician_request": str(request.index)})
    assert (f"the exceptional release request (entry {request.index}) came before the OOS "
            f"result at entry {second.index}") in decision.reasons[0]
    # a rejected OOS deviation blocks, request or not
    d2 = driver_at("qc_testing")
    _, dev2 = _oos_then(d2)
    d2.record("deviation_disposition",
              {"deviation": str(dev2), "disposition": "reject", "rationale": "No"})
    req2 = d2.record("exceptional_release_request")
    _, decision = d2.attempt("qa_release", {"certificate_id": "C-1",
                                            "physician_request": str(req2.index)})
    assert f"OOS deviation {dev2} was dispositioned 'reject'" in decision.reasons[0]


@pytest.mark.req("AUDIT-CORRECTIONS")
def test_a_failed_result_cannot_be_corrected_into_a_pass() -> None:
    d = driver_at("qc_testing")
    fail, _dev = _oos_then(d)
    _, decision = d.attempt("correction", {"corrects": str(fail.index), "reason": "Typo",
                                           "result": "pass", "value": "80"})
    assert not decision.allowed
    assert any("cannot be corrected" in r or "not correctable" in r for r in decision.reasons)


def test_1_1_0_ledgers_keep_their_rules() -> None:
    """Under 1.1.0 a second result still replaces the first (the ledger replays as recorded)."""
    raw = shipped_source("car_t-1.1.0.toml")
    found = shipped_for(hashlib.sha256(raw).hexdigest())
    assert found is not None
    old = found[0]
    d = Driver(old)
    d.record("enrolment")
    for name in ("apheresis_collection", "labelling", "packaging", "courier_pickup",
                 "receipt_at_manufacturing", "activation", "transduction", "expansion",
                 "harvest", "formulation", "cryopreservation"):
        d.record(name)
    for test, value in (("sterility", "no_growth"), ("endotoxin", "0.5"),
                        ("mycoplasma", "not_detected"), ("viability", "50"),
                        ("car_expression", "40"), ("vector_copy_number", "1")):
        d.record("qc_result", {"test": test, "result": "fail" if test == "viability" else "pass",
                               "value": value})
    d.record("qc_result", {"test": "viability", "result": "pass", "value": "80"})
    product = d.chain.product(COI)
    assert product is not None
    for dev in product.open_deviations():
        d.record("deviation_disposition", {"deviation": str(dev.index),
                                           "disposition": "proceed", "rationale": "ok"})
        d.record("deviation_close", {"deviation": str(dev.index), "summary": "ok"})
    d.record("qa_release", {"certificate_id": "COA-1"})
    assert replay(old, d.facts).to_json() == d.chain.to_json()


# ------------------------------------------------------------ return, disposal, destruction


@pytest.mark.req("TRACKING")
def test_destroying_one_bag_ends_it_voids_its_labels_and_stops_its_windows() -> None:
    d = driver_at("thawed")
    product = d.chain.product(COI)
    assert product is not None
    thawed = next(i for i in product.items.values() if i.status == "thawed")
    d.record("label_issue", {"label": "L1"}, item=thawed.id)
    d.record("label_issue", {"label": "L2"}, item="F00002")
    _, decision = d.attempt("destruction", {"grounds": "Bag cracked on thaw",
                                            "method": "autoclave"}, item=thawed.id,
                            auto_witness=False)
    assert not decision.allowed and "witness" in decision.reasons[0]
    fact = d.record("destruction", {"grounds": "Bag cracked on thaw", "method": "autoclave"},
                    item=thawed.id)
    assert fact.data["item"] == thawed.id and len(fact.signers) == 2
    assert product.items[thawed.id].status == "destroyed"
    assert product.labels["L1"].status == "voided" and fact.index in product.labels["L1"].events
    assert product.labels["L2"].status == "issued"  # another bag's label stays
    window = product.windows[f"thaw_to_infusion/{thawed.id}"]
    assert window.ended_index == fact.index
    assert product.state == "thawed"  # one bag ended, not the product
    _, again = d.attempt("destruction", {"grounds": "x", "method": "other"}, item=thawed.id)
    assert again.reasons == (f"{thawed.id} is already 'destroyed': nothing more can happen to it",)
    _, bedside = d.attempt("bedside_verification", item=thawed.id)
    assert not bedside.allowed
    assert replay(PROCESS, d.facts).to_json() == d.chain.to_json()


@pytest.mark.req("TRACKING")
def test_returning_the_whole_product_ends_its_chain() -> None:
    d = driver_at("stored")
    d.record("label_issue", {"label": "L9"}, item="F00001")
    before_items = {k: v.status for k, v in d.chain.product(COI).items.items()}  # type: ignore
    fact = d.record("product_return", {"grounds": "Patient no longer eligible"})
    product = d.chain.product(COI)
    assert product is not None and product.state == "returned"
    for item_id, status in before_items.items():
        expected = status if status in FINAL_ITEM_STATUSES else "returned"
        assert product.items[item_id].status == expected
    assert product.labels["L9"].status == "voided"
    assert all(w.ended_index is not None for w in product.windows.values())
    _, decision = d.attempt("thaw", item="F00001")
    assert "chain ends" in decision.reasons[0]
    _, decision = d.attempt("disposal", {"grounds": "x"})
    assert not decision.allowed
    assert "returned" in FINAL_PRODUCT_STATES and fact.index == product.last_index
    assert replay(PROCESS, d.facts).to_json() == d.chain.to_json()


def test_a_rejected_product_can_be_destroyed() -> None:
    d = driver_at("rejected")
    d.record("destruction", {"grounds": "Rejected by QA", "method": "incineration"})
    product = d.chain.product(COI)
    assert product is not None and product.state == "destroyed"
    assert {i.status for i in product.items.values()} <= {"destroyed"}
