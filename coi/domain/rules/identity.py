"""Identity at the bedside and on the bag: the bedside check and controlled labels.

Owns the bedside rule (the scanned chain of identity, the scanned bag and the wristband's
commitment must all match the product and bag being infused; a mismatch refuses and opens a
``label_mismatch`` deviation by itself) and the label rules (a label is issued once, printed,
then applied or voided; only a voided label is reprinted, under a new id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coi.domain import messages as say
from coi.domain.facts import AutoDeviation
from coi.domain.process import StepSpec
from coi.domain.rules.evaluation import Evaluation
from coi.domain.state import FINAL_ITEM_STATUSES, ProductState

__all__ = ["CLOSED_ITEM_STATES", "bedside", "item_closed", "labels", "labelled_items"]

CLOSED_ITEM_STATES = FINAL_ITEM_STATUSES
"""Item statuses after which the item is gone (consumed, infused, returned, disposed,
destroyed): no label is issued (or reprinted) for it, and it needs none to leave."""


def item_closed(status: str) -> bool:
    """Whether an item in ``status`` is gone: see CLOSED_ITEM_STATES."""
    return status in CLOSED_ITEM_STATES


def bedside(ev: Evaluation, step: StepSpec, values: Mapping[str, Any]) -> None:
    product, item = ev.product, ev.item
    if product is None or item is None or ev.reasons:
        return
    mismatches: list[str] = []
    if values.get("scanned_coi") != product.coi.strip().upper():
        mismatches.append(say.bedside_wrong_coi(values.get("scanned_coi"), product.coi))
    if values.get("scanned_bag") != item:
        mismatches.append(say.bedside_wrong_bag(values.get("scanned_bag"), item))
    if values.get("wristband_commitment") != product.patient_commitment:
        mismatches.append(say.BEDSIDE_WRONG_PATIENT)
    if mismatches:
        text = say.bedside_failed(mismatches)
        deviation = AutoDeviation(
            subject=product.coi,
            kind="label_mismatch",
            description=say.bedside_opened(text, ev.attempt.actor.user),
            item=item,
        )
        ev.breach(text, deviation)


_NEEDED = {"label_print": ("issued",), "label_apply": ("printed",)}
_ANY_LIVE = ("issued", "printed", "applied")


def labels(ev: Evaluation, step: StepSpec, values: Mapping[str, Any]) -> None:
    product = ev.product
    label_id = values.get("label")
    if product is None or not isinstance(label_id, str):
        return
    label = product.labels.get(label_id)
    if step.effect in ("label_issue", "label_reprint"):
        if label is not None:
            ev.refuse(say.label_exists(label_id, label.status))
        if step.effect == "label_reprint":
            _reprint(ev, product, values.get("replaces"))
        _closed_item(ev, product, values.get("replaces"))
        return
    if label is None:
        ev.refuse(say.no_such_label(label_id))
        return
    needed = _NEEDED.get(step.effect, _ANY_LIVE)
    if label.status not in needed:
        ev.refuse(say.label_wrong_status(label_id, label.status, step.title, needed))


def _reprint(ev: Evaluation, product: ProductState, old_id: object) -> None:
    old = product.labels.get(old_id) if isinstance(old_id, str) else None
    if old is None:
        ev.refuse(say.no_label_to_reprint(old_id))
    elif old.status != "voided":
        ev.refuse(say.void_before_reprint(old_id, old.status))


def _closed_item(ev: Evaluation, product: ProductState, replaces: object) -> None:
    """No label for an item that is gone: the item named, or the item of the label replaced."""
    item_id = ev.item
    if isinstance(replaces, str) and replaces in product.labels:
        item_id = product.labels[replaces].item
    item = product.items.get(item_id) if item_id is not None else None
    if item is not None and item_closed(item.status):
        ev.refuse(say.label_for_closed_item(item.id, item.status))


def labelled_items(ev: Evaluation, step: StepSpec) -> None:
    """Every item of the step's ``labelled_items`` kind still here carries an applied label."""
    product, kind = ev.product, step.labelled_items
    if product is None or kind is None:
        return
    applied = {lab.item for lab in product.labels.values() if lab.status == "applied"}
    missing = [i.id for i in sorted(product.items_of(kind), key=lambda i: i.id)
               if not item_closed(i.status) and i.id not in applied]
    if missing:
        ev.refuse(say.items_unlabelled(missing, step.title))
