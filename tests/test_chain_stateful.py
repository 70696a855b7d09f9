"""Random sequences of service actions on one real site, checking the chain's invariants.

A hypothesis state machine drives ``CoiService`` (real SQLite ledger, real keys, a movable
clock): products enrolled and walked along the plan, random steps by random people with or
without witnesses, the clock jumping ahead past windows, failing QC results, QA dispositions and
closures, release attempts by any QA user. After every action:

* no product is released unless, just before, every required QC result had passed and every
  deviation was closed without a 'reject' disposition (and the releaser took no part in
  manufacturing or QC);
* every refused attempt is in the ledger as a site-signed ``system.refusal`` naming the step and
  the person, and refusals change no product's state;
* the state rebuilt from the ledger (``coi.domain.replay.replay`` over the stored facts) equals
  the ``product_state`` table.

At the end of each run ``CoiService.verify`` re-checks the whole ledger. Each run works on a
fresh copy of one prebuilt site (building one costs seconds of scrypt, on purpose).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from coi.domain.loader import load_process
from coi.domain.replay import replay
from coi.domain.state import ProductState
from coi.ledger import jcs
from coi.ledger.entry import Statement
from coi.service.chain import fact_of
from coi.service.demo import PLAN, STEP_NAMES
from coi.service.errors import Refused
from tests.chain_site import MIN, STAFF, ChainSite, D, H, PWalk, copy_site, do, new_walk

PEOPLE = tuple(s[0] for s in STAFF if s[0] != "admin")
QA = ("grace", "hana")
MAX_PRODUCTS = 2
AFTER_RELEASE = {"released", "shipped", "received_at_site", "stored", "thawed", "verified",
                 "infused"}
PROCESS = load_process()
_ROOT: dict[str, Path] = {}


def gate_problems(product: ProductState, releaser: str) -> list[str]:
    """Why releasing ``product`` now would break the rules (independently of coi.domain)."""
    out = []
    for test in PROCESS.qc_required:
        latest = product.latest_qc(test)
        if latest is None or latest.result != "pass":
            out.append(f"qc {test}")
    for dev in product.deviations.values():
        if dev.is_open or dev.disposition == "reject":
            out.append(f"deviation {dev.index}")
    for step in ("activation", "transduction", "expansion", "harvest", "formulation",
                 "cryopreservation", "qc_result", "receipt_at_manufacturing"):
        if releaser in product.authors.get(step, set()) | product.witnesses.get(step, set()):
            out.append(f"{releaser} took part in {step}")
    return out


class ChainMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="coi-chain-machine-"))
        self.site: ChainSite = copy_site(_ROOT["template"], self.dir)
        self.walks: list[PWalk] = []
        self.refusals: list[int] = []
        self.releases = 0

    def teardown(self) -> None:
        try:
            self.site.svc.verify()  # signatures, chain, tree, the process replay, the table
        finally:
            self.site.svc.ledger.engine.dispose()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------------
    def walk_of(self, n: int) -> PWalk:
        return self.walks[n % len(self.walks)]

    def attempt(self, coi: str, step: str, who: str, fn: Any) -> Any:
        """Run one attempt; a refusal must be recorded and must leave the product alone."""
        chain = self.site.svc.chain()
        product = chain.product(coi)
        before = product.to_json() if product is not None else None
        row = self.site.state_row(coi)
        problems = gate_problems(product, who) if product is not None else ["not enrolled"]
        try:
            rec = fn()
        except Refused as e:
            assert e.reason.strip()
            assert e.recorded_index is not None, f"refusal not recorded: {e.reason}"
            entry = self.site.entry(e.recorded_index)
            assert entry["type"] == "system.refusal" and entry["signer"] == "@site"
            assert entry["data"]["attempted"] == step and entry["data"]["by"] == who
            assert entry["data"]["reasons"]
            self.refusals.append(e.recorded_index)
            after = self.site.svc.chain().product(coi)
            if not entry["data"].get("deviations_opened"):
                assert (after.to_json() if after is not None else None) == before
                assert self.site.state_row(coi) == row
            else:  # only the automatic deviations were added
                assert before is not None and after is not None
                assert after.state == before["state"]
                added = set(after.deviations) - {int(k) for k in before["deviations"]}
                assert added == set(entry["data"]["deviations_opened"])
            return None
        if step == "qa_release":
            assert problems == [], f"released although {problems}"
            self.releases += 1
        return rec

    # -- rules ----------------------------------------------------------------------------------
    @precondition(lambda self: len(self.walks) < MAX_PRODUCTS)
    @rule(excursion=st.booleans(), bags=st.integers(1, 3))
    def enrol(self, excursion: bool, bags: int) -> None:
        w = new_walk(self.site, seq=len(self.walks) + 1, bags=bags, excursion=excursion)
        self.walks.append(w)

    @precondition(lambda self: self.walks)
    @rule(n=st.integers(0, MAX_PRODUCTS - 1), times=st.integers(1, 20))
    def follow_the_plan(self, n: int, times: int) -> None:
        """The right people do the next steps, at the plan's times (later if the clock is)."""
        w = self.walk_of(n)
        for _ in range(times):
            product = self.site.svc.chain().product(w.coi)
            while (product is not None and w.next < len(PLAN)
                   and not PROCESS.steps[PLAN[w.next][0]].repeatable
                   and product.completed(PLAN[w.next][0])):
                w.next += 1  # someone else already did it
            if w.next >= len(PLAN):
                return
            name, _off, author, *_ = PLAN[w.next]
            if self.attempt(w.coi, name, author, lambda: do(self.site, w)) is None:
                return

    @precondition(lambda self: self.walks)
    @rule(n=st.integers(0, MAX_PRODUCTS - 1), step=st.sampled_from((*STEP_NAMES, "teleport")),
          who=st.sampled_from(PEOPLE), witness=st.sampled_from((None, *PEOPLE)))
    def anyone_tries_any_step(self, n: int, step: str, who: str, witness: str | None) -> None:
        w = self.walk_of(n)
        fields: dict[str, str] = {}
        item = None
        if step in STEP_NAMES:
            plan = PLAN[STEP_NAMES.index(step)]
            fields = dict(plan[5](w, self.site.clock.now_ms()))
            item = plan[4]
        people = self.site.people
        self.attempt(w.coi, step, who, lambda: self.site.svc.record(
            step, w.coi, actor=people[who], witness=people[witness] if witness else None,
            item=item, fields=fields))

    @rule(ms=st.sampled_from((MIN, 30 * MIN, 2 * H, 12 * H, D, 3 * D)))
    def time_passes(self, ms: int) -> None:
        self.site.advance(ms)

    @precondition(lambda self: self.walks)
    @rule(n=st.integers(0, MAX_PRODUCTS - 1),
          test=st.sampled_from(("endotoxin", "viability", "sterility")),
          passes=st.booleans())
    def qc_result(self, n: int, test: str, passes: bool) -> None:
        w = self.walk_of(n)
        value = {("endotoxin", True): "0.4", ("endotoxin", False): "9.5",
                 ("viability", True): "88", ("viability", False): "41",
                 ("sterility", True): "no_growth", ("sterility", False): "growth"}[test, passes]
        self.site.advance(H)
        self.attempt(w.coi, "qc_result", "quinn", lambda: self.site.svc.record(
            "qc_result", w.coi, actor=self.site.people["quinn"],
            fields={"test": test, "result": "pass" if passes else "fail", "value": value}))

    @precondition(lambda self: self.walks)
    @rule(n=st.integers(0, MAX_PRODUCTS - 1), who=st.sampled_from(QA),
          disposition=st.sampled_from(("proceed", "proceed", "reject")), close=st.booleans())
    def qa_reviews_a_deviation(self, n: int, who: str, disposition: str, close: bool) -> None:
        w = self.walk_of(n)
        product = self.site.svc.chain().product(w.coi)
        if product is None or not product.open_deviations():
            return
        dev = product.open_deviations()[0]
        actor = self.site.people[who]
        self.site.advance(10 * MIN)
        if dev.disposition is None:
            self.attempt(w.coi, "deviation_disposition", who, lambda: self.site.svc.record(
                "deviation_disposition", w.coi, actor=actor,
                fields={"deviation": str(dev.index), "disposition": disposition,
                        "rationale": "Reviewed"}))
        if close:
            self.attempt(w.coi, "deviation_close", who, lambda: self.site.svc.record(
                "deviation_close", w.coi, actor=actor,
                fields={"deviation": str(dev.index), "summary": "Closed"}))

    @precondition(lambda self: self.walks)
    @rule(n=st.integers(0, MAX_PRODUCTS - 1), who=st.sampled_from(QA))
    def qa_tries_to_release(self, n: int, who: str) -> None:
        w = self.walk_of(n)
        self.site.advance(MIN)
        rec = self.attempt(w.coi, "qa_release", who, lambda: self.site.svc.record(
            "qa_release", w.coi, actor=self.site.people[who],
            fields={"certificate_id": f"COA{w.seq:04d}"}))
        if rec is not None and w.next <= STEP_NAMES.index("qa_release"):
            w.next = STEP_NAMES.index("qa_release") + 1

    @precondition(lambda self: self.walks)
    @rule(n=st.integers(0, MAX_PRODUCTS - 1))
    def hana_does_manufacturing(self, n: int) -> None:
        """The dual-role QA user records a manufacturing step when the product is due one."""
        w = self.walk_of(n)
        if w.next >= len(PLAN) or PLAN[w.next][0] not in ("activation", "expansion", "harvest"):
            return
        name, _off, _author, _wit, item, fields = PLAN[w.next]
        rec = self.attempt(w.coi, name, "hana", lambda: self.site.svc.record(
            name, w.coi, actor=self.site.people["hana"], item=item,
            fields=dict(fields(w, self.site.clock.now_ms()))))
        if rec is not None:
            w.next += 1

    # -- invariants -----------------------------------------------------------------------------
    @invariant()
    def every_refusal_is_in_the_ledger(self) -> None:
        in_ledger = [r[0] for r in self.site.sql(
            "SELECT idx FROM ledger_entry WHERE type = 'system.refusal' ORDER BY idx")]
        assert in_ledger == sorted(self.refusals)

    @invariant()
    def the_ledger_rebuilds_the_table(self) -> None:
        svc = self.site.svc
        reg = svc.ledger.registry()
        facts = [fact_of(Statement.from_json(jcs.decode(r.statement)), reg)
                 for r in svc.ledger.store.rows()]
        rebuilt = replay(svc.process(), facts)  # also re-checks every fact against the rules
        stored = {coi: json.loads(data) for coi, _s, data, _i in svc.store.states()}
        assert stored == {coi: p.to_json() for coi, p in rebuilt.products.items()}
        states = {coi: s for coi, s, _d, _i in svc.store.states()}
        assert states == {coi: p.state for coi, p in rebuilt.products.items()}
        # The per-state counts moved with every row, in the same transactions.
        assert svc.store.state_counts() == dict(Counter(states.values()))

    @invariant()
    def nothing_released_past_the_gate(self) -> None:
        """Whatever is at or past release got there through a release entry that passed."""
        for coi, product in self.site.svc.chain().products.items():
            if product.state in AFTER_RELEASE:
                assert product.completed("qa_release"), coi
                assert all(i.status != "cryopreserved" for i in product.items_of("final"))


@pytest.fixture(scope="module")
def template_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.chain_site import template_site

    root = tmp_path_factory.getbasetemp() / "chain-template"
    template_site(root)
    return root


def test_random_action_sequences_keep_the_invariants(template_root: Path) -> None:
    _ROOT["template"] = template_root
    run_state_machine_as_test(ChainMachine, settings=settings(
        max_examples=15, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]))


def test_the_machine_can_reach_infusion(template_root: Path) -> None:
    """A guided run through the machine's rules: a wrong move, an excursion, release, infusion."""
    _ROOT["template"] = template_root
    m = ChainMachine()
    try:
        m.enrol(excursion=True, bags=2)
        m.anyone_tries_any_step(0, "qa_release", "maya", None)  # wrong role, out of order
        m.follow_the_plan(0, times=20)  # stops at release: the excursion is open
        assert m.site.svc.chain().product(m.walks[0].coi).state == "qc_testing"  # type: ignore[union-attr]
        m.qa_reviews_a_deviation(0, "grace", "proceed", close=True)
        m.follow_the_plan(0, times=20)
        for check in (m.every_refusal_is_in_the_ledger, m.the_ledger_rebuilds_the_table,
                      m.nothing_released_past_the_gate):
            check()
        assert m.site.svc.chain().product(m.walks[0].coi).state == "infused"  # type: ignore[union-attr]
        assert m.releases == 1 and len(m.refusals) == 2
    finally:
        m.teardown()
