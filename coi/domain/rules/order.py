"""Where in its chain a product is: whether a step may come now, and which item it is about.

Owns the order rules (enrolment first and once; a step only from the states it names, after the
steps it requires, once unless repeatable; nothing after the chain has ended) and the target-item
rule (a step about an item names one of the product's items of the right kind and status; a step
about the whole product names none). The order refusals say what is missing, not only what is
wrong: "Harvest needs expansion first; this product is at 'transduced'".
"""

from __future__ import annotations

from coi.domain import messages as say
from coi.domain import messages_history as said
from coi.domain.process import StepSpec
from coi.domain.rules.evaluation import Evaluation
from coi.domain.state import ProductState

__all__ = ["final_item", "order", "target_item"]


def order(ev: Evaluation, step: StepSpec) -> None:
    process, product = ev.process, ev.product
    subject = ev.attempt.subject
    if product is None:
        if process.initial_state not in step.from_states:
            ev.refuse(say.not_enrolled(subject))
        return
    if process.initial_state in step.from_states:
        ev.refuse(say.already_enrolled(subject, product.enrolled_index))
        return
    if _chain_ended(ev, step, product):
        ev.refuse(say.chain_ended(step.title, product.state))
        return
    done = product.steps.get(step.name)
    if done and not step.repeatable:
        ev.refuse(say.already_recorded(step.title, done[0]))
        return
    missing = [process.steps[r].title for r in step.requires if not product.completed(r)]
    if missing:
        ev.refuse(say.needs_first(step.title, missing, "and", product.state))
        return
    if product.state not in step.from_states:
        _wrong_state(ev, step, product)


def _chain_ended(ev: Evaluation, step: StepSpec, product: ProductState) -> bool:
    """No step but those allowed from any state (``from_states = "*"``) leads on from here."""
    process = ev.process
    star = frozenset(process.states) - {process.initial_state}
    return product.state not in step.from_states and not any(
        product.state in s.from_states for s in process.steps.values() if s.from_states != star
    )


def _wrong_state(ev: Evaluation, step: StepSpec, product: ProductState) -> None:
    """The step's states are ahead: name the steps that lead there, or where it is allowed."""
    process = ev.process
    leading = [
        s.title
        for s in process.steps.values()
        if s.target_states() & step.from_states and not product.completed(s.name)
    ]
    if leading:
        ev.refuse(say.needs_first(step.title, leading, "or", product.state))
        return
    allowed = [s for s in process.states if s in step.from_states]
    ev.refuse(say.wrong_state(step.title, product.state, allowed))


def target_item(ev: Evaluation, step: StepSpec) -> None:
    raw = ev.attempt.item
    item = raw.strip().upper() if raw is not None and raw.strip() else None
    ev.item = item
    product = ev.product
    if step.item == "none":
        if item is not None:
            ev.refuse(say.item_not_wanted(step.title))
        return
    if product is None:
        return
    if item is None:
        if step.item != "optional":
            _item_missing(ev, step, product)
        return
    found = product.items.get(item)
    if found is None:
        ev.refuse(say.item_not_of_product(item, product.coi, sorted(product.items)))
        return
    if step.item not in ("optional", found.kind):
        kind = ev.process.items[step.item]
        ev.refuse(say.item_wrong_kind(step.title, kind.title, item, found.kind))
        return
    if step.item_from and found.status not in step.item_from:
        ev.refuse(say.item_wrong_status(item, found.status, step.title, step.item_from))


def _item_missing(ev: Evaluation, step: StepSpec, product: ProductState) -> None:
    candidates = sorted(
        i.id
        for i in product.items_of(step.item)
        if not step.item_from or i.status in step.item_from
    )
    ev.refuse(say.item_needed(step.title, ev.process.items[step.item].title, candidates))


def final_item(ev: Evaluation) -> None:
    """Return, disposal or destruction of one item: it has not ended already."""
    product = ev.product
    found = product.items.get(ev.item) if product is not None and ev.item is not None else None
    if found is not None and found.is_final:
        ev.refuse(said.item_already_final(found.id, found.status))
