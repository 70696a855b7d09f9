"""One product's state at a site: its items, windows, QC results, deviations and labels.

The value types of :mod:`coi.domain.state` (which owns how facts change them), apart so that
what builds a product from elsewhere (:mod:`coi.domain.handoff_import`) can use them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FINAL_ITEM_STATUSES",
    "FINAL_PRODUCT_STATES",
    "Deviation",
    "Item",
    "Label",
    "ProductState",
    "QcResult",
    "WindowState",
]

# Where nothing more happens: an item in one of these statuses is used up (consumed, infused) or
# gone (returned, disposed of, destroyed): no step moves it on and no label may be issued for it.
# A product in one of FINAL_PRODUCT_STATES has ended as a whole (see docs/process.md).
FINAL_ITEM_STATUSES = frozenset({"consumed", "infused", "returned", "disposed", "destroyed"})
FINAL_PRODUCT_STATES = frozenset({"returned", "disposed", "destroyed"})


@dataclass
class Item:
    """A physical item bound to the CoI: the collection bag or one final product bag."""

    id: str
    kind: str
    status: str
    created_index: int

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_ITEM_STATUSES

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "status": self.status, "created_index": self.created_index}


@dataclass
class WindowState:
    """One running (or ended) time window of a product, or of one of its items."""

    name: str
    item: str | None
    started_by: str  # step name
    start_index: int
    start_ms: int
    opens_ms: int | None  # not before (the window's minimum)
    deadline_ms: int
    ended_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "item": self.item,
            "started_by": self.started_by,
            "start_index": self.start_index,
            "start_ms": self.start_ms,
            "opens_ms": self.opens_ms,
            "deadline_ms": self.deadline_ms,
            "ended_index": self.ended_index,
        }


@dataclass
class QcResult:
    """One recorded QC result (corrections applied). A retest is a result of its own that names
    the one it follows (``retest_of``) and why; the earlier result stays as it was."""

    index: int
    test: str
    result: str
    value: str | int
    unit: str | None
    retest_of: int | None = None
    retest_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "test": self.test, "result": self.result, "value": self.value, "unit": self.unit
        }
        if self.retest_of is not None:  # only then: states rebuilt under 1.0/1.1 stay as they were
            out["retest_of"] = self.retest_of
            out["retest_reason"] = self.retest_reason
        return out


@dataclass
class Deviation:
    """A deviation, identified by the ledger index of the entry that opened it."""

    index: int
    kind: str
    description: str
    window: str | None
    item: str | None
    opened_by: str
    disposition: str | None = None
    disposition_index: int | None = None
    closed_index: int | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_index is None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "window": self.window,
            "item": self.item,
            "opened_by": self.opened_by,
            "disposition": self.disposition,
            "disposition_index": self.disposition_index,
            "closed_index": self.closed_index,
        }


@dataclass
class Label:
    """A controlled label: issued -> printed -> applied, or voided (and then perhaps reprinted)."""

    id: str
    item: str | None
    status: str
    events: list[int] = field(default_factory=list)
    replaces: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "status": self.status,
            "events": list(self.events),
            "replaces": self.replaces,
        }


@dataclass
class ProductState:
    """Everything the rules need to know about one product (one CoI)."""

    coi: str
    state: str
    enrolled_index: int
    patient_commitment: str | None = None
    steps: dict[str, list[int]] = field(default_factory=dict)
    entry_steps: dict[int, str] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    windows: dict[str, WindowState] = field(default_factory=dict)
    qc_results: dict[int, QcResult] = field(default_factory=dict)
    deviations: dict[int, Deviation] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    authors: dict[str, set[str]] = field(default_factory=dict)
    witnesses: dict[str, set[str]] = field(default_factory=dict)
    corrections: dict[int, list[int]] = field(default_factory=dict)
    custodian: str | None = None
    last_index: int = -1
    last_time_ms: int = 0
    # The latest ``handoff.received`` applied to it (None: never received here). Not in
    # ``to_json``: it only says whether the product is expected (coi.service.projection).
    received_index: int | None = None

    def completed(self, step: str) -> bool:
        return bool(self.steps.get(step))

    def latest_qc(self, test: str) -> QcResult | None:
        found = [r for r in self.qc_results.values() if r.test == test]
        return max(found, key=lambda r: r.index) if found else None

    def qc_history(self, test: str) -> list[QcResult]:
        """Every result of ``test``, oldest first: a failure stays, a retest follows it."""
        return sorted((r for r in self.qc_results.values() if r.test == test),
                      key=lambda r: r.index)

    def oos_results(self) -> list[QcResult]:
        """Every out-of-specification (``fail``) result ever recorded, oldest first."""
        return sorted((r for r in self.qc_results.values() if r.result == "fail"),
                      key=lambda r: r.index)

    def open_deviations(self) -> list[Deviation]:
        return [d for d in self.deviations.values() if d.is_open]

    def items_of(self, kind: str) -> list[Item]:
        return [i for i in self.items.values() if i.kind == kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "coi": self.coi,
            "state": self.state,
            "enrolled_index": self.enrolled_index,
            "patient_commitment": self.patient_commitment,
            "steps": {k: list(v) for k, v in sorted(self.steps.items())},
            "items": {k: v.to_json() for k, v in sorted(self.items.items())},
            "windows": {k: v.to_json() for k, v in sorted(self.windows.items())},
            "qc_results": {str(k): v.to_json() for k, v in sorted(self.qc_results.items())},
            "deviations": {str(k): v.to_json() for k, v in sorted(self.deviations.items())},
            "labels": {k: v.to_json() for k, v in sorted(self.labels.items())},
            "authors": {k: sorted(v) for k, v in sorted(self.authors.items())},
            "witnesses": {k: sorted(v) for k, v in sorted(self.witnesses.items())},
            "corrections": {str(k): list(v) for k, v in sorted(self.corrections.items())},
            "custodian": self.custodian,
            "last_index": self.last_index,
            "last_time_ms": self.last_time_ms,
        }
