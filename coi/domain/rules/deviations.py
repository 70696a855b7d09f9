"""Deviations referred to by number: a disposition or a closure names an open deviation.

Owns the rule for the steps that act on a deviation: it exists on this product and is open; it
gets one QA disposition (``proceed`` or ``reject``), and is closed only after it has one. Opening
a deviation needs no rule of its own beyond the step's fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coi.domain import messages as say
from coi.domain.process import StepSpec
from coi.domain.rules.evaluation import Evaluation

__all__ = ["deviation_ref"]


def deviation_ref(ev: Evaluation, step: StepSpec, values: Mapping[str, Any]) -> None:
    product = ev.product
    number = values.get("deviation")
    if product is None or not isinstance(number, int):
        return
    dev = product.deviations.get(number)
    if dev is None:
        open_ones = [d.index for d in product.open_deviations()]
        ev.refuse(say.no_such_deviation(number, open_ones))
    elif not dev.is_open:
        ev.refuse(say.deviation_closed(number, dev.closed_index))
    elif step.effect == "deviation_disposition" and dev.disposition is not None:
        ev.refuse(say.deviation_disposed(number, dev.disposition, dev.disposition_index))
    elif step.effect == "deviation_close" and dev.disposition is None:
        ev.refuse(say.deviation_needs_disposition(number))
