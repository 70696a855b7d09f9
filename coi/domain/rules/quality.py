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
from coi.domain import messages_history as said
from coi.domain.facts import AutoDeviation
from coi.domain.fields import parse_qc_value, qc_passes
from coi.domain.process import StepSpec
from coi.domain.rules.evaluation import Evaluation
from coi.domain.state import ProductState, QcResult

__all__ = ["exceptional_request", "field_consequences", "qc_result", "release_gate"]


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
    _retest(ev, step, test_name, values)


def _retest(ev: Evaluation, step: StepSpec, test: str, values: dict[str, Any]) -> None:
    """A result is never replaced (when the step keeps a history: ``retest_of`` declared): a
    second result for a test names the latest one as the result it follows, and says why."""
    if "retest_of" not in step.fields or ev.product is None:
        return
    latest = ev.product.latest_qc(test)
    named, reason = values.get("retest_of"), values.get("retest_reason")
    if named is None:
        if latest is not None:
            ev.refuse(said.qc_already_has(test, latest.index, latest.result))
        if reason is not None:
            ev.refuse(said.REASON_WITHOUT_RETEST)
        return
    if latest is None or named != latest.index:
        ev.refuse(said.retest_not_latest(test, int(named), latest.index if latest else None))
    if reason is None:
        ev.refuse(said.RETEST_NEEDS_REASON)


def exceptional_request(ev: Evaluation, step: StepSpec) -> None:
    """The treating physician asks for an exceptional release only of a product with an OOS."""
    if ev.product is not None and not ev.product.oos_results():
        ev.refuse(said.NO_OOS_TO_REQUEST)


def release_gate(ev: Evaluation, step: StepSpec, values: Mapping[str, Any]) -> None:
    """Every required QC test has a result that passed, no deviation is open or rejected, no
    label is left printed. Where the process knows exceptional release, a product with any OOS
    result in its history is released only that way (see :func:`_exceptional`)."""
    product = ev.product
    if product is None:
        return
    problems: list[str] = []
    exceptional = ev.process.step_with_effect("exceptional_release_request") is not None
    oos = product.oos_results() if exceptional else []
    for test in ev.process.qc_required:
        latest = product.latest_qc(test)
        if latest is None:
            problems.append(say.qc_missing(test))
        elif latest.result != "pass" and not oos:
            problems.append(say.qc_failed(test, latest.index))
    for dev in sorted(product.deviations.values(), key=lambda d: d.index):
        if oos and dev.kind == "oos_result":
            if dev.disposition != "proceed":
                problems.append(said.oos_deviation_not_proceed(dev.index, dev.disposition))
        elif dev.is_open:
            problems.append(say.deviation_open(dev.index))
        elif dev.disposition == "reject":
            problems.append(say.deviation_rejected(dev.index))
    for label in sorted(product.labels.values(), key=lambda lab: lab.id):
        if label.status == "printed":
            problems.append(say.label_unreconciled(label.id))
    if exceptional:
        problems.extend(_exceptional(ev, product, oos, values.get("physician_request")))
    if problems:
        ev.refuse(say.release_blocked(problems))


def _exceptional(
    ev: Evaluation, product: ProductState, oos: list[QcResult], named: object
) -> list[str]:
    """After an OOS result: every failure has an OOS deviation after it (dispositioned
    ``proceed``, checked with the deviations) and the release names the treating physician's
    request, made after the last failure. Without an OOS result there is nothing to name."""
    if not oos:
        return [said.NOT_EXCEPTIONAL] if named is not None else []
    opened = [d.index for d in product.deviations.values() if d.kind == "oos_result"]
    problems = [
        said.no_oos_deviation(r.test, r.index) for r in oos if not any(i > r.index for i in opened)
    ]
    request = ev.process.step_with_effect("exceptional_release_request")
    requests = product.steps.get(request.name, []) if request is not None else []
    if not isinstance(named, int):
        problems.append(said.oos_needs_exceptional(r.test for r in oos))
    elif named not in requests:
        problems.append(said.no_such_request(named, product.coi))
    elif named < oos[-1].index:
        problems.append(said.request_before_oos(named, oos[-1].index))
    return problems


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
