"""Which of a product's time windows still count down: what every view of "time left" shows.

The domain ends a window at the step that ``ends`` it; a window that only guards steps
(``inside``), such as lymphodepletion-to-infusion, is never ended by one, and a product that
leaves the states it guards (infused, rejected) would otherwise show "6 d 0 h left" for ever.
A window is *live* here while a step it guards (``inside`` or ``ends``) can still happen: the
product's state can still reach one of that step's ``from_states`` along the process's steps,
and, for an item step, some item of the product can still reach one of its ``item_from``
statuses. Pure reading of the process definition and the product's state; it records nothing
and changes no rule (the domain still checks windows when a step is recorded).
"""

from __future__ import annotations

from collections.abc import Iterable

from coi.domain.process import Process, StepSpec
from coi.domain.state import ProductState, WindowState


def _reaching(targets: Iterable[str], edges: Iterable[tuple[frozenset[str], Iterable[str]]]
              ) -> set[str]:
    """Every node from which one of ``targets`` can be reached (the targets included)."""
    pairs = [(frm, frozenset(to)) for frm, to in edges]
    found = set(targets)
    grew = True
    while grew:
        grew = False
        for frm, to in pairs:
            if to & found and not frm <= found:
                found |= frm
                grew = True
    return found


def _still_possible(process: Process, product: ProductState, step: StepSpec) -> bool:
    star = frozenset(process.states) - {process.initial_state}
    moves = [(s.from_states, s.target_states()) for s in process.steps.values()
             if s.from_states != star]
    if product.state not in _reaching(step.from_states, moves):
        return False
    if not step.item_from:
        return True
    item_moves = [(s.item_from, [s.item_to, *s.items_to.values()] if s.item_to else
                   s.items_to.values()) for s in process.steps.values() if s.item_from]
    statuses = _reaching(step.item_from, item_moves)
    return any(item.status in statuses for item in product.items.values()
               if step.item in ("optional", item.kind))


def live_windows(process: Process, product: ProductState) -> list[WindowState]:
    """The product's windows that are running and still guard a step that can happen."""
    out = []
    for w in product.windows.values():
        if w.ended_index is not None:
            continue
        guarded = [s for s in process.steps.values() if w.name in s.checked_windows()]
        if not guarded or any(_still_possible(process, product, s) for s in guarded):
            out.append(w)
    return out
