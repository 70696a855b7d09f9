"""Whether an attempt may be recorded now: every rule of the process, in one order.

Owns :func:`check`, the one entry point to the rules. The service calls it before it appends a
step (under the ledger's write lock) and the replay calls it again for every recorded step (see
:mod:`coi.domain.replay`), so what ``coi record`` allows and what ``coi verify`` accepts are one
decision. The order below is part of the behaviour: reasons are listed in it, and the window rule
runs only when nothing else is wrong (so a refused attempt does not open a window deviation).

Pure: reads the chain state, never changes it; no clock (time is ``attempt.now_ms``), no I/O.
"""

from __future__ import annotations

from typing import Any

from coi.domain import messages as say
from coi.domain.facts import Attempt, Decision
from coi.domain.fields import parse_fields
from coi.domain.process import Process
from coi.domain.rules import (
    corrections,
    deviations,
    entry,
    identity,
    order,
    people,
    quality,
    windows,
)
from coi.domain.rules.evaluation import Evaluation
from coi.domain.state import ChainState

__all__ = ["check"]


def check(process: Process, chain: ChainState, attempt: Attempt) -> Decision:
    """May ``attempt`` be recorded now? Pure: reads ``chain``, never changes it."""
    step = process.step(attempt.step)
    if step is None:
        return Decision(
            step=attempt.step,
            allowed=False,
            reasons=(say.unknown_step(attempt.step, process.steps),),
        )
    ev = Evaluation(process, chain, attempt)
    people.roles(ev, step)
    people.witness(ev, step)
    order.order(ev, step)
    order.target_item(ev, step)
    if step.effect == "correction":
        return ev.decide(step, corrections.correction(ev, step))
    values, reasons = parse_fields(step, attempt.fields, attempt.now_ms)
    for reason in reasons:
        ev.refuse(reason)
    effect = step.effect
    if effect == "qc_result":
        quality.qc_result(ev, step, values)
    elif effect == "release":
        quality.release_gate(ev, step, values)
    elif effect == "exceptional_release_request":
        quality.exceptional_request(ev, step)
    elif effect == "final":
        order.final_item(ev)
    elif effect in ("deviation_disposition", "deviation_close"):
        deviations.deviation_ref(ev, step, values)
    elif effect.startswith("label_"):
        identity.labels(ev, step, values)
    entered = entry.entry(ev, step, values)
    identity.labelled_items(ev, step)
    people.separation_of_duties(ev, step)
    if not ev.reasons:
        windows.windows(ev, step)
    if effect == "bedside_verification":
        identity.bedside(ev, step, values)
    quality.field_consequences(ev, step, values)
    data: dict[str, Any] = dict(values)
    if ev.item is not None and step.item != "none":
        data["item"] = ev.item
    data.update(entered)
    return ev.decide(step, data)
