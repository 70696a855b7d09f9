"""Demo and test data: a site with staff at every stage and products walked along the chain.

Used by ``coi demo`` (a demo SQLite ledger for the TUI) and by the tests (``walk``). Only FIN
A9999 (reserved by ISBT 128 for validation) and invented people appear here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coi.domain import isbt
from coi.domain.rules.identity import item_closed
from coi.ledger.clock import Clock
from coi.ledger.keys import generate
from coi.service.chain import CoiService, genesis_extras
from coi.service.errors import Refused
from coi.service.label_codes import label_id, next_number
from coi.service.ledger import LedgerService, Unlocked

DEMO_FIN = "A9999"
DEMO_ORIGIN = "demo.coi.example/a9999"
DEMO_TZ = "Europe/Paris"
# user id, printed name, roles
DEMO_STAFF: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("admin", "Ada Admin", ("admin",)),
    ("alice", "Alice Apheresis", ("apheresis",)),
    ("amir", "Amir Apheresis", ("apheresis",)),
    ("colin", "Colin Courier", ("courier",)),
    ("maya", "Maya Manufacturing", ("manufacturing",)),
    ("mo", "Mo Manufacturing", ("manufacturing",)),
    ("quinn", "Quinn QC", ("qc",)),
    ("grace", "Grace QA", ("qa",)),
    ("nina", "Nina Nurse", ("treatment",)),
    ("noah", "Noah Nurse", ("treatment",)),
    ("ari", "Ari Auditor", ("auditor",)),
)


def demo_password(user: str) -> str:
    return f"{user}-demo-2026"


H = 3_600_000
D = 24 * H
MIN = 60_000


class MovableClock:
    """A clock the demo builder sets to each event's time (never backwards)."""

    def __init__(self, start_ms: int) -> None:
        self._ms = start_ms

    def set(self, ms: int) -> None:
        self._ms = max(self._ms, ms)

    def now_ms(self) -> int:
        return self._ms

    def monotonic(self) -> float:
        return self._ms / 1000


QC_VALUES = {"sterility": "no_growth", "endotoxin": "0.5", "mycoplasma": "not_detected",
             "viability": "91.5", "car_expression": "42.0", "vector_copy_number": "1.8"}

Fields = Callable[["Walk", int], Mapping[str, str]]


def _qc_fields(test: str) -> Fields:
    return lambda w, t: {"test": test, "result": "pass", "value": QC_VALUES[test]}


@dataclass
class Walk:
    """One product being walked along the chain by the demo or a test."""

    coi: str = ""
    seq: int = 0
    din: str = ""
    bags: int = 3
    patient_id: str = ""
    excursion: bool = False
    done: list[str] = field(default_factory=list)
    label_bags: bool = True  # label each final bag once it exists (see label_bags)


# (step, offset from enrolment, author, witness, item, fields)
PLAN: tuple[tuple[str, int, str, str | None, str | None, Fields], ...] = (
    ("apheresis_collection", 1 * D, "alice", None, None,
     lambda w, t: {"din": w.din, "collection_started_ms": str(t - 4 * H), "volume_ml": "250",
                   "total_nucleated_cells": "12000000000"}),
    ("labelling", 1 * D + 10 * MIN, "alice", "amir", None, lambda w, t: {"labels_applied": "1"}),
    ("packaging", 1 * D + 30 * MIN, "alice", None, None,
     lambda w, t: {"container_id": f"BOX{w.seq:04d}", "temperature_range": "2_8c"}),
    ("courier_pickup", 1 * D + 2 * H, "colin", None, None,
     lambda w, t: {"shipper_id": f"SHP{w.seq:04d}", "logger_id": f"LOG{w.seq:04d}"}),
    ("receipt_at_manufacturing", 1 * D + 20 * H, "maya", None, None,
     lambda w, t: {"outcome": "accept", "logger": "excursion" if w.excursion else "in_range",
                   "temperature_c": "11.5" if w.excursion else "5.0"}),
    ("activation", 2 * D, "maya", None, None, lambda w, t: {"reagent_lot": "TA-2611"}),
    ("transduction", 3 * D, "maya", None, None,
     lambda w, t: {"vector_lot": "LV-0426", "moi": "2.5"}),
    ("expansion", 10 * D, "mo", None, None,
     lambda w, t: {"culture_days": "7", "viable_cells": "3400000000"}),
    ("harvest", 11 * D, "maya", None, None,
     lambda w, t: {"viable_cells": "3100000000", "viability_pct": "92.5"}),
    ("formulation", 11 * D + 3 * H, "maya", None, None,
     lambda w, t: {"volume_ml": "70", "car_t_cells": "200000000"}),
    ("cryopreservation", 11 * D + 5 * H, "maya", "mo", None,
     lambda w, t: {"bag_count": str(w.bags), "volume_ml_per_bag": "23.3"}),
    *tuple(("qc_result", 13 * D + n * H, "quinn", None, None, _qc_fields(test))
           for n, test in enumerate(QC_VALUES)),
    ("qa_release", 14 * D, "grace", None, None,
     lambda w, t: {"certificate_id": f"COA{w.seq:04d}"}),
    ("shipment", 14 * D + 4 * H, "colin", None, None,
     lambda w, t: {"shipper_id": f"DRY{w.seq:04d}", "logger_id": f"LGR{w.seq:04d}"}),
    ("receipt_at_treatment", 15 * D, "nina", None, None, lambda w, t: {"logger": "in_range"}),
    ("storage", 15 * D + 1 * H, "nina", None, None,
     lambda w, t: {"location": "LN2 tank 2, rack B", "temperature_c": "-150"}),
    ("lymphodepletion", 16 * D, "nina", None, None,
     lambda w, t: {"regimen": "fludarabine + cyclophosphamide"}),
    ("thaw", 20 * D, "nina", None, "F00001", lambda w, t: {"method": "water_bath"}),
    ("bedside_verification", 20 * D + 20 * MIN, "nina", "noah", "F00001",
     lambda w, t: {"scanned_coi": w.coi, "scanned_bag": "F00001", "wristband": w.patient_id}),
    ("infusion", 20 * D + 30 * MIN, "nina", None, "F00001",
     lambda w, t: {"infusion_started_ms": str(t)}),
)
STEP_NAMES = tuple(p[0] for p in PLAN)
SCANNED_BY_STATION = frozenset({"scanned_coi", "scanned_bag", "wristband", "paperwork"})


@dataclass
class Site:
    svc: CoiService
    people: dict[str, Unlocked]


def create_site(db: str, log_key: str | None = None, *, clock: Clock,
                staff: tuple[tuple[str, str, tuple[str, ...]], ...] = DEMO_STAFF,
                password: Callable[[str], str] = demo_password, origin: str = DEMO_ORIGIN,
                fin: str = DEMO_FIN) -> Site:
    """A new ledger with the demo staff enrolled and unlocked."""
    ledger = LedgerService.open(db, log_key, clock=clock)
    site_data, process = genesis_extras(fin)
    admin = staff[0]
    ledger.init(origin=origin, admin=admin[0], admin_name=admin[1],
                admin_password=password(admin[0]), tz=DEMO_TZ, site_data=site_data,
                process=process)
    people = {admin[0]: ledger.unlock(admin[0], password(admin[0]))}
    for user, name, roles in staff[1:]:
        key = generate()  # kept unlocked: unlocking it again would cost a second scrypt
        ledger.enrol(people[admin[0]], user=user, name=name, roles=list(roles),
                     password=password(user), key=key)
        people[user] = Unlocked(user, key)
    return Site(svc=CoiService(ledger), people=people)


def enrol(site: Site, walk: Walk, *, by: str = "alice",
          patient: Mapping[str, str] | None = None) -> None:
    svc = site.svc
    walk.patient_id = walk.patient_id or f"MRN{walk.seq:06d}"
    coi, _ = svc.enrol(actor=site.people[by], patient={
        "patient_id": walk.patient_id, "name": f"Demo Patient {walk.seq}",
        "date_of_birth": f"19{50 + walk.seq % 40}-{1 + walk.seq % 12:02d}-{1 + walk.seq % 28:02d}",
        **(patient or {})},
                       treatment_site="A9999-HEMATOLOGY", manufacturing_slot=f"SLOT-{walk.seq}")
    walk.coi = coi
    cid = isbt.coi_id_from_text(coi)
    walk.din = isbt.Din(DEMO_FIN, cid.year, f"{walk.seq:06d}").text
    walk.done.append("enrolment")


def step(site: Site, walk: Walk, n: int, now_ms: int) -> Any:
    name, _off, author, witness, item, fields = PLAN[n]
    values = dict(fields(walk, now_ms))
    spec = site.svc.process().step(name)
    if spec is not None and "din" in values and spec.fields["din"].check == "din":
        values["din"] = f"{walk.din} {isbt.mod37_2(walk.din)}"  # keyed as printed, with its K
    # The demo plays a scan station: what a station scans, it enters as scanned.
    scanned = {k: "scanner" for k in values if k in SCANNED_BY_STATION}
    rec = site.svc.record(name, walk.coi, actor=site.people[author],
                          witness=site.people[witness] if witness else None, item=item,
                          fields=values, entry_methods=scanned)
    walk.done.append(name)
    if walk.label_bags:
        label_bags(site, walk.coi, name)
    return rec


def label_bags(site: Site, coi: str, step_name: str, *, by: str = "maya") -> None:
    """After a step that creates bags a later step needs labelled (``labelled_items``), label
    them: issued, printed and applied, as the label station records them."""
    svc = site.svc
    process = svc.process()
    spec = process.step(step_name)
    product = svc.chain().product(coi)
    if spec is None or spec.creates is None or product is None:
        return
    kind = spec.creates.kind
    if not any(s.labelled_items == kind for s in process.steps.values()):
        return
    applied = {lab.item for lab in product.labels.values() if lab.status == "applied"}
    actor = site.people[by]
    for item in sorted(i.id for i in product.items_of(kind)):
        if item in applied or item_closed(product.items[item].status):
            continue
        product = svc.chain().product(coi) or product
        label = label_id(coi, item, next_number(product))
        svc.record("label_issue", coi, actor=actor, item=item,
                   fields={"label": label, "template": "4x2 zpl 203dpi"})
        svc.record("label_print", coi, actor=actor, fields={"label": label})
        svc.record("label_apply", coi, actor=actor, fields={"label": label})


def build_demo(db: str, log_key: str | None = None, *, products: int = 20, now_ms: int,
               seed: int = 2026, progress: Callable[[str], None] | None = None) -> Site:
    """The demo site: ~20 products at different stages, a few deviations, events up to now."""
    rng = random.Random(seed)
    start = now_ms - 24 * D
    clock = MovableClock(start)
    site = create_site(db, log_key, clock=clock)
    walks = [Walk(seq=k + 1, bags=rng.choice((1, 2, 3)), excursion=(k % 7 == 3))
             for k in range(products)]
    events: list[tuple[int, int, int]] = []  # (time, product, plan step or -1 = enrol)
    for k, _w in enumerate(walks):
        t0 = start + k * 22 * H + rng.randrange(0, 3 * H)
        events.append((t0, k, -1))
        for n, (_name, off, *_rest) in enumerate(PLAN):
            if t0 + off < now_ms - 10 * MIN:
                events.append((t0 + off, k, n))
    events.sort()
    for t, k, n in events:
        w = walks[k]
        clock.set(t)
        try:
            if n < 0:
                enrol(site, w)
                if progress:
                    progress(f"enrolled {w.coi}")
            elif w.done and w.done[-1] in _before(n):
                step(site, w, n, clock.now_ms())
                if PLAN[n][0] == "receipt_at_manufacturing" and w.excursion:
                    _handle_excursion(site, w, clock)
        except Refused:
            continue  # the demo keeps going: the refusal is in the ledger like any other
    return site


def _before(n: int) -> set[str]:
    """Steps after which plan step n may follow in the demo's simple schedule."""
    return {"enrolment"} if n == 0 else {PLAN[n - 1][0], "deviation_close"}


def _handle_excursion(site: Site, w: Walk, clock: MovableClock) -> None:
    """A temperature excursion: QA reviews it; every other one is left open for the demo."""
    product = site.svc.chain().product(w.coi)
    if product is None:
        return
    for dev in product.open_deviations():
        if w.seq % 2 == 0:
            continue
        clock.set(clock.now_ms() + 30 * MIN)
        site.svc.record("deviation_disposition", w.coi, actor=site.people["grace"],
                        fields={"deviation": str(dev.index), "disposition": "proceed",
                                "rationale": "Logger peak 11.5 °C for 40 min; within the "
                                             "validated stability data"})
        site.svc.record("deviation_close", w.coi, actor=site.people["grace"],
                        fields={"deviation": str(dev.index),
                                "summary": "Closed after review of the logger trace"})
        w.done.append("deviation_close")
