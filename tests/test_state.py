"""The chain-of-identity rules (coi.domain.check, state, replay) against the shipped process.

Every cell of the step × state and role × step matrices, witness rules, windows, the release gate,
separation of duties, corrections, deviations, labels, the bedside check, one product from
enrolment to infusion with three bags, and a hypothesis state machine over random attempts.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from coi.domain import messages as say
from coi.domain.check import check
from coi.domain.errors import ReplayError
from coi.domain.facts import Attempt, AutoDeviation, Decision, Fact, Signer, patient_commitment
from coi.domain.loader import load_process
from coi.domain.messages import format_duration, format_ms
from coi.domain.process import Process, StepSpec
from coi.domain.replay import Replayer, attempt_from_fact, replay
from coi.domain.rules.windows import pending_breaches
from coi.domain.state import ChainState

PROCESS = load_process()
T0 = 1_790_000_000_000
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
COI = "CHA9999261A2B3C"
OTHER_COI = "CHA9999269Z8Y7X"
SECRET = b"test-site-secret"
PATIENT = "TEST-PATIENT-0001"
COMMITMENT = patient_commitment(SECRET, PATIENT)
QC_PASS = {
    "sterility": "no_growth",
    "endotoxin": "0.5",
    "mycoplasma": "not_detected",
    "viability": "91.5",
    "car_expression": "45",
    "vector_copy_number": "1.8",
}
OPERATIONAL = ("apheresis", "courier", "manufacturing", "qc", "qa", "treatment")


def person(user: str, *roles: str) -> Signer:
    return Signer(user=user, name=user.capitalize(), meaning="authored", roles=frozenset(roles))


def user_for(role: str, n: int = 1) -> Signer:
    return person(f"{role}{n}", role)


def step(name: str) -> StepSpec:
    found = PROCESS.step(name)
    assert found is not None, name
    return found


# ------------------------------------------------------------------------------- a test driver


class Driver:
    """Records attempts the way the service will: check, then append a fact and apply it."""

    def __init__(self, process: Process = PROCESS) -> None:
        self.process = process
        self.chain = ChainState(process)
        self.facts: list[Fact] = []
        self.now = T0
        self.index = 1  # entry 0 is the ledger's genesis

    def attempt(
        self,
        name: str,
        fields: Mapping[str, str] | None = None,
        *,
        subject: str = COI,
        item: str | None = None,
        actor: Signer | None = None,
        witness: Signer | None = None,
        advance: int = 10 * MIN,
        auto_witness: bool = True,
    ) -> tuple[Attempt, Decision]:
        self.now += advance
        spec = step(name)
        if actor is None:
            actor = user_for(sorted(spec.roles)[0] if name != "correction" else "qa")
        if witness is None and auto_witness and spec.witness:
            witness = user_for(sorted(spec.witness_roles)[0], 2)
        if item is None and spec.item not in ("none", "optional"):
            item = ready_item(self.chain, spec, subject)
        if fields is None:
            fields = valid_fields(self.chain, spec, subject, item)
        # as a scan station enters them: scan-only fields scanned (keyed ones are tested apart)
        entry = {n: "scanner" for n in fields if n in spec.fields and spec.fields[n].scan_only}
        attempt = Attempt(name, subject, item, dict(fields), actor, witness, self.now, entry)
        return attempt, check(self.process, self.chain, attempt)

    def record(self, name: str, fields: Mapping[str, str] | None = None, **kwargs: Any) -> Fact:
        attempt, decision = self.attempt(name, fields, **kwargs)
        assert decision.allowed, decision.reasons
        fact = self.append(attempt, decision)
        for auto in decision.auto_deviations:
            self.open_auto(auto)
        self.label_new_items(step(name), attempt.subject)
        return fact

    def label_new_items(self, spec: StepSpec, subject: str) -> None:
        """After a step that creates items a later step needs labelled, label them."""
        if spec.creates is not None and any(
                s.labelled_items == spec.creates.kind for s in self.process.steps.values()):
            self.label_items(subject, spec.creates.kind)

    def label_items(self, subject: str, kind: str) -> None:
        """Label the new bags (issued, printed, applied): release and shipment need it."""
        product = self.chain.product(subject)
        assert product is not None
        for item in sorted(i.id for i in product.items_of(kind)):
            label = f"ZL-{item}"  # after the tests' own L1, L2, ... in id order
            for name in ("label_issue", "label_print", "label_apply"):
                attempt = Attempt(name, subject, item if name == "label_issue" else None,
                                  {"label": label}, user_for("manufacturing"), None,
                                  self.now)
                decision = check(self.process, self.chain, attempt)
                assert decision.allowed, decision.reasons
                self.append(attempt, decision)

    def append(self, attempt: Attempt, decision: Decision) -> Fact:
        assert decision.entry_type is not None
        signers = (attempt.actor,) + ((attempt.witness,) if attempt.witness else ())
        fact = Fact(
            self.index, attempt.now_ms, decision.entry_type, attempt.subject, decision.data, signers
        )
        self.index += 1
        self.chain.apply(fact)
        self.facts.append(fact)
        return fact

    def open_auto(self, auto: AutoDeviation) -> Fact:
        attempt = Attempt(
            "deviation_open",
            auto.subject,
            auto.item,
            auto.fields,
            user_for("qa", 9),
            None,
            self.now,
        )
        decision = check(self.process, self.chain, attempt)
        assert decision.allowed, decision.reasons
        assert dict(decision.data) == auto.data
        return self.append(attempt, decision)

    def product_state(self, subject: str = COI) -> str:
        product = self.chain.product(subject)
        return product.state if product else "none"


def ready_item(chain: ChainState, spec: StepSpec, subject: str) -> str | None:
    product = chain.product(subject)
    if product is None:
        return "F00001"
    for item in sorted(product.items.values(), key=lambda i: i.id):
        if item.kind == spec.item and (not spec.item_from or item.status in spec.item_from):
            return item.id
    return "F00001"


def correction_target(chain: ChainState, subject: str) -> tuple[int, str, str] | None:
    """The latest entry with a correctable text or decimal field: (index, field, new value)."""
    product = chain.product(subject)
    if product is None:
        return None
    for index in sorted(product.entry_steps, reverse=True):
        spec = step(product.entry_steps[index])
        if spec.effect == "correction":
            continue
        for name, fspec in spec.fields.items():
            if fspec.correctable and fspec.type in ("text", "identifier"):
                return index, name, "CORRECTED-1"
            if fspec.correctable and fspec.type == "decimal" and fspec.min is not None:
                return index, name, str(fspec.min + 1)
    return None


def valid_fields(
    chain: ChainState, spec: StepSpec, subject: str, item: str | None
) -> dict[str, str]:
    """Fields a careful person would enter for ``spec`` on this product, now."""
    product = chain.product(subject)
    name = spec.name
    if name == "qc_result":
        test = "sterility"
        if product is not None:
            missing = [
                t
                for t in PROCESS.qc_required
                if (r := product.latest_qc(t)) is None or r.result != "pass"
            ]
            test = missing[0] if missing else "sterility"
        out = {"test": test, "result": "pass", "value": QC_PASS[test]}
        latest = product.latest_qc(test) if product is not None else None
        if latest is not None:  # a result is never replaced: a retest names the one it follows
            out.update(retest_of=str(latest.index), retest_reason="OOS investigation")
        return out
    if name == "bedside_verification":
        return {
            "scanned_coi": subject,
            "scanned_bag": item or "F00001",
            "wristband_commitment": COMMITMENT,
        }
    if name in ("deviation_disposition", "deviation_close"):
        number = "0"
        if product is not None:
            wanted = [
                d.index
                for d in product.open_deviations()
                if (d.disposition is None) == (name == "deviation_disposition")
            ]
            number = str(wanted[0]) if wanted else "0"
        if name == "deviation_disposition":
            return {"deviation": number, "disposition": "proceed", "rationale": "Assessed"}
        return {"deviation": number, "summary": "Closed after review"}
    if name == "correction":
        target = correction_target(chain, subject)
        if target is None:
            return {"corrects": "0", "reason": "Typing error", "manufacturing_slot": "W1"}
        index, fname, value = target
        return {"corrects": str(index), "reason": "Typing error", fname: value}
    if name.startswith("label_"):
        labels = product.labels if product is not None else {}
        wanted_status = {
            "label_print": "issued",
            "label_apply": "printed",
            "label_void": "issued",
            "label_reprint": "voided",
        }.get(name)
        chosen = next(
            (
                lab.id
                for lab in sorted(labels.values(), key=lambda x: x.id)
                if lab.status == wanted_status
                or (name == "label_void" and lab.status in ("issued", "printed", "applied"))
            ),
            "L1",
        )
        fresh = f"L{sum(not k.startswith('ZL-') for k in labels) + 1}"
        if name == "label_issue":
            return {"label": fresh}
        if name == "label_void":
            return {"label": chosen, "grounds": "Smudged"}
        if name == "label_reprint":
            return {"label": fresh, "replaces": chosen}
        return {"label": chosen}
    return dict(DEFAULT_FIELDS[name])


DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "enrolment": {
        "patient_commitment": COMMITMENT,
        "treatment_site": "SITE-A9999",
        "manufacturing_slot": "2026-W40 line 2",
    },
    "apheresis_collection": {
        "din": "A999926123456",
        "collection_started_ms": str(T0),
        "volume_ml": "250",
        "total_nucleated_cells": "12000000000",
    },
    "labelling": {"labels_applied": "2"},
    "packaging": {"container_id": "BOX-7", "temperature_range": "2_8c"},
    "courier_pickup": {"shipper_id": "SHP-1", "logger_id": "LOG-1"},
    "receipt_at_manufacturing": {"outcome": "accept", "logger": "in_range"},
    "quarantine_decision": {"outcome": "accept", "rationale": "Paperwork completed"},
    "activation": {"reagent_lot": "RL-1"},
    "transduction": {"vector_lot": "VL-2026-01", "moi": "2.5"},
    "expansion": {"culture_days": "9", "viable_cells": "3100000000"},
    "harvest": {"viable_cells": "3000000000", "viability_pct": "92.5"},
    "formulation": {"volume_ml": "70", "car_t_cells": "250000000"},
    "cryopreservation": {"bag_count": "3", "volume_ml_per_bag": "23.3"},
    "qa_release": {"certificate_id": "COA-2026-001"},
    "qa_reject": {"grounds": "Out of specification"},
    "shipment": {"shipper_id": "DRY-3", "logger_id": "LOG-2"},
    "receipt_at_treatment": {"logger": "in_range"},
    "storage": {"location": "LN2 tank 3, rack 2", "temperature_c": "-180"},
    "lymphodepletion": {"regimen": "Fludarabine and cyclophosphamide"},
    "thaw": {"method": "water_bath"},
    "infusion": {"infusion_started_ms": str(T0)},
    "custody_transfer": {"location": "Loading dock"},
    "deviation_open": {"kind": "other", "description": "Something to look at"},
    "exceptional_release_request": {"justification": "No alternative therapy; benefit > risk"},
    "product_return": {"grounds": "Infusion cancelled", "returned_to": "A9999 manufacturing"},
    "disposal": {"grounds": "Expired in storage"},
    "destruction": {"grounds": "Rejected product", "method": "incineration"},
}

# The happy path: (step, extra time before it). Lymphodepletion starts the 2-14 d window, so the
# product waits three days before the hospital thaws it.
HAPPY_PATH: list[tuple[str, int]] = [
    ("enrolment", 0),
    ("apheresis_collection", 0),
    ("labelling", 0),
    ("packaging", 0),
    ("courier_pickup", 0),
    ("receipt_at_manufacturing", 0),
    ("activation", 0),
    ("transduction", 0),
    ("expansion", 0),
    ("harvest", 0),
    ("formulation", 0),
    ("cryopreservation", 0),
    *[("qc_result", 0)] * len(PROCESS.qc_required),
    ("qa_release", 0),
    ("lymphodepletion", 0),
    ("shipment", 3 * DAY),
    ("receipt_at_treatment", 0),
    ("storage", 0),
    ("thaw", 0),
    ("bedside_verification", 0),
    ("infusion", 0),
]


def drive_to(state: str) -> Driver:
    """A driver whose product has just reached ``state`` (and done all it can there)."""
    d = Driver()
    if state == "none":
        return d
    if state == "rejected":
        d.record("enrolment")
        d.record("qa_reject")
        return d
    final = [s for s in PROCESS.steps.values() if s.effect == "final" and s.to_state == state]
    if final:
        d.record("enrolment")
        d.record(final[0].name)
        return d
    if state == "quarantined":
        for name, _ in HAPPY_PATH[:5]:
            d.record(name)
        d.record("receipt_at_manufacturing", {"outcome": "quarantine", "logger": "in_range"})
        return d
    for i, (name, wait) in enumerate(HAPPY_PATH):
        d.record(name, advance=10 * MIN + wait)
        following = HAPPY_PATH[i + 1][0] if i + 1 < len(HAPPY_PATH) else None
        if d.product_state() != state:
            continue
        moves_on = following is None or step(following).target_states() - {state}
        if moves_on:
            return d
    raise AssertionError(f"the happy path never reaches {state}")


@functools.cache
def facts_to(state: str) -> tuple[Fact, ...]:
    return tuple(drive_to(state).facts)


def driver_at(state: str) -> Driver:
    d = Driver()
    for fact in facts_to(state):
        d.chain.apply(fact)
        d.facts.append(fact)
        d.index = fact.index + 1
        d.now = fact.time_ms
    return d


SETUP: dict[str, tuple[str, ...]] = {
    "deviation_disposition": ("deviation_open",),
    "deviation_close": ("deviation_open", "deviation_disposition"),
    "label_print": ("label_issue",),
    "label_apply": ("label_issue", "label_print"),
    "label_void": ("label_issue",),
    "label_reprint": ("label_issue", "label_print", "label_void"),
}


def context(state: str, name: str) -> Driver:
    """The product at ``state`` with whatever ``name`` needs recorded first (an open deviation…)."""
    d = driver_at(state)
    if d.chain.product(COI) is not None:
        for pre in SETUP.get(name, ()):
            d.record(pre)
    if name == "exceptional_release_request" and d.product_state() == "qc_testing":
        fail_viability(d)
    return d


def fail_viability(d: Driver) -> Fact:
    """A viability retest out of specification (it opens an OOS deviation by itself)."""
    product = d.chain.product(COI)
    latest = product.latest_qc("viability") if product is not None else None
    fields = {"test": "viability", "result": "fail", "value": "50"}
    if latest is not None:
        fields.update(retest_of=str(latest.index), retest_reason="Trend review")
    return d.record("qc_result", fields)


def test_happy_path_reaches_every_state_but_the_side_ones() -> None:
    seen = {drive_to(s).product_state() for s in PROCESS.states}
    assert seen == set(PROCESS.states)
    for s in PROCESS.states:
        assert drive_to(s).product_state() == s


# ---------------------------------------------------------------------- step × state matrix

STEP_NAMES = list(PROCESS.steps)


@pytest.mark.req("SEQUENCE")
@pytest.mark.parametrize("state", PROCESS.states)
@pytest.mark.parametrize("name", STEP_NAMES)
def test_step_state_matrix(name: str, state: str) -> None:
    d = context(state, name)
    before = d.chain.to_json()
    _, decision = d.attempt(name)
    expected = state in step(name).from_states
    assert decision.allowed is expected, (name, state, decision.reasons)
    assert d.chain.to_json() == before
    if not expected:
        assert decision.reasons and decision.entry_type is None
        assert not decision.auto_deviations


@pytest.mark.req("SEQUENCE")
def test_order_refusals_read_well() -> None:
    d = driver_at("labelled")
    _, decision = d.attempt("receipt_at_manufacturing")
    assert decision.reasons == (
        "Receipt at manufacturing needs courier pickup first; this product is at 'labelled'",
    )
    _, decision = d.attempt("labelling")
    assert decision.reasons[0].startswith("'Labelling' was already recorded for this product")
    _, decision = Driver().attempt("harvest")
    assert decision.reasons == (f"No product with chain of identity {COI} is enrolled",)
    _, decision = driver_at("destroyed").attempt("shipment")
    assert "where its chain ends" in decision.reasons[0]
    _, decision = driver_at("enrolled").attempt("enrolment")
    assert decision.reasons[0] == f"{COI} is already enrolled (entry 1)"
    _, decision = driver_at("released").attempt("qc_result")
    assert decision.reasons[0].startswith("QC result is not allowed while this product is at")


# ----------------------------------------------------------------------- role × step matrix


def first_state(name: str) -> str:
    spec = step(name)
    return next(s for s in PROCESS.states if s in spec.from_states)


@pytest.mark.req("AUTHORITY")
@pytest.mark.parametrize("role", sorted(PROCESS.roles))
@pytest.mark.parametrize("name", STEP_NAMES)
def test_role_step_matrix(name: str, role: str) -> None:
    d = context(first_state(name), name)
    spec = step(name)
    _, decision = d.attempt(name, actor=user_for(role))
    expected = role in spec.roles
    if name == "correction":
        # Besides being allowed to correct at all, one must be allowed to record the corrected
        # step, or be QA (the release role).
        target = correction_target(d.chain, COI)
        assert target is not None
        product = d.chain.product(COI)
        assert product is not None
        corrected = step(product.entry_steps[target[0]])
        expected = expected and role in (corrected.roles | step("qa_release").roles)
    assert decision.allowed is expected, (name, role, decision.reasons)
    if not expected:
        assert any(("may record" in r or "may correct" in r) for r in decision.reasons)


def test_role_refusal_names_the_roles() -> None:
    d = driver_at("qc_testing")
    _, decision = d.attempt("qa_release", actor=person("alice", "manufacturing"))
    assert "Only QA may record 'QA release'; alice has roles: manufacturing" in decision.reasons


# ---------------------------------------------------------------------------------- witnesses


@pytest.mark.req("TWO-PERSON")
def test_witness_required() -> None:
    d = driver_at("collected")
    _, decision = d.attempt("labelling", auto_witness=False)
    assert decision.reasons == ("'Labelling' needs a witness (a second person co-signs)",)


@pytest.mark.req("TWO-PERSON")
def test_witness_must_be_another_person() -> None:
    d = driver_at("collected")
    _, decision = d.attempt("labelling", witness=user_for("apheresis", 1))
    assert decision.reasons == ("The witness must be someone other than apheresis1",)


def test_witness_must_hold_a_witness_role() -> None:
    d = driver_at("thawed")
    _, decision = d.attempt("bedside_verification", witness=user_for("courier"))
    assert decision.reasons == (
        "The witness for 'Bedside verification' must be treatment; courier1 has roles: courier",
    )


def test_optional_witness_is_recorded() -> None:
    d = driver_at("enrolled")
    fact = d.record("apheresis_collection", witness=user_for("apheresis", 2))
    assert [s.user for s in fact.signers] == ["apheresis1", "apheresis2"]
    product = d.chain.product(COI)
    assert product is not None and product.witnesses["apheresis_collection"] == {"apheresis2"}


def test_custody_goes_to_the_witness() -> None:
    d = driver_at("packaged")
    d.record("courier_pickup")
    product = d.chain.product(COI)
    assert product is not None and product.custodian == "courier1"
    d.record("custody_transfer", actor=user_for("courier"), witness=user_for("courier", 2))
    assert product.custodian == "courier2"


# -------------------------------------------------------------------------------------- windows


def test_fresh_window_breach_refuses_and_opens_a_deviation() -> None:
    d = driver_at("in_transit_to_manufacturing")
    _, decision = d.attempt("receipt_at_manufacturing", advance=49 * HOUR)
    product = d.chain.product(COI)
    assert product is not None
    deadline = product.windows["fresh_product"].deadline_ms
    assert decision.reasons == (
        f"The fresh-product window closed at {format_ms(deadline)} "
        "(48 h after apheresis collection)",
    )
    (auto,) = decision.auto_deviations
    assert (auto.kind, auto.window, auto.item, auto.subject) == (
        "window_exceeded",
        "fresh_product",
        None,
        COI,
    )
    dev = d.open_auto(auto)
    _, again = d.attempt("receipt_at_manufacturing")
    assert again.reasons[0].endswith(f"deviation {dev.index} awaits a QA disposition")
    assert again.auto_deviations == ()
    d.record(
        "deviation_disposition",
        {"deviation": str(dev.index), "disposition": "proceed", "rationale": "Cells viable"},
    )
    d.record("receipt_at_manufacturing")
    assert product.state == "received"
    assert product.windows["fresh_product"].ended_index == d.facts[-1].index
    # The deviation still has to be closed before release.
    assert [x.index for x in product.open_deviations()] == [dev.index]


def test_window_breach_with_rejecting_disposition_stays_refused() -> None:
    d = driver_at("in_transit_to_manufacturing")
    _, decision = d.attempt("receipt_at_manufacturing", advance=3 * DAY)
    dev = d.open_auto(decision.auto_deviations[0])
    d.record(
        "deviation_disposition",
        {"deviation": str(dev.index), "disposition": "reject", "rationale": "Too old"},
    )
    _, again = d.attempt("receipt_at_manufacturing")
    assert again.reasons[0].endswith(f"deviation {dev.index} was dispositioned 'reject'")


def test_thaw_to_infusion_window_is_per_bag() -> None:
    d = driver_at("verified")
    _, decision = d.attempt("infusion", advance=2 * HOUR)
    assert "The thaw-to-infusion window closed" in decision.reasons[0]
    assert "(60 min after thaw)" in decision.reasons[0]
    (auto,) = decision.auto_deviations
    assert (auto.window, auto.item) == ("thaw_to_infusion", "F00001")


def test_lymphodepletion_window_bounds_infusion() -> None:
    d = driver_at("released")
    # The happy path's lymphodepletion is the last fact; repeat it now and infuse too soon.
    d.record("lymphodepletion")
    for name in ("shipment", "receipt_at_treatment", "storage", "thaw", "bedside_verification"):
        d.record(name)
    _, early = d.attempt("infusion")
    assert early.reasons[0].startswith("'Infusion' may not happen before")
    assert "(48 h after lymphodepletion)" in early.reasons[0]
    assert early.auto_deviations == ()


def test_lymphodepletion_needs_release() -> None:
    d = driver_at("qc_testing")
    _, decision = d.attempt("lymphodepletion")
    assert decision.reasons == (
        "Lymphodepletion needs QA release first; this product is at 'qc_testing'",
    )


def test_pending_breaches_report_products_left_sitting() -> None:
    d = driver_at("in_transit_to_manufacturing")
    assert pending_breaches(d.chain, d.now) == []
    late = d.now + 3 * DAY
    (auto,) = pending_breaches(d.chain, late)
    assert (auto.subject, auto.window, auto.kind) == (COI, "fresh_product", "window_exceeded")
    d.now = late
    d.open_auto(auto)
    assert pending_breaches(d.chain, late) == []


def test_durations_read_as_configured() -> None:
    assert format_duration(48 * HOUR) == "48 h"
    assert format_duration(60 * MIN) == "60 min"
    assert format_duration(14 * DAY) == "14 d"
    assert format_duration(1500) == "1500 ms"
    assert format_ms(0) == "1970-01-01 00:00 UTC"


# --------------------------------------------------------------------------------- release gate


@pytest.mark.req("RELEASE-QA")
def test_release_blocked_by_missing_qc_and_open_deviation() -> None:
    d = driver_at("cryopreserved")
    d.record("qc_result")  # sterility passes
    dev = d.record("deviation_open")
    _, decision = d.attempt("qa_release")
    assert decision.reasons == (
        "Release blocked: QC result 'endotoxin' missing; QC result 'mycoplasma' missing; "
        "QC result 'viability' missing; QC result 'car_expression' missing; "
        f"QC result 'vector_copy_number' missing; deviation {dev.index} is open",
    )


def test_failed_qc_opens_oos_deviation_and_blocks_release() -> None:
    d = driver_at("qc_testing")
    first = d.chain.product(COI).latest_qc("endotoxin")  # type: ignore[union-attr]
    assert first is not None
    attempt, decision = d.attempt(
        "qc_result",
        {"test": "endotoxin", "result": "fail", "value": "7.5", "retest_of": str(first.index),
         "retest_reason": "Trend review"},
    )
    assert decision.allowed
    assert decision.data == {"test": "endotoxin", "result": "fail", "value": "7.5",
                             "unit": "EU/mL", "retest_of": first.index,
                             "retest_reason": "Trend review"}
    (auto,) = decision.auto_deviations
    assert auto.kind == "oos_result"
    fact = d.append(attempt, decision)
    dev = d.open_auto(auto)
    _, blocked = d.attempt("qa_release")
    assert blocked.reasons[0].startswith(
        f"Release blocked: OOS deviation {dev.index} has no QA disposition yet")
    assert "exceptional release" in blocked.reasons[0]
    # A passing retest does not test the failure away: it stays, and release is exceptional.
    d.record("qc_result", {"test": "endotoxin", "result": "pass", "value": "0.4",
                           "retest_of": str(fact.index), "retest_reason": "OOS investigation"})
    d.record(
        "deviation_disposition",
        {"deviation": str(dev.index), "disposition": "proceed", "rationale": "Lab error confirmed"},
    )
    d.record("deviation_close", {"deviation": str(dev.index), "summary": "Retest passed"})
    _, blocked = d.attempt("qa_release")
    assert not blocked.allowed and "treating physician" in blocked.reasons[0]
    product = d.chain.product(COI)
    assert product is not None
    assert [r.result for r in product.qc_history("endotoxin")] == ["pass", "fail", "pass"]


@pytest.mark.req("FIELD-CHECKS")
def test_result_must_agree_with_the_specification() -> None:
    d = driver_at("cryopreserved")
    _, decision = d.attempt("qc_result", {"test": "viability", "result": "pass", "value": "50"})
    assert decision.reasons == (
        "The Viability value 50 % is outside the specification (≥ 70 %), so the result cannot "
        "be 'pass'",
    )
    _, decision = d.attempt(
        "qc_result", {"test": "sterility", "result": "fail", "value": "no_growth"}
    )
    assert "meets the specification" in decision.reasons[0]
    _, decision = d.attempt("qc_result", {"test": "endotoxin", "result": "pass", "value": "lo"})
    assert "is not a decimal number" in decision.reasons[0]


def test_rejected_deviation_blocks_release_even_when_closed() -> None:
    d = driver_at("qc_testing")
    dev = d.record("deviation_open")
    d.record(
        "deviation_disposition",
        {"deviation": str(dev.index), "disposition": "reject", "rationale": "Unacceptable"},
    )
    d.record("deviation_close", {"deviation": str(dev.index), "summary": "Product to reject"})
    _, decision = d.attempt("qa_release")
    assert decision.reasons == (
        f"Release blocked: deviation {dev.index} was dispositioned 'reject'",
    )
    d.record("qa_reject")
    product = d.chain.product(COI)
    assert product is not None and product.state == "rejected"
    assert {i.status for i in product.items.values()} == {"rejected"}


@pytest.mark.req("LABEL-RECONCILIATION")
def test_unreconciled_label_blocks_release() -> None:
    d = driver_at("qc_testing")
    d.record("label_issue")
    d.record("label_print")
    _, decision = d.attempt("qa_release")
    assert decision.reasons == (
        "Release blocked: label L1 was printed but neither applied nor voided",
    )
    d.record("label_apply")
    d.record("qa_release")


# --------------------------------------------------------------------------- separation of duty


@pytest.mark.req("RELEASE-QA")
def test_who_recorded_manufacturing_may_not_release() -> None:
    d = driver_at("formulated")
    bob = person("bob", "manufacturing", "qa")
    d2 = driver_at("expanded")
    d2.record("harvest", actor=bob)
    for name in ("formulation", "cryopreservation", *["qc_result"] * 6):
        d2.record(name)
    _, decision = d2.attempt("qa_release", actor=bob)
    assert decision.reasons == (
        "Separation of duties: bob recorded 'harvest' on this product and may not release it",
    )
    # Witnessing counts too.
    d.record("cryopreservation", witness=bob)
    for _ in range(6):
        d.record("qc_result")
    _, decision = d.attempt("qa_release", actor=bob)
    assert decision.reasons == (
        "Separation of duties: bob witnessed 'cryopreservation' on this product and may not "
        "release it",
    )
    _, decision = d.attempt("qa_release", actor=person("carol", "qa"))
    assert decision.allowed


# --------------------------------------------------------------------------------- corrections


@pytest.mark.req("AUDIT-CORRECTIONS")
def test_correction_keeps_the_original_and_updates_qc() -> None:
    d = driver_at("cryopreserved")
    original = d.record("qc_result", {"test": "viability", "result": "pass", "value": "91.5"})
    fact = d.record(
        "correction",
        {"corrects": str(original.index), "reason": "Transcription error", "value": "88.0"},
        actor=user_for("qc"),
    )
    assert fact.type == "correction"
    assert fact.data == {
        "corrects": original.index,
        "reason": "Transcription error",
        "values": {"value": "88.0"},
    }
    product = d.chain.product(COI)
    assert product is not None
    assert product.steps["qc_result"] == [original.index]
    assert product.corrections == {original.index: [fact.index]}
    assert product.qc_results[original.index].value == "88.0"


def test_correction_refusals() -> None:
    d = driver_at("cryopreserved")
    qc = d.record("qc_result", {"test": "viability", "result": "pass", "value": "91.5"})
    product = d.chain.product(COI)
    assert product is not None
    cryo = product.steps["cryopreservation"][0]
    cases: list[tuple[dict[str, str], str]] = [
        (
            {"corrects": str(cryo), "reason": "x", "bag_count": "2"},
            "cannot be corrected; open a deviation instead",
        ),
        (
            {"corrects": "999", "reason": "x", "volume_ml_per_bag": "2"},
            f"Entry 999 is not a recorded step of {COI}",
        ),
        ({"corrects": str(cryo), "reason": "x"}, "at least one corrected field"),
        ({"corrects": str(cryo), "reason": "x", "colour": "red"}, "has no field 'colour'"),
        (
            {"corrects": str(qc.index), "reason": "x", "value": "50"},
            "would not agree with its value 50",
        ),
    ]
    for fields, expected in cases:
        _, decision = d.attempt("correction", fields, actor=user_for("qa"))
        assert not decision.allowed
        assert any(expected in r for r in decision.reasons), (fields, decision.reasons)
    corr = d.record("correction", {"corrects": str(cryo), "reason": "x", "volume_ml_per_bag": "20"})
    _, decision = d.attempt(
        "correction", {"corrects": str(corr.index), "reason": "x", "volume_ml_per_bag": "21"}
    )
    assert decision.reasons == (
        f"Entry {corr.index} is itself a correction; correct entry {cryo} instead",
    )
    _, decision = d.attempt(
        "correction",
        {"corrects": str(cryo), "reason": "x", "volume_ml_per_bag": "21"},
        actor=user_for("treatment"),
    )
    assert decision.reasons[0].startswith(
        f"Only someone who may record 'Cryopreservation' (manufacturing) or QA may correct "
        f"entry {cryo}"
    )


def test_correction_to_an_excursion_opens_a_deviation() -> None:
    d = driver_at("in_transit_to_manufacturing")
    receipt = d.record("receipt_at_manufacturing")
    _, decision = d.attempt(
        "correction", {"corrects": str(receipt.index), "reason": "Misread", "logger": "excursion"}
    )
    assert decision.allowed
    assert [a.kind for a in decision.auto_deviations] == ["temperature_excursion"]


# ---------------------------------------------------------------------------------- deviations


@pytest.mark.req("DEVIATIONS")
def test_deviation_lifecycle_and_refusals() -> None:
    d = driver_at("received")
    dev = d.record("deviation_open", {"kind": "late_shipment", "description": "Courier late"})
    n = str(dev.index)
    _, decision = d.attempt(
        "deviation_close", {"deviation": n, "summary": "x"}, actor=user_for("qa")
    )
    assert decision.reasons == (f"Deviation {n} needs a QA disposition before it can be closed",)
    _, decision = d.attempt(
        "deviation_disposition",
        {"deviation": n, "disposition": "proceed", "rationale": "ok"},
        actor=user_for("manufacturing"),
    )
    assert decision.reasons[0].startswith("Only QA may record 'Deviation disposition'")
    d.record("deviation_disposition", {"deviation": n, "disposition": "proceed", "rationale": "ok"})
    _, decision = d.attempt(
        "deviation_disposition", {"deviation": n, "disposition": "reject", "rationale": "no"}
    )
    assert decision.reasons[0].startswith(f"Deviation {n} already has the disposition 'proceed'")
    d.record("deviation_close", {"deviation": n, "summary": "Done"})
    _, decision = d.attempt("deviation_close", {"deviation": n, "summary": "again"})
    assert decision.reasons[0].startswith(f"Deviation {n} was closed at entry")
    _, decision = d.attempt("deviation_close", {"deviation": "77", "summary": "?"})
    assert decision.reasons == ("There is no deviation 77 on this product (open: none)",)
    product = d.chain.product(COI)
    assert product is not None and product.open_deviations() == []


@pytest.mark.req("DEVIATIONS")
def test_temperature_excursion_opens_a_deviation() -> None:
    d = driver_at("shipped")
    _, decision = d.attempt("receipt_at_treatment", {"logger": "EXCURSION"})
    assert decision.allowed and decision.data == {"logger": "excursion"}
    assert [a.kind for a in decision.auto_deviations] == ["temperature_excursion"]


# ------------------------------------------------------------------------------------- labels


@pytest.mark.req("LABEL-CONTROL")
def test_label_lifecycle() -> None:
    d = driver_at("cryopreserved")
    d.record("label_issue", {"label": "l1"}, item="f00002")
    product = d.chain.product(COI)
    assert product is not None and product.labels["L1"].item == "F00002"
    _, decision = d.attempt("label_apply", {"label": "L1"})
    assert decision.reasons == ("Label L1 is issued; 'Label applied' needs it printed",)
    d.record("label_print", {"label": "L1"})
    _, decision = d.attempt("label_reprint", {"label": "L2", "replaces": "L1"})
    assert decision.reasons == ("Void label L1 before reprinting it (it is printed)",)
    d.record("label_void", {"label": "L1", "grounds": "Smudged"})
    d.record("label_reprint", {"label": "L2", "replaces": "L1"})
    assert product.labels["L2"].status == "printed" and product.labels["L2"].item == "F00002"
    assert product.labels["L2"].replaces == "L1"
    _, decision = d.attempt("label_issue", {"label": "L2"})
    assert decision.reasons == ("Label L2 already exists on this product (printed)",)


# ------------------------------------------------------------------------------ field checks


@pytest.mark.req("FIELD-CHECKS")
def test_field_validation_messages() -> None:
    d = driver_at("enrolled")
    _, decision = d.attempt(
        "apheresis_collection",
        {
            "din": "O99992612345",
            "collection_started_ms": str(T0 + 10 * DAY),
            "volume_ml": "2.5",
            "colour": "blue",
        },
    )
    assert decision.reasons == (
        "'Apheresis collection' has no field 'colour'; its fields are: din, "
        "collection_started_ms, volume_ml, total_nucleated_cells",
        "Field 'din' (Donation identification number (ISBT 128) with its check character): "
        "'O99992612345' does not have the expected format",
        "Field 'collection_started_ms' (Collection started, ms): "
        f"{format_ms(T0 + 10 * DAY)} is in the future",
        "Field 'volume_ml' (Collected volume, mL): '2.5' is not a whole number",
        "'Apheresis collection' needs the field 'total_nucleated_cells' (Total nucleated "
        "cells, cells)",
    )


def test_typed_values_are_json_profile() -> None:
    d = driver_at("enrolled")
    _, decision = d.attempt(
        "apheresis_collection",
        {
            "din": " a999926123456 ",
            "collection_started_ms": "2026-09-21T10:00Z",
            "volume_ml": "+250",
            "total_nucleated_cells": "1.20",
        },
    )
    assert decision.allowed, decision.reasons
    assert decision.data == {
        "din": "A999926123456",
        "collection_started_ms": int(datetime(2026, 9, 21, 10, 0, tzinfo=UTC).timestamp() * 1000),
        "volume_ml": 250,
        "total_nucleated_cells": "1.20",
    }
    assert not any(isinstance(v, float) for v in decision.data.values())


def test_item_rules() -> None:
    d = driver_at("stored")
    _, decision = d.attempt("thaw", item="F00009")
    assert decision.reasons == (
        f"Item F00009 does not belong to {COI}; its items: C00001, F00001, F00002, F00003",
    )
    _, decision = d.attempt("thaw", item="C00001")
    assert decision.reasons == ("'Thaw' needs a final product bag; C00001 is a collection item",)
    _, decision = d.attempt("storage", item="F00001")
    assert "'Storage' was already recorded" in decision.reasons[0]
    _, decision = d.attempt("lymphodepletion", item="F00001")
    assert decision.reasons == (
        "'Lymphodepletion' is about the whole product; do not name an item",
    )


# ------------------------------------------------------------------------------------- bedside


@pytest.mark.req("BEDSIDE")
def test_bedside_mismatch_refuses_and_opens_label_mismatch() -> None:
    d = driver_at("thawed")
    other = patient_commitment(SECRET, "TEST-PATIENT-0002")
    _, decision = d.attempt(
        "bedside_verification",
        {"scanned_coi": COI, "scanned_bag": "F00002", "wristband_commitment": other},
        item="F00001",
    )
    assert decision.reasons == (
        "Bedside verification failed: the bag scanned is F00002, not F00001; the wristband "
        "does not match the patient enrolled for this product",
    )
    (auto,) = decision.auto_deviations
    assert (auto.kind, auto.item) == ("label_mismatch", "F00001")


def test_patient_commitment_is_keyed_hmac() -> None:
    import hashlib
    import hmac

    assert COMMITMENT == hmac.new(SECRET, PATIENT.encode(), hashlib.sha256).hexdigest()
    assert patient_commitment(b"other", PATIENT) != COMMITMENT
    with pytest.raises(ValueError):
        patient_commitment(b"", PATIENT)


# ---------------------------------------------------------------------------------- end to end


@pytest.mark.req("TRACKING")
def test_enrolment_to_infusion_with_three_bags() -> None:
    d = Driver()
    for name, wait in HAPPY_PATH[:5]:
        d.record(name, advance=10 * MIN + wait)
    receipt = d.record("receipt_at_manufacturing", {"outcome": "accept", "logger": "excursion"})
    product = d.chain.product(COI)
    assert product is not None
    (excursion,) = product.open_deviations()
    assert excursion.kind == "temperature_excursion"
    fix = d.record(
        "correction",
        {"corrects": str(receipt.index), "reason": "Typo", "temperature_c": "6.5"},
        actor=user_for("manufacturing"),
    )
    for name, wait in HAPPY_PATH[6:18]:
        d.record(name, advance=10 * MIN + wait)
    _, blocked = d.attempt("qa_release")
    assert blocked.reasons == (f"Release blocked: deviation {excursion.index} is open",)
    d.record(
        "deviation_disposition",
        {"deviation": str(excursion.index), "disposition": "proceed", "rationale": "Within limits"},
    )
    d.record("deviation_close", {"deviation": str(excursion.index), "summary": "Closed"})
    for name, wait in HAPPY_PATH[18:]:
        d.record(name, advance=10 * MIN + wait)
    for bag in ("F00002", "F00003"):
        d.record("thaw", item=bag)
        d.record("bedside_verification", item=bag)
        d.record("infusion", item=bag)
    assert product.state == "infused"
    assert {i: product.items[i].status for i in product.items} == {
        "C00001": "consumed",
        "F00001": "infused",
        "F00002": "infused",
        "F00003": "infused",
    }
    assert product.corrections == {receipt.index: [fix.index]}
    assert product.custodian == "treatment1"
    rebuilt = replay(PROCESS, d.facts)
    assert rebuilt.to_json() == d.chain.to_json()


def test_replay_detects_a_fact_the_rules_refuse() -> None:
    d = driver_at("received")
    bad = Fact(
        d.index,
        d.now + MIN,
        "step.harvest",
        COI,
        {"viable_cells": "1", "viability_pct": "90"},
        (user_for("manufacturing"),),
    )
    with pytest.raises(ReplayError) as err:
        replay(PROCESS, [*d.facts, bad])
    assert err.value.index == bad.index
    assert "Harvest needs expansion first" in err.value.reason
    tampered = Fact(
        bad.index,
        bad.time_ms,
        "step.activation",
        COI,
        {"reagent_lot": "rl-1"},
        (user_for("manufacturing"),),
    )
    with pytest.raises(ReplayError, match="differ from what the process gives"):
        replay(PROCESS, [*d.facts, tampered])


def test_replayer_fed_one_fact_at_a_time_is_replay() -> None:
    """The verifier feeds facts one by one and skips the ledger's own entries: same state."""
    d = driver_at("infused")
    ledger_business = [Fact(i, T0, "user.enrol", "", {"user": f"u{i}"}, ()) for i in (1000, 1001)]
    everything = [*d.facts, *ledger_business]
    replayer = Replayer(PROCESS)
    for fact in d.facts:
        assert replayer.owns(fact.type)
        replayer.feed(fact)
        assert replayer.chain.last_index == fact.index
    assert not replayer.owns("user.enrol") and not replayer.owns("step.harvest\n")
    whole = replay(PROCESS, everything)
    assert replayer.chain.products.keys() == whole.products.keys() == {COI}
    assert replayer.chain.to_json()["products"] == whole.to_json()["products"]
    assert whole.to_json() == d.chain.to_json() | {"last_index": 1001}
    with pytest.raises(ReplayError, match=r"in ledger order \(after \d+\)") as err:
        replayer.feed(d.facts[3])
    assert err.value.index == d.facts[3].index


def test_replay_refusals_are_the_rules_reasons_worded_once() -> None:
    """A refused fact's reason is the rules' own, behind the one replay wording."""
    d = driver_at("received")
    bad = Fact(d.index, d.now + MIN, "step.harvest", COI, {"viable_cells": "1"}, (user_for("qc"),))
    reasons = check(PROCESS, d.chain, attempt_from_fact(PROCESS, bad)).reasons
    assert len(reasons) >= 2  # the role, the order, the missing field
    with pytest.raises(ReplayError) as err:
        replay(PROCESS, [*d.facts, bad])
    assert err.value.reason == say.process_refuses(reasons)
    assert err.value.reason.startswith("the process refuses this entry: Only manufacturing")
    assert str(err.value) == f"entry {bad.index}: {err.value.reason}"


def test_apply_refuses_out_of_order_and_unenrolled_facts() -> None:
    d = driver_at("enrolled")
    with pytest.raises(ReplayError):
        d.chain.apply(d.facts[0])
    with pytest.raises(ReplayError, match="not enrolled"):
        d.chain.apply(Fact(50, T0, "step.harvest", OTHER_COI, {}, (user_for("qa"),)))
    d.chain.apply(Fact(51, T0, "user.enrol", "", {"x": 1}, ()))  # not the chain's: ignored


def test_attempt_from_fact_round_trips() -> None:
    d = driver_at("qc_testing")
    for fact in d.facts:
        attempt = attempt_from_fact(PROCESS, fact)
        assert attempt.actor == fact.signers[0]
        assert PROCESS.step(attempt.step) is not None


# ------------------------------------------------------------------------ hypothesis machine


class ChainMachine(RuleBasedStateMachine):
    """Random attempts, mostly sensible, on two products; the invariants must always hold."""

    @initialize()
    def start(self) -> None:
        self.d = Driver()
        self.releases = 0

    @rule(
        name=st.sampled_from(STEP_NAMES),
        subject=st.sampled_from([COI, OTHER_COI]),
        role_ok=st.integers(0, 9),
        role=st.sampled_from(sorted(PROCESS.roles)),
        witness_mode=st.integers(0, 9),
        fields_mode=st.integers(0, 9),
        wait=st.one_of(st.integers(0, 30 * MIN), st.integers(HOUR, 4 * DAY)),
        bag=st.sampled_from([None, "F00001", "F00002", "C00001"]),
    )
    def attempt(
        self,
        name: str,
        subject: str,
        role_ok: int,
        role: str,
        witness_mode: int,
        fields_mode: int,
        wait: int,
        bag: str | None,
    ) -> None:
        d = self.d
        spec = step(name)
        actor = user_for(sorted(spec.roles)[role_ok % len(spec.roles)] if role_ok else role)
        if name == "correction" and role_ok:
            actor = user_for("qa")
        if witness_mode == 0:
            witness = None
        elif witness_mode == 1:
            witness = actor
        else:
            witness = user_for(sorted(spec.witness_roles)[0], 2) if spec.witness else None
        item = bag if fields_mode == 0 else None
        if item is None and spec.item not in ("none", "optional"):
            item = ready_item(d.chain, spec, subject)
        fields = valid_fields(d.chain, spec, subject, item)
        if (name == "qa_reject" or spec.effect == "final") and fields_mode != 9:
            fields_mode = 1  # rejecting or ending ends a product's walk: keep it rare
        if fields_mode == 1 and fields:
            fields.pop(sorted(fields)[0])
        elif fields_mode == 2 and fields:
            fields[sorted(fields)[-1]] = "??"
        before = d.chain.to_json()
        d.now += wait
        entry = {n: "scanner" for n in fields if n in spec.fields and spec.fields[n].scan_only}
        attempt = Attempt(name, subject, item, fields, actor, witness, d.now, entry)
        decision = check(PROCESS, d.chain, attempt)
        assert d.chain.to_json() == before  # checking changes nothing
        if not decision.allowed:
            assert decision.reasons
            for auto in decision.auto_deviations:
                d.open_auto(auto)
            return
        assert not any(isinstance(v, float) for v in decision.data.values())
        if spec.effect == "release":
            product = d.chain.product(subject)
            assert product is not None
            oos = product.oos_results()
            for test in PROCESS.qc_required:
                latest = product.latest_qc(test)
                assert latest is not None and (latest.result == "pass" or oos)
            assert all(d.kind == "oos_result" and d.disposition == "proceed"
                       for d in product.open_deviations())
            assert not oos or isinstance(decision.data.get("physician_request"), int)
            self.releases += 1
        d.append(attempt, decision)
        for auto in decision.auto_deviations:
            d.open_auto(auto)
        d.label_new_items(spec, subject)

    @rule(
        subject=st.sampled_from([COI, OTHER_COI]),
        pick=st.integers(0, 1000),
        wait=st.integers(0, 99),
        sloppy=st.integers(0, 9),
    )
    def progress(self, subject: str, pick: int, wait: int, sloppy: int) -> None:
        """An attempt at a step the product's state allows, mostly done right: walks far."""
        wait = wait * MIN if wait < 95 else (wait - 93) * DAY  # now and then days pass
        product = self.d.chain.product(subject)
        state = product.state if product is not None else PROCESS.initial_state
        candidates = [n for n in STEP_NAMES if state in step(n).from_states]
        if not candidates:
            return
        star = frozenset(PROCESS.states) - {PROCESS.initial_state}
        ending = {"qa_reject"} | {n for n in candidates if step(n).effect == "final"}
        forward = [n for n in candidates if step(n).from_states != star and n not in ending]
        if pick % 50:  # rejecting or ending a product ends its walk: keep it rare
            candidates = [n for n in candidates if n not in ending] or candidates
        pool = forward if forward and pick % 10 < 8 else candidates
        name = pool[(pick // 10) % len(pool)]
        self.attempt(
            name,
            subject,
            1 + pick % 7,
            "auditor",
            2 if sloppy else 0,
            5 if sloppy else 1,
            wait,
            None,
        )

    @rule(
        subject=st.sampled_from([COI, OTHER_COI]),
        pick=st.integers(0, 1000),
        wait=st.integers(0, 99),
    )
    def progress_carefully(self, subject: str, pick: int, wait: int) -> None:
        self.progress(subject, pick, wait, 1)

    @invariant()
    def released_products_passed_their_gate(self) -> None:
        for product in self.d.chain.products.values():
            if "qa_release" in product.steps:
                release_at = product.steps["qa_release"][0]
                assert all(
                    dev.index > release_at
                    or (dev.closed_index is not None and dev.closed_index < release_at)
                    for dev in product.deviations.values()
                )

    @invariant()
    def replay_gives_the_same_state(self) -> None:
        rebuilt = ChainState(PROCESS)
        for fact in self.d.facts:
            rebuilt.apply(fact)
        assert rebuilt.to_json() == self.d.chain.to_json()

    def teardown(self) -> None:
        if hasattr(self, "d"):
            assert replay(PROCESS, self.d.facts).to_json() == self.d.chain.to_json()


ChainMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestChainMachine = ChainMachine.TestCase


def test_machine_reaches_far_states() -> None:
    """A guided walk the machine's rules can take: sensible attempts only, in order."""
    machine = ChainMachine()
    machine.start()
    for name, wait in HAPPY_PATH:
        machine.attempt(name, COI, 1, "qa", 2, 5, 10 * MIN + wait, None)
    product = machine.d.chain.product(COI)
    assert product is not None and product.state == "infused"
    assert machine.releases == 1
    machine.teardown()
