"""A product taken over from another organisation: the state a hand-off brings with it.

A ``handoff.received`` entry (docs/federation.md) carries, in what the receiving person signs,
the product's state as the sender's shipment left it (``state``): where in the process it is,
the steps done there, its items and their statuses, the time windows still running (with their
start and deadline times, so a window crosses organisations), its labels and the patient
commitment. :func:`exported` makes that object from the product as rebuilt from the sender's
entries; :func:`take_in` applies it when the entry is replayed, so the product exists at the
receiver in that state and the process goes on there as at one site: the next step is the one
the shipment leads to (e.g. the receipt at manufacturing), which needs the physical receipt.

Pure and deterministic: what a replay builds depends only on the entry's data. The steps done
elsewhere count as done at the entry's index; the sender's QC results, deviations, authors and
corrections stay the sender's (its own ``coi verify`` covers them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coi.domain.errors import ReplayError
from coi.domain.facts import Fact
from coi.domain.process import Process
from coi.domain.product import Item, Label, ProductState, WindowState

__all__ = ["HANDOFF_RECEIVED", "exported", "state_types", "take_in"]

HANDOFF_RECEIVED = "handoff.received"
_KEYS = frozenset({"state", "steps", "items", "windows", "labels", "patient_commitment"})


def state_types(process: Process) -> frozenset[str]:
    """The entry types a product's state is built from: the process steps and the hand-off
    receipt."""
    return process.entry_types | {HANDOFF_RECEIVED}


def exported(product: ProductState) -> dict[str, Any]:
    """What a hand-off carries of ``product`` (JSON; keys sorted when signed)."""
    return {
        "state": product.state,
        "steps": sorted(product.steps),
        "items": {k: {"kind": i.kind, "status": i.status}
                  for k, i in sorted(product.items.items())},
        "windows": {k: {"name": w.name, "item": w.item, "started_by": w.started_by,
                        "start_ms": w.start_ms, "opens_ms": w.opens_ms,
                        "deadline_ms": w.deadline_ms}
                    for k, w in sorted(product.windows.items()) if w.ended_index is None},
        "labels": {k: {"item": lb.item, "status": lb.status, "replaces": lb.replaces}
                   for k, lb in sorted(product.labels.items())},
        "patient_commitment": product.patient_commitment,
    }


def take_in(process: Process, here: ProductState | None, fact: Fact) -> ProductState | None:
    """The product after ``fact`` (a ``handoff.received``): ``here`` (the product as this site
    knew it, if it did: e.g. it shipped it out and now takes it back) moved to the state the
    hand-off carries. An entry without ``state`` (written before hand-offs carried one) changes
    nothing. A malformed one is a :class:`ReplayError`."""
    raw = fact.data.get("state")
    if raw is None:
        return here
    try:
        return _take_in(process, here, fact, raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplayError(f"{HANDOFF_RECEIVED} on {fact.subject} carries a state that cannot "
                          f"be taken in: {exc}", index=fact.index) from exc


def _take_in(process: Process, here: ProductState | None, fact: Fact, raw: Any
             ) -> ProductState:
    d = _obj(raw, "state")
    if set(d) != _KEYS:
        raise ValueError(f"its keys are {sorted(d)}, not {sorted(_KEYS)}")
    state = _text(d["state"], "state")
    if state not in process.states or state == process.initial_state:
        raise ValueError(f"{state!r} is not a state of process {process.name} after enrolment")
    product = here or ProductState(coi=fact.subject, state=state, enrolled_index=fact.index)
    product.state = state
    for name in d["steps"]:
        if _text(name, "step") not in process.steps:
            raise ValueError(f"{name!r} is not a step of process {process.name}")
        if not product.completed(name):
            product.steps[name] = [fact.index]
    items: dict[str, Item] = {}
    for key, raw_item in _obj(d["items"], "items").items():
        it = _obj(raw_item, "item")
        kind = _text(it["kind"], "item kind")
        if kind not in process.items:
            raise ValueError(f"{kind!r} is not an item kind of process {process.name}")
        old = product.items.get(key)
        items[key] = Item(key, kind, _text(it["status"], "item status"),
                          old.created_index if old is not None else fact.index)
    product.items = items
    for running in product.windows.values():  # what ran here ended where the product went on
        if running.ended_index is None:
            running.ended_index = fact.index
    for key, raw_window in _obj(d["windows"], "windows").items():
        w = _obj(raw_window, "window")
        name = _text(w["name"], "window")
        if name not in process.windows:
            raise ValueError(f"{name!r} is not a window of process {process.name}")
        started_by = _text(w["started_by"], "step")
        if started_by not in process.steps:
            raise ValueError(f"{started_by!r} is not a step of process {process.name}")
        product.windows[key] = WindowState(
            name=name, item=_opt_text(w["item"]), started_by=started_by,
            start_index=fact.index, start_ms=_int(w["start_ms"]),
            opens_ms=None if w["opens_ms"] is None else _int(w["opens_ms"]),
            deadline_ms=_int(w["deadline_ms"]))
    for key, raw_label in _obj(d["labels"], "labels").items():
        lb = _obj(raw_label, "label")
        status, item = _text(lb["status"], "label status"), _opt_text(lb["item"])
        old_label = product.labels.get(key)
        if old_label is None or (old_label.status, old_label.item) != (status, item):
            product.labels[key] = Label(key, item, status, [fact.index],
                                        _opt_text(lb["replaces"]))
    if product.patient_commitment is None:
        product.patient_commitment = _opt_text(d["patient_commitment"])
    product.custodian = None  # in the courier's hands until the receipt here takes custody
    product.last_index = fact.index
    product.last_time_ms = fact.time_ms
    return product


def _obj(v: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise TypeError(f"its {what} is not an object")
    return v


def _text(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise TypeError(f"its {what} is not text")
    return v


def _opt_text(v: Any) -> str | None:
    if v is not None and not isinstance(v, str):
        raise TypeError(f"{v!r} is not text")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{v!r} is not an integer")
    return v
