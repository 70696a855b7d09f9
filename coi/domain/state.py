"""The state of every product under one process, rebuilt from ledger facts in ledger order.

This module owns the state model: :class:`ChainState` (every product) and :class:`ProductState`
(one CoI: its state, items, time windows, QC results, deviations, labels, who recorded or
witnessed each step, corrections and custody), and :meth:`ChainState.apply`, how one fact changes
them. Replay is deterministic: the same facts give the same :meth:`ChainState.to_json`, so the
state the service keeps can be compared with the state rebuilt from the ledger.

It owns no rule: whether a fact may happen is :func:`coi.domain.check.check`'s to say, and the
replay that asks it for every fact is :mod:`coi.domain.replay`. ``apply`` trusts that the fact was
checked; what it cannot apply at all is a :class:`~coi.domain.errors.ReplayError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from coi.domain import messages as say
from coi.domain.errors import ReplayError
from coi.domain.facts import Fact
from coi.domain.handoff_import import HANDOFF_RECEIVED, take_in
from coi.domain.process import Process, StepSpec, WindowSpec
from coi.domain.product import (
    FINAL_ITEM_STATUSES,
    FINAL_PRODUCT_STATES,
    Deviation,
    Item,
    Label,
    ProductState,
    QcResult,
    WindowState,
)

__all__ = [
    "FINAL_ITEM_STATUSES",
    "FINAL_PRODUCT_STATES",
    "ChainState",
    "Deviation",
    "Item",
    "Label",
    "ProductState",
    "QcResult",
    "WindowState",
    "window_key",
]


class ChainState:
    """The state of every product under one process; built by applying facts in ledger order."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.products: dict[str, ProductState] = {}
        self.last_index = -1

    def product(self, coi: str) -> ProductState | None:
        return self.products.get(coi)

    def to_json(self) -> dict[str, Any]:
        return {
            "process": self.process.sha256,
            "last_index": self.last_index,
            "products": {k: v.to_json() for k, v in sorted(self.products.items())},
        }

    def apply(self, fact: Fact) -> None:
        """Apply one fact (already checked when it was appended). A ``handoff.received`` takes
        the product over in the state the hand-off carries (:mod:`coi.domain.handoff_import`).
        Other entry types are ignored: genesis, user enrolment, refusals and other ledger
        business are not the product chain's.
        """
        if fact.index <= self.last_index:
            raise ReplayError(say.out_of_order(self.last_index), index=fact.index)
        self.last_index = fact.index
        step = self.process.step_for_entry_type(fact.type)
        if step is None:
            if fact.type == HANDOFF_RECEIVED:  # a product taken over from another organisation
                taken = take_in(self.process, self.product(fact.subject), fact)
                if taken is not None:
                    taken.received_index = fact.index
                    self.products[fact.subject] = taken
            return
        try:
            _apply(self, step, fact)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayError(
                say.cannot_apply(fact.type, fact.subject, exc), index=fact.index
            ) from exc


def window_key(spec: WindowSpec, item: str | None) -> str:
    """Where a window lives in :attr:`ProductState.windows`: per item, or once per product."""
    return f"{spec.name}/{item}" if spec.per_item and item is not None else spec.name


# -------------------------------------------------------------------------- applying one fact


def _apply(chain: ChainState, step: StepSpec, fact: Fact) -> None:
    """The changes every step makes, in this order, then its effect's own."""
    process = chain.process
    product = _product_for(chain, step, fact)
    _note_step(product, step, fact)
    item_id = fact.data.get("item")
    if not isinstance(item_id, str):
        item_id = None
    if process.initial_state in step.from_states and "patient_commitment" in fact.data:
        product.patient_commitment = str(fact.data["patient_commitment"])
    _move_items(process, product, step, fact, item_id)
    if step.to_state is not None and not (step.effect == "final" and item_id is not None):
        product.state = step.to_state
    elif step.to_state_field is not None:
        product.state = step.to_state_map[str(fact.data[step.to_state_field])]
    _move_windows(process, product, step, fact, item_id)
    if step.takes_custody and fact.signers:
        product.custodian = fact.signers[0].user
    if step.effect == "final":
        _final(product, step.item_to or "", fact, item_id)
    effect = _EFFECTS.get(step.effect)
    if effect is not None:
        effect(product, fact, item_id)


def _product_for(chain: ChainState, step: StepSpec, fact: Fact) -> ProductState:
    product = chain.product(fact.subject)
    if product is None:
        initial = chain.process.initial_state
        if initial not in step.from_states:
            raise ReplayError(say.subject_not_enrolled(fact.subject), index=fact.index)
        product = ProductState(coi=fact.subject, state=initial, enrolled_index=fact.index)
        chain.products[fact.subject] = product
    return product


def _note_step(product: ProductState, step: StepSpec, fact: Fact) -> None:
    product.steps.setdefault(step.name, []).append(fact.index)
    product.entry_steps[fact.index] = step.name
    product.last_index = fact.index
    product.last_time_ms = fact.time_ms
    if fact.signers:
        product.authors.setdefault(step.name, set()).add(fact.signers[0].user)
        for witness in fact.signers[1:]:
            product.witnesses.setdefault(step.name, set()).add(witness.user)


def _move_items(
    process: Process, product: ProductState, step: StepSpec, fact: Fact, item_id: str | None
) -> None:
    if step.effect == "final":
        return  # its effect moves the item, or every item (see _final)
    if step.item_to is not None and item_id is not None:
        product.items[item_id].status = step.item_to
    if step.creates is not None:
        kind = process.items[step.creates.kind]
        count = step.creates.count
        if count is None:
            count = int(fact.data[step.creates.count_field or ""])
        existing = len(product.items_of(kind.name))
        for n in range(existing + 1, existing + count + 1):
            new_id = f"{kind.prefix}{n:05d}"
            product.items[new_id] = Item(new_id, kind.name, "created", fact.index)
        if step.to_state is not None:
            for item in product.items_of(kind.name):
                if item.created_index == fact.index:
                    item.status = step.to_state
    for kind_name, status in step.items_to.items():
        for item in product.items_of(kind_name):
            item.status = status


def _move_windows(
    process: Process, product: ProductState, step: StepSpec, fact: Fact, item_id: str | None
) -> None:
    for window_name in step.ends:
        key = window_key(process.windows[window_name], item_id)
        if key in product.windows and product.windows[key].ended_index is None:
            product.windows[key].ended_index = fact.index
    for window_name in step.starts:
        spec = process.windows[window_name]
        product.windows[window_key(spec, item_id)] = WindowState(
            name=window_name,
            item=item_id if spec.per_item else None,
            started_by=step.name,
            start_index=fact.index,
            start_ms=fact.time_ms,
            opens_ms=None if spec.min_ms is None else fact.time_ms + spec.min_ms,
            deadline_ms=fact.time_ms + spec.max_ms,
        )


# --------------------------------------------------------------- what each effect adds to it


def _custody_transfer(product: ProductState, fact: Fact, item_id: str | None) -> None:
    if len(fact.signers) > 1:
        product.custodian = fact.signers[1].user


def _qc_result(product: ProductState, fact: Fact, item_id: str | None) -> None:
    data = fact.data
    unit = data.get("unit")
    retest_of, reason = data.get("retest_of"), data.get("retest_reason")
    product.qc_results[fact.index] = QcResult(
        index=fact.index,
        test=str(data["test"]),
        result=str(data["result"]),
        value=_json_scalar(data["value"]),
        unit=unit if isinstance(unit, str) else None,
        retest_of=retest_of if isinstance(retest_of, int) else None,
        retest_reason=reason if isinstance(reason, str) else None,
    )


def _deviation_open(product: ProductState, fact: Fact, item_id: str | None) -> None:
    window = fact.data.get("window")
    product.deviations[fact.index] = Deviation(
        index=fact.index,
        kind=str(fact.data["kind"]),
        description=str(fact.data["description"]),
        window=window if isinstance(window, str) else None,
        item=item_id,
        opened_by=fact.signers[0].user if fact.signers else "",
    )


def _deviation_disposition(product: ProductState, fact: Fact, item_id: str | None) -> None:
    deviation = product.deviations[int(fact.data["deviation"])]
    deviation.disposition = str(fact.data["disposition"])
    deviation.disposition_index = fact.index


def _deviation_close(product: ProductState, fact: Fact, item_id: str | None) -> None:
    product.deviations[int(fact.data["deviation"])].closed_index = fact.index


def _correction(product: ProductState, fact: Fact, item_id: str | None) -> None:
    corrected = int(fact.data["corrects"])
    product.corrections.setdefault(corrected, []).append(fact.index)
    values = fact.data["values"]
    if not isinstance(values, Mapping):
        raise TypeError(say.CORRECTION_VALUES_NOT_OBJECT)
    qc = product.qc_results.get(corrected)
    if qc is not None:
        if "result" in values:
            qc.result = str(values["result"])
        if "value" in values:
            qc.value = _json_scalar(values["value"])
    dev = product.deviations.get(corrected)
    if dev is not None and "description" in values:
        dev.description = str(values["description"])


def _label_issue(product: ProductState, fact: Fact, item_id: str | None) -> None:
    label_id = str(fact.data["label"])
    product.labels[label_id] = Label(label_id, item_id, "issued", [fact.index])


def _label_status(status: str) -> Callable[[ProductState, Fact, str | None], None]:
    def move(product: ProductState, fact: Fact, item_id: str | None) -> None:
        label = product.labels[str(fact.data["label"])]
        label.status = status
        label.events.append(fact.index)

    return move


def _label_reprint(product: ProductState, fact: Fact, item_id: str | None) -> None:
    old = product.labels[str(fact.data["replaces"])]
    old.events.append(fact.index)
    label_id = str(fact.data["label"])
    product.labels[label_id] = Label(label_id, old.item, "printed", [fact.index], old.id)


def _final(product: ProductState, status: str, fact: Fact, item_id: str | None) -> None:
    """Return, disposal or destruction: the item (or every item not yet final) reaches its final
    ``status``, its labels still live are voided, and its time windows stop."""
    ended = [product.items[item_id]] if item_id is not None else [
        i for i in product.items.values() if not i.is_final
    ]
    for item in ended:
        item.status = status
    ids = {i.id for i in ended}
    for label in product.labels.values():
        if label.status != "voided" and (item_id is None or label.item in ids):
            label.status = "voided"
            label.events.append(fact.index)
    for window in product.windows.values():
        if window.ended_index is None and (item_id is None or window.item in ids):
            window.ended_index = fact.index


_EFFECTS: Mapping[str, Callable[[ProductState, Fact, str | None], None]] = {
    "custody_transfer": _custody_transfer,
    "qc_result": _qc_result,
    "deviation_open": _deviation_open,
    "deviation_disposition": _deviation_disposition,
    "deviation_close": _deviation_close,
    "correction": _correction,
    "label_issue": _label_issue,
    "label_print": _label_status("printed"),
    "label_apply": _label_status("applied"),
    "label_void": _label_status("voided"),
    "label_reprint": _label_reprint,
}


def _json_scalar(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(say.not_scalar(value))
    return value
