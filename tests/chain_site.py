"""Chain-of-identity test sites: real ledgers with real keys, built once, copied per test.

Building a site costs seconds on purpose (scrypt per user), so :func:`template_site` builds one
SQLite site per test session and :func:`copy_site` gives each test a private file copy (ledger,
WAL and log key). People are the demo staff plus ``hana`` (both QA and manufacturing, for the
separation-of-duties rule), without the auditor. The clock is a
:class:`~coi.service.demo.MovableClock`: it only moves when a test moves it.

:func:`walk` drives a product along :data:`coi.service.demo.PLAN` (with the plan's offsets from
enrolment as the event times), so tests can start from any point of the chain.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from coi.service.chain import CoiService, Recorded
from coi.service.demo import (
    DEMO_STAFF,
    PLAN,
    STEP_NAMES,
    MovableClock,
    Site,
    Walk,
    create_site,
    demo_password,
    enrol,
    step,
)
from coi.service.ledger import Unlocked

T0 = 1_790_000_000_000  # 2026-09-21, a fixed start for every site
MIN = 60_000
H = 60 * MIN
D = 24 * H
STAFF = (*(s for s in DEMO_STAFF if s[0] != "ari"),
         ("hana", "Hana Hybrid", ("manufacturing", "qa")))
# A small staff for sites built per test (PostgreSQL): two people who hold every operational
# role but QA (so one can witness the other), one QA reviewer, the administrator.
MINI_STAFF = (DEMO_STAFF[0],
              ("pat", "Pat Operator", ("apheresis", "courier", "manufacturing", "qc", "treatment")),
              ("sam", "Sam Operator", ("apheresis", "courier", "manufacturing", "qc", "treatment")),
              ("grace", "Grace QA", ("qa",)))
MINI_ALIASES = {"alice": "pat", "amir": "sam", "colin": "pat", "maya": "pat", "mo": "sam",
                "quinn": "pat", "nina": "pat", "noah": "sam", "grace": "grace", "admin": "admin"}


@dataclass
class ChainSite:
    svc: CoiService
    clock: MovableClock
    people: dict[str, Unlocked]
    db: str
    log_key: Path

    @property
    def demo(self) -> Site:
        return Site(svc=self.svc, people=self.people)

    def at(self, ms: int) -> None:
        self.clock.set(ms)

    def advance(self, ms: int) -> None:
        self.clock.set(self.clock.now_ms() + ms)

    def entry_count(self) -> int:
        return self.svc.ledger.store.count_rows()

    def state_row(self, coi: str) -> tuple[str, str, int] | None:
        return self.svc.store.state_of(coi)

    def last_entry(self) -> dict[str, Any]:
        """The newest ledger entry as stored: index, type, subject and statement data."""
        head = self.svc.ledger.store.head()
        assert head is not None
        row = self.svc.ledger.store.row(head.size - 1)
        assert row is not None
        st = json.loads(row.statement)
        return {"index": row.index, "type": row.type, "subject": row.subject,
                "signer": row.signer, "data": st["data"], "statement": st}

    def entry(self, index: int) -> dict[str, Any]:
        row = self.svc.ledger.store.row(index)
        assert row is not None
        st = json.loads(row.statement)
        return {"index": row.index, "type": row.type, "subject": row.subject,
                "signer": row.signer, "data": st["data"], "statement": st}

    def sql(self, q: str, **params: Any) -> list[Any]:
        with self.svc.ledger.engine.begin() as c:
            res = c.execute(text(q), params)
            return list(res) if res.returns_rows else []


_TEMPLATE: dict[str, Any] = {}


def template_site(root: Path) -> tuple[Path, Path, dict[str, Unlocked], int]:
    """The session's template site (built on first use under ``root``)."""
    if not _TEMPLATE:
        root.mkdir(parents=True, exist_ok=True)
        db, key = root / "coi.db", root / "coi.db.logkey"
        clock = MovableClock(T0)
        site = create_site(str(db), str(key), clock=clock, staff=STAFF)
        site.svc.ledger.engine.dispose()
        _TEMPLATE.update(db=db, key=key, people=dict(site.people), now=clock.now_ms())
    return _TEMPLATE["db"], _TEMPLATE["key"], _TEMPLATE["people"], _TEMPLATE["now"]


def copy_site(root: Path, dest: Path) -> ChainSite:
    """A private copy of the template site in ``dest`` (no key derivation)."""
    src, key, people, now = template_site(root)
    dest.mkdir(parents=True, exist_ok=True)
    db = dest / "coi.db"
    for suffix in ("", "-wal", "-shm"):
        if Path(str(src) + suffix).exists():
            shutil.copy(str(src) + suffix, str(db) + suffix)
    shutil.copy(key, dest / "coi.db.logkey")
    shutil.copy(str(src) + ".phikey", dest / "coi.db.phikey")
    clock = MovableClock(now)
    svc = CoiService.open(str(db), str(dest / "coi.db.logkey"), clock=clock)
    return ChainSite(svc=svc, clock=clock, people=dict(people), db=str(db),
                     log_key=dest / "coi.db.logkey")


def new_site(db: str, log_key: Path, *, staff: Any = MINI_STAFF,
             aliases: dict[str, str] | None = MINI_ALIASES) -> ChainSite:
    """A site built from scratch (any backend); ``aliases`` map the plan's people to ``staff``."""
    clock = MovableClock(T0)
    site = create_site(db, str(log_key), clock=clock, staff=staff, password=demo_password)
    people = dict(site.people)
    if aliases:
        people.update({alias: site.people[real] for alias, real in aliases.items()})
    return ChainSite(svc=site.svc, clock=clock, people=people, db=db, log_key=log_key)


def plan_index(name: str) -> int:
    return STEP_NAMES.index(name)


@dataclass
class PWalk(Walk):
    """A walk that knows when it started and which plan step comes next."""

    t0: int = 0
    next: int = 0


def new_walk(site: ChainSite, seq: int = 1, *, bags: int = 3, excursion: bool = False,
             start_ms: int | None = None, patient_id: str = "") -> PWalk:
    """Enrol a product (at ``start_ms`` or now) and return its walk."""
    if start_ms is not None:
        site.at(start_ms)
    w = PWalk(seq=seq, bags=bags, excursion=excursion, patient_id=patient_id)
    enrol(site.demo, w)
    w.t0 = site.clock.now_ms()
    return w


def do(site: ChainSite, w: PWalk, n: int | None = None) -> Recorded:
    """Record plan step ``n`` (default: the next one) at its planned time."""
    n = w.next if n is None else n
    site.at(w.t0 + PLAN[n][1])
    rec: Recorded = step(site.demo, w, n, site.clock.now_ms())
    w.next = max(w.next, n + 1)
    return rec


def walk(site: ChainSite, w: PWalk, *, until: str) -> None:
    """Record the plan's steps in order up to ``until`` (excluded)."""
    stop = plan_index(until)
    while w.next < stop:
        do(site, w)
