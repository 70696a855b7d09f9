"""The demo's first steps: build the demo ledger as of now, and what to try on it first.

``coi demo`` builds the demo ledger (:func:`coi.service.demo.build_demo`) at the current time
and then suggests a few scans: a product waiting at a station's step with the label text to
scan there (and the paperwork's, for a receipt), and a product QA may release. The front end
words and prints them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from coi.ledger.clock import SystemClock
from coi.service.chain import CoiService
from coi.service.demo import build_demo
from coi.service.scans import label_text
from coi.service.views import release_blockers

# (state a product waits in, the step to record next, a demo user who may, the item scanned)
_STOPS = (("transduced", "expansion", "mo", "C00001"),
          ("expanded", "harvest", "maya", "C00001"),
          ("shipped", "receipt_at_treatment", "nina", "F00001"))
_RELEASER = "grace"


@dataclass(frozen=True)
class TryScan:
    """Record ``step`` as ``user``: scan ``scan`` (then ``paperwork``, when there is one)."""

    step: str
    user: str
    scan: str
    paperwork: str | None = None


@dataclass(frozen=True)
class Tour:
    """What to try first on a demo ledger: scans at stations, and a product QA may release."""

    scans: list[TryScan]
    releaser: str = _RELEASER
    release: str | None = None  # a product in QC testing that the releaser may release


def build_now(db: str, *, products: int, progress: Callable[[str], None] | None = None
              ) -> None:
    """Build the demo ledger at ``db`` with its events up to the current time (``progress`` is
    told of each product enrolled)."""
    build_demo(db, None, products=products, now_ms=SystemClock().now_ms(), progress=progress)


def tour(db: str) -> Tour:
    """The products of the demo ledger at ``db`` worth trying first."""
    svc = CoiService.open(db)
    scans = []
    for state, step, user, item in _STOPS:
        rows = svc.products(state=state, limit=1)
        if rows:
            coi = rows[0]["coi"]
            paperwork = label_text(coi, "D00001") if step == "receipt_at_treatment" else None
            scans.append(TryScan(step, user, label_text(coi, item), paperwork))
    release = next((row["coi"] for row in svc.products(state="qc_testing")
                    if not release_blockers(svc, row["coi"], _RELEASER)), None)
    return Tour(scans, release=release)
