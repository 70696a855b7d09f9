"""The federation demo: three organisations, three real ledgers, products handed between them.

Used by ``coi demo --federation DIR``. A collection centre (FIN A9998, SQLite) enrols and
collects, a manufacturer (FIN A9997, PostgreSQL when a URL is given, else SQLite) makes and
releases, a treatment centre (FIN A9999, SQLite) receives, stores, prepares the patient and
infuses. Each pins the two others (a treatment centre accepts a product only with a partner's
FIN, the one of the collection centre that assigned its CoI); every shipping step names its
receiver and is followed by a real hand-off file (``coi handoff export``) received at the other
side (``coi handoff receive --ack``, whose cosignature the sender keeps: ``coi handoff ack``),
so products stand at every stage: at the collection centre, expected at the manufacturer, in
manufacturing, expected at the treatment centre, received there, stored and the patient
prepared (lymphodepletion), and one through the whole chain: received, stored, thawed, checked
at the bedside (witnessed, the wristband against the patient kept at the treatment centre) and
infused. Labels are printed signed, as a regulated site prints them (``coi label … --size 4x2
--signed -f zpl``, the issuing person's key; files under ``DIR/<organisation>/labels``) and
applied after a scan of them: the collection bag's at the collection centre, the final bags'
at the manufacturer. The next organisation scans them with exactly the payload printed
(:func:`printed_payload`), through the scan check a station runs, which verifies the signature
against the issuer its ``handoff.received`` entry recorded: the collection bag at the receipt at
manufacturing, the final bag before each step at the treatment centre. The hand-off files and
the finished product's bundle from the treatment centre are kept under ``DIR/files``, so
``coi verify-chain`` checks that product across the three organisations
(:attr:`Federation.command`, paths relative to ``DIR``). FINs A9997 to A9999 and the people
are invented.
"""

from __future__ import annotations

import random
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from coi.domain import isbt, payload
from coi.export.bundle import Scope, export_bundle
from coi.ledger.clock import SystemClock
from coi.service import partners
from coi.service.demo import (
    MIN,
    PLAN,
    D,
    MovableClock,
    Site,
    Walk,
    create_site,
    demo_password,
    step,
)
from coi.service.errors import ConfigError
from coi.service.handoff import export_handoff
from coi.service.handoff_ack import record_ack
from coi.service.handoff_receive import receive_handoff
from coi.service.label_codes import label_code, labels_of
from coi.service.label_signing import issued, sign_label
from coi.service.labels import apply, check_scan, issue_and_print
from coi.service.phi_store import open_patient

__all__ = ["ORGS", "Federation", "Org", "build_federation", "printed_payload"]


@dataclass(frozen=True)
class Org:
    """One organisation of the demo."""

    key: str  # its folder under DIR and its partner name at the others
    origin: str
    fin: str
    role: str  # partner role: collection, manufacturing, treatment
    staff: tuple[tuple[str, str, tuple[str, ...]], ...]


ORGS = (
    Org("collection-centre", "collect.demo.coi.example/a9998", "A9998", "collection",
        (("admin", "Ada Admin", ("admin",)), ("alice", "Alice Apheresis", ("apheresis",)),
         ("amir", "Amir Apheresis", ("apheresis",)), ("colin", "Colin Courier", ("courier",)))),
    Org("manufacturer", "make.demo.coi.example/a9997", "A9997", "manufacturing",
        (("admin", "Ada Admin", ("admin",)), ("maya", "Maya Manufacturing", ("manufacturing",)),
         ("mo", "Mo Manufacturing", ("manufacturing",)), ("quinn", "Quinn QC", ("qc",)),
         ("grace", "Grace QA", ("qa",)), ("colin", "Colin Courier", ("courier",)))),
    Org("treatment-centre", "treat.demo.coi.example/a9999", "A9999", "treatment",
        (("admin", "Ada Admin", ("admin",)), ("nina", "Nina Nurse", ("treatment",)),
         ("noah", "Noah Nurse", ("treatment",)), ("ari", "Ari Auditor", ("auditor",)))),
)
COLLECT, MAKE, TREAT = ORGS
_STAGE_END = {"courier_pickup": MAKE, "shipment": TREAT}  # shipping step -> its receiver
_RECEIVER_BY = {MAKE.key: "maya", TREAT.key: "nina"}
# How far each demo product goes: the plan's step names it stops after (then a hand-off when
# that step ships). The first goes the whole chain, to its infusion at the treatment centre.
_LAST_STEP = ("infusion", "lymphodepletion", "shipment", "expansion", "courier_pickup",
              "packaging")
# Who prints the labels of the bags a step creates, at the organisation recording it.
_PRINTER = {COLLECT.key: "alice", MAKE.key: "maya"}


@dataclass
class Federation:
    """The built demo: where each ledger is, and the command that verifies the finished one."""

    dir: Path
    dbs: dict[str, str]  # org key -> database (a file path relative to DIR, or a URL)
    log_keys: dict[str, str]  # org key -> log verifier key string
    products: dict[str, str]  # CoI -> where it stands
    finished: str  # the CoI that went through the whole chain
    files: list[str] = field(default_factory=list)  # relative to DIR, for verify-chain
    # CoI -> org key -> its stage in that organisation's ledger (the last step recorded there,
    # or expected, and the product's state there); organisations it never reached left out
    stages: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def command(self) -> str:
        trust = " ".join(f"--trust {shlex.quote(self.log_keys[o.key])}" for o in ORGS)
        return (f"coi verify-chain --coi {self.finished} {trust} "
                + " ".join(shlex.quote(f) for f in self.files))


def _where(n: int) -> Org:
    """The organisation that records plan step ``n``."""
    names = [p[0] for p in PLAN]
    if n <= names.index("courier_pickup"):
        return COLLECT
    return MAKE if n <= names.index("shipment") else TREAT


def build_federation(root: Path, *, now_ms: int | None = None,
                     manufacturer_db: str | None = None,
                     progress: Callable[[str], None] | None = None) -> Federation:
    """Build the three ledgers under ``root`` (which must not exist or be empty) with their
    events up to ``now_ms`` (default: now); ``manufacturer_db``: a PostgreSQL URL for the
    manufacturer."""
    root = Path(root)
    if now_ms is None:
        now_ms = SystemClock().now_ms()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root} exists and is not an empty folder: give a new one")
    (root / "files").mkdir(parents=True, exist_ok=True)
    start = now_ms - 30 * D
    sites: dict[str, tuple[Site, MovableClock]] = {}
    dbs: dict[str, str] = {}
    for org in ORGS:
        (root / org.key).mkdir()
        clock = MovableClock(start)
        db = str(root / org.key / "coi.db")
        log_key = None
        if org is MAKE and manufacturer_db:
            db, log_key = manufacturer_db, str(root / org.key / "coi.logkey")
        sites[org.key] = (create_site(db, log_key, clock=clock, staff=org.staff,
                                      password=demo_password, origin=org.origin, fin=org.fin),
                          clock)
        dbs[org.key] = db if org is MAKE and manufacturer_db else f"{org.key}/coi.db"
        if progress:
            progress(f"{org.key} ({org.fin}) ready")
    keys = {o.key: sites[o.key][0].svc.ledger.log_verifier_key() for o in ORGS}
    # Every pair pins each other: the treatment centre accepts a CoI only with the FIN of a
    # partner (the collection centre assigned it), the manufacturer ships to the other two.
    for a, b in ((a, b) for a in ORGS for b in ORGS if a is not b):
        site, clock = sites[a.key]
        clock.set(start + MIN)
        partners.add(site.svc.ledger, site.people["admin"], name=b.key, log_key=keys[b.key],
                     fin=b.fin, role=b.role)
    fed = Federation(dir=root, dbs=dbs, log_keys=keys, products={}, finished="")
    _walk_all(root, sites, fed, start, now_ms, progress)
    return fed


def _walk_all(root: Path, sites: Mapping[str, tuple[Site, MovableClock]], fed: Federation,
              start: int, now_ms: int, progress: Callable[[str], None] | None) -> None:
    """Enrol the demo products and walk each to its last step, in time order across sites."""
    rng = random.Random(2026)
    names = [p[0] for p in PLAN]
    events: list[tuple[int, int, int]] = []  # (time, product, plan step; -1 = enrolment)
    walks = []
    for k, last in enumerate(_LAST_STEP):
        t0 = start + 2 * 60 * MIN + k * 2 * D + rng.randrange(0, 60) * MIN
        walks.append(Walk(seq=k + 1, bags=2, label_bags=False))  # labelled signed: _label
        events.append((t0, k, -1))
        stop = max(i for i, name in enumerate(names) if name == last)
        events += [(t0 + PLAN[n][1], k, n) for n in range(stop + 1)
                   if t0 + PLAN[n][1] < now_ms - 10 * MIN]
    for t, k, n in sorted(events):
        w = walks[k]
        if n < 0:
            _enrol(sites[COLLECT.key], w, t)
            fed.products[w.coi] = "collection-centre: enrolled"
            fed.stages[w.coi] = {COLLECT.key: "enrolment"}
            if progress:
                progress(f"enrolled {w.coi}")
            continue
        org = _where(n)
        site, clock = sites[org.key]
        clock.set(t)
        name = PLAN[n][0]
        if name in _STAGE_END:
            _ship(root, sites, org, _STAGE_END[name], w, n, fed)
        else:
            _scan_bag(sites, org, w, n)
            step(site, w, n, clock.now_ms())
            _label(root, org, site, w, name)
            fed.products[w.coi] = f"{org.key}: {name}"
            fed.stages[w.coi][org.key] = name
    for coi, stages in fed.stages.items():
        for key, stage in stages.items():
            product = sites[key][0].svc.chain().product(coi)
            stages[key] = f"{stage}; state {product.state if product else '?'}"
    fed.finished = walks[0].coi
    treat, clock = sites[TREAT.key]
    out = root / "files" / f"{fed.finished}-{TREAT.key}.jsonl"
    ledger = treat.svc.ledger
    export_bundle(ledger.store, out, scope=Scope("coi", coi=fed.finished),
                  checkpoint=ledger.checkpoint(), log_key=ledger.log_key(),
                  created_ms=clock.now_ms())
    fed.files = [f for f in fed.files if f.startswith(f"files/{fed.finished}-")]
    fed.files.append(str(out.relative_to(root)))


def _label(root: Path, org: Org, site: Site, w: Walk, name: str) -> None:
    """After a step that creates bags (the collection bag, the final bags), print each bag's
    label signed as a regulated site does (``coi label COI --item ITEM --size 4x2 --signed -f
    zpl -o FILE``: the issuing person's key) and apply it, confirmed by scanning it."""
    spec = site.svc.process().step(name)
    product = site.svc.chain().product(w.coi)
    if spec is None or spec.creates is None or product is None:
        return
    by = site.people[_PRINTER[org.key]]
    folder = root / org.key / "labels"
    folder.mkdir(exist_ok=True)
    for item in sorted(i.id for i in product.items_of(spec.creates.kind)):
        label, _ = issue_and_print(site.svc, by, w.coi, item, "zpl", "4x2", None, False,
                                   folder / f"{w.coi}-{item}.zpl", signed=True)
        apply(site.svc, by, w.coi, label, printed_payload(site, w.coi, item))


def _enrol(at: tuple[Site, MovableClock], w: Walk, t: int) -> None:
    site, clock = at
    clock.set(t)
    w.patient_id = f"MRN{w.seq:06d}"
    coi, _ = site.svc.enrol(actor=site.people["alice"], patient={
        "patient_id": w.patient_id, "name": f"Demo Patient {w.seq}"},
        treatment_site=f"{TREAT.fin}-HEMATOLOGY", manufacturing_slot=f"SLOT-{w.seq}")
    w.coi = coi
    w.din = isbt.Din(COLLECT.fin, isbt.coi_id_from_text(coi).year, f"{w.seq:06d}").text
    w.done.append("enrolment")


def _ship(root: Path, sites: Mapping[str, tuple[Site, MovableClock]], org: Org, to: Org,
          w: Walk, n: int, fed: Federation) -> None:
    """The shipping step naming ``to``, its hand-off file, and the receipt of it there."""
    site, clock = sites[org.key]
    name, _off, author, _witness, _item, fields = PLAN[n]
    values = dict(fields(w, clock.now_ms()))
    values["receiver"] = to.key.upper()
    site.svc.record(name, w.coi, actor=site.people[author], fields=values)
    w.done.append(name)
    rel = f"files/{w.coi}-{org.key}-to-{to.key}.jsonl"
    clock.set(clock.now_ms() + 5 * MIN)
    export_handoff(site.svc, site.people["colin"], coi=w.coi, to=to.key, out=root / rel)
    fed.files.append(rel)
    there, there_clock = sites[to.key]
    there_clock.set(clock.now_ms() + 10 * MIN)
    ack = root / rel.replace(".jsonl", ".ack")  # the receiver's cosignature, sent back
    receive_handoff(there.svc, there.people[_RECEIVER_BY[to.key]], root / rel, ack=ack)
    if to is TREAT:  # the hospital that collected treats: its PHI store holds the patient
        found = open_patient(sites[COLLECT.key][0].svc.ledger, sites[COLLECT.key][0].svc.store,
                             w.coi)
        assert found is not None and not isinstance(found, str)
        there.svc.keep_received_patient(w.coi, found.secret, found.identifiers)
    clock.set(there_clock.now_ms() + 5 * MIN)
    record_ack(site.svc, site.people["admin"], ack)
    fed.products[w.coi] = f"{to.key}: expected (hand-off from {org.key})"
    fed.stages[w.coi][org.key] = f"{name}, handed off to {to.key}"
    fed.stages[w.coi][to.key] = f"expected (hand-off from {org.key})"


def _scan_bag(sites: Mapping[str, tuple[Site, MovableClock]], org: Org, w: Walk,
              n: int) -> None:
    """Where a partner's label arrives, a station scans the bag before the step: at the receipt
    at manufacturing the collection bag, at the treatment centre the final bag before each step,
    with exactly the payload printed on its label at the partner (signed), checked here as a scan
    station checks it: against the issuer the ``handoff.received`` entry recorded (a refusal is
    recorded and stops the demo)."""
    name, _off, author, _witness, item, _fields = PLAN[n]
    if org is TREAT:
        printer, kind = MAKE, "final"
    elif name == "receipt_at_manufacturing":
        printer, kind = COLLECT, "collection"
    else:
        return
    there = sites[printer.key][0]
    product = there.svc.chain().product(w.coi)
    assert product is not None
    bag = item or min(i.id for i in product.items_of(kind))
    raw = printed_payload(there, w.coi, bag)
    check_scan(sites[org.key][0].svc, raw, expect_coi=w.coi, expect_item=item, station=name,
               by=author)


def printed_payload(site: Site, coi: str, item: str) -> str:
    """The payload printed on ``item``'s newest label at ``site`` (the issuing site): ``COS1``
    signed by the key that issued it when it was printed signed, else the plain ``COI1``."""
    product = site.svc.chain().product(coi)
    assert product is not None
    labels = labels_of(product, item)
    code = label_code(item, len(labels) - 1)
    facts = issued(site.svc, labels[-1])
    if facts.signed:
        return sign_label(site.people[facts.user], coi, code)
    return payload.encode(coi, code)
