"""Reading the raw text of a step's fields into typed values, or saying what is wrong with it.

This module owns the field types of a process definition (``int``, ``decimal``, ``enum``,
``text``, ``identifier``, ``commitment``, ``timestamp`` and a QC test's ``qc_value``): how the text
a person typed or scanned becomes a JSON-profile value (ints and strings, never floats; decimals
stay strings), and whether a QC value meets its test's specification. Every refusal is a
``ValueError`` (or a reason in a list) worded by :mod:`coi.domain.messages`.

Pure: the only time it knows is the ``now_ms`` it is given (a timestamp may not be in the future).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from coi.domain import messages as say
from coi.domain.process import MAX_SAFE_INT, FieldSpec, QcTestSpec, StepSpec

__all__ = ["parse_field", "parse_fields", "parse_qc_value", "qc_passes"]

_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_IDENTIFIER = re.compile(r"[A-Z0-9][A-Z0-9-]*")
_COMMITMENT = re.compile(r"[0-9a-f]{64}")
_ISO = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,3})?)?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_IDENTIFIER_MAX = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Bound = int | Decimal | None


def _parse_int(prefix: str, raw: str, low: Bound, high: Bound) -> int:
    text = raw.strip()
    if _INT.fullmatch(text) is None:
        raise ValueError(say.not_whole_number(prefix, raw))
    value = int(text)
    if abs(value) > MAX_SAFE_INT:
        raise ValueError(say.too_large(prefix, raw))
    if low is not None and value < low:
        raise ValueError(say.below_minimum(prefix, value, low))
    if high is not None and value > high:
        raise ValueError(say.above_maximum(prefix, value, high))
    return value


def _parse_decimal(prefix: str, raw: str, low: Bound, high: Bound) -> str:
    text = raw.strip()
    if _DECIMAL.fullmatch(text) is None or len(text) > 40:
        raise ValueError(say.not_decimal(prefix, raw))
    value = Decimal(text)
    if low is not None and value < low:
        raise ValueError(say.below_minimum(prefix, text, low))
    if high is not None and value > high:
        raise ValueError(say.above_maximum(prefix, text, high))
    return text


def _parse_enum(prefix: str, raw: str, values: tuple[str, ...]) -> str:
    text = raw.strip().lower()
    if text not in values:
        raise ValueError(say.not_one_of(prefix, raw, values))
    return text


def _parse_text(prefix: str, raw: str, max_length: int) -> str:
    text = unicodedata.normalize("NFC", raw.strip())
    if not text:
        raise ValueError(say.empty_text(prefix))
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(say.control_characters(prefix))
    if len(text) > max_length:
        raise ValueError(say.too_long(prefix, max_length))
    return text


def _parse_identifier(prefix: str, raw: str, spec: FieldSpec) -> str:
    text = raw.strip().upper()
    limit = min(spec.max_length, _IDENTIFIER_MAX)
    if _IDENTIFIER.fullmatch(text) is None or len(text) > limit:
        raise ValueError(say.not_identifier(prefix, raw, limit))
    if spec.pattern is not None and re.fullmatch(spec.pattern, text) is None:
        raise ValueError(say.unexpected_format(prefix, raw))
    return text


def _parse_commitment(prefix: str, raw: str) -> str:
    text = raw.strip().lower()
    if _COMMITMENT.fullmatch(text) is None:
        raise ValueError(say.not_commitment(prefix))
    return text


def _parse_timestamp(prefix: str, raw: str, now_ms: int) -> int:
    text = raw.strip()
    if _INT.fullmatch(text) is not None and not text.startswith(("+", "-")):
        value = int(text)
    elif _ISO.fullmatch(text) is not None:
        delta = datetime.fromisoformat(text.replace("Z", "+00:00")) - _EPOCH
        value = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    else:
        raise ValueError(say.not_time(prefix, raw))
    if value <= 0 or value > MAX_SAFE_INT:
        raise ValueError(say.time_out_of_range(prefix, raw))
    if value > now_ms:
        raise ValueError(say.in_the_future(prefix, value))
    return value


def parse_field(spec: FieldSpec, raw: str, now_ms: int) -> str | int:
    """Raw text -> typed JSON-profile value, or ValueError with a sentence a person understands.

    A ``qc_value`` is not read here: its type is its QC test's (see :func:`parse_qc_value`).
    """
    prefix = say.field_prefix(spec)
    if not isinstance(raw, str):
        raise ValueError(say.expected_text(prefix))
    kind = spec.type
    if kind == "int":
        return _parse_int(prefix, raw, spec.min, spec.max)
    if kind == "decimal":
        return _parse_decimal(prefix, raw, spec.min, spec.max)
    if kind == "enum":
        return _parse_enum(prefix, raw, spec.values)
    if kind == "text":
        return _parse_text(prefix, raw, spec.max_length)
    if kind == "identifier":
        return _parse_identifier(prefix, raw, spec)
    if kind == "commitment":
        return _parse_commitment(prefix, raw)
    if kind == "timestamp":
        return _parse_timestamp(prefix, raw, now_ms)
    raise ValueError(say.checked_with_its_step(prefix, kind))  # qc_value


def parse_qc_value(test: QcTestSpec, raw: str) -> str | int:
    """The value of a QC result, read as its test's type (enum, int or decimal)."""
    prefix = say.qc_value_prefix(test.title, test.unit)
    if test.type == "enum":
        return _parse_enum(prefix, raw, test.values)
    if test.type == "int":
        return _parse_int(prefix, raw, None, None)
    return _parse_decimal(prefix, raw, None, None)


def qc_passes(test: QcTestSpec, value: str | int) -> bool:
    """Whether a (parsed) QC value meets its test's specification."""
    if test.type == "enum":
        return value in test.pass_values
    number = Decimal(value)
    if test.min is not None and number < test.min:
        return False
    return not (test.max is not None and number > test.max)


def parse_fields(
    step: StepSpec, raw: Mapping[str, str], now_ms: int
) -> tuple[dict[str, str | int], list[str]]:
    """Validate the step's own fields; unknown names and missing required ones are reasons.

    A ``qc_value`` is passed through as text, for the QC rule to read against its test.
    """
    values: dict[str, str | int] = {}
    reasons = [
        say.unknown_field(step.title, name, step.fields) for name in raw if name not in step.fields
    ]
    for name, spec in step.fields.items():
        if name not in raw:
            if spec.required:
                reasons.append(say.missing_field(step.title, spec))
            continue
        if spec.type == "qc_value":
            values[name] = raw[name]
            continue
        try:
            values[name] = parse_field(spec, raw[name], now_ms)
        except ValueError as exc:
            reasons.append(str(exc))
    return values, reasons
