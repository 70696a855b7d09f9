"""Quality: QC results agree with their specification, release needs a clean record.

Owns the QC rule (a result's value is read as its test's type and must agree with ``pass`` or
``fail``), the release gate (every required QC test passed, no deviation open or rejected, no
label printed and left unreconciled) and the consequences of field values (a value such as a
temperature excursion opens a deviation when the entry is recorded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coi.domain import messages as say
from coi.domain.facts import AutoDeviation
from coi.domain.fields import parse_qc_value, qc_passes
from coi.domain.process import StepSpec
from coi.domain.rules.evaluation import Evaluation

__all__ = ["field_consequences", "qc_result", "release_gate"]


def qc_result(ev: Evaluation, step: StepSpec, values: dict[str, Any]) -> None:
    """Read ``values["value"]`` as its test's type (in place) and check it against the result."""
    test_name = values.get("test")
    raw_value = values.get("value")
    if not isinstance(test_name, str) or not isinstance(raw_value, str):
        values.pop("value", None)
        return
    test = ev.process.qc_tests[test_name]
    try:
        value = parse_qc_value(test, raw_value)
    except ValueError as exc:
        ev.refuse(str(exc))
        return
    values["value"] = value
    if test.unit is not None:
        values["unit"] = test.unit
    result = values.get("result")
    passes = qc_passes(test, value)
    if result == "pass" and not passes:
        ev.refuse(say.qc_cannot_pass(test.title, value, test.unit, test.specification()))
    elif result == "fail" and passes:
        ev.refuse(say.qc_cannot_fail(test.title, value, test.unit, test.specification()))


def release_gate(ev: Evaluation, step: StepSpec) -> None:
    product = ev.product
    if product is None:
        return
    problems: list[str] = []
    for test in ev.process.qc_required:
        latest = product.latest_qc(test)
        if latest is None:
            problems.append(say.qc_missing(test))
        elif latest.result != "pass":
            problems.append(say.qc_failed(test, latest.index))
    for dev in sorted(product.deviations.values(), key=lambda d: d.index):
        if dev.is_open:
            problems.append(say.deviation_open(dev.index))
        elif dev.disposition == "reject":
            problems.append(say.deviation_rejected(dev.index))
    for label in sorted(product.labels.values(), key=lambda lab: lab.id):
        if label.status == "printed":
            problems.append(say.label_unreconciled(label.id))
    if problems:
        ev.refuse(say.release_blocked(problems))


def field_consequences(ev: Evaluation, step: StepSpec, values: Mapping[str, Any]) -> None:
    """Field values the definition marks (``deviation_on``) open a deviation of their kind."""
    attempt = ev.attempt
    for name, value in values.items():
        spec = step.fields.get(name)
        if spec is None or spec.deviation_kind is None or value not in spec.deviation_on:
            continue
        description = say.field_value_opened(
            spec.title, value, step.title, attempt.now_ms, attempt.actor.user
        )
        ev.consequence(
            AutoDeviation(
                subject=attempt.subject,
                kind=spec.deviation_kind,
                description=description,
                item=ev.item,
            )
        )
