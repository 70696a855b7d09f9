"""Corrections: a later entry that fixes fields of an earlier one, which stays as it was.

Owns the correction rule. A correction carries ``corrects`` (the entry it fixes), ``reason``,
and at least one corrected field of that entry's step. It may fix only a recorded step of this
product that is not itself a correction, only fields marked correctable, and only by someone who
may record that step, or QA. A corrected QC result must still agree with its specification, and
a corrected value can open a deviation like the original would have.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coi.domain import messages as say
from coi.domain.fields import parse_field, parse_fields, parse_qc_value, qc_passes
from coi.domain.process import StepSpec
from coi.domain.rules.evaluation import Evaluation
from coi.domain.rules.quality import field_consequences
from coi.domain.state import ProductState

__all__ = ["correction"]


def correction(ev: Evaluation, step: StepSpec) -> dict[str, Any]:
    """The correction's data: ``corrects``, ``reason`` and the corrected ``values``."""
    attempt, product = ev.attempt, ev.product
    own = {k: v for k, v in attempt.fields.items() if k in step.fields}
    rest = {k: v for k, v in attempt.fields.items() if k not in step.fields}
    values, reasons = parse_fields(step, own, attempt.now_ms)
    for reason in reasons:
        ev.refuse(reason)
    number = values.get("corrects")
    if product is None or not isinstance(number, int):
        return {}
    target = _target(ev, product, number)
    if target is None:
        return {}
    _may_correct(ev, target, number)
    if not rest:
        correctable = [n for n, s in target.fields.items() if s.correctable]
        ev.refuse(say.correction_without_fields(target.title, correctable))
    corrected = _corrected_values(ev, product, target, number, rest)
    _qc_still_agrees(ev, product, number, corrected)
    field_consequences(ev, target, corrected)
    return {"corrects": number, "reason": values.get("reason"), "values": corrected}


def _target(ev: Evaluation, product: ProductState, number: int) -> StepSpec | None:
    """The step of the entry to correct, if it may be corrected at all."""
    target_name = product.entry_steps.get(number)
    if target_name is None:
        ev.refuse(say.not_a_step_entry(number, product.coi))
        return None
    target = ev.process.steps[target_name]
    if target.effect == "correction":
        original = next(k for k, v in product.corrections.items() if number in v)
        ev.refuse(say.correcting_a_correction(number, original))
        return None
    return target


def _may_correct(ev: Evaluation, target: StepSpec, number: int) -> None:
    actor = ev.attempt.actor
    release = ev.process.step_with_effect("release")
    may = target.roles | (release.roles if release is not None else frozenset())
    if not actor.roles & may:
        ev.refuse(
            say.may_not_correct(
                target.title, target.roles, may - target.roles, number, actor.user, actor.roles
            )
        )


def _corrected_values(
    ev: Evaluation, product: ProductState, target: StepSpec, number: int, raw: Mapping[str, str]
) -> dict[str, Any]:
    """The corrected fields read as the target step reads them (a QC value as its test's)."""
    corrected: dict[str, Any] = {}
    for name, text in raw.items():
        spec = target.fields.get(name)
        if spec is None:
            ev.refuse(say.unknown_field(target.title, name, target.fields))
            continue
        if not spec.correctable:
            ev.refuse(say.not_correctable(spec, target.title))
            continue
        try:
            if spec.type == "qc_value":
                test_name = product.qc_results[number].test
                corrected[name] = parse_qc_value(ev.process.qc_tests[test_name], text)
            else:
                corrected[name] = parse_field(spec, text, ev.attempt.now_ms)
        except ValueError as exc:
            ev.refuse(str(exc))
    return corrected


def _qc_still_agrees(
    ev: Evaluation, product: ProductState, number: int, corrected: Mapping[str, Any]
) -> None:
    qc = product.qc_results.get(number)
    if qc is None or ev.reasons:
        return
    test = ev.process.qc_tests[qc.test]
    result = corrected.get("result", qc.result)
    value = corrected.get("value", qc.value)
    if (result == "pass") != qc_passes(test, value):
        ev.refuse(say.correction_disagrees(test.title, result, value, test.specification()))
