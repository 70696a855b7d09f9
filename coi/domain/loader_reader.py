"""Reading a process definition's TOML tables, with errors that name the key path.

Owns :class:`Reader`: small typed readers (a table, a non-empty string, a boolean, a list of
distinct strings, an integer within ±(2^53 − 1), a finite decimal string, a duration, a
lower_snake_case name, no unknown keys) that each return the value or raise a
:class:`~coi.domain.errors.ProcessError` saying ``origin: steps.thaw.from_states: what is
wrong``; and :func:`parse_duration_ms`, the definition's duration syntax (``"48h"``).

The loader (:mod:`coi.domain.loader`, :mod:`coi.domain.loader_steps`) decides what to read;
this module only reads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from coi.domain.errors import ProcessError
from coi.domain.process import MAX_SAFE_INT

__all__ = ["Reader", "parse_duration_ms"]

_DURATION = re.compile(r"([0-9]+)(ms|s|min|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def parse_duration_ms(text: str) -> int:
    """``"48h"`` -> 172800000. Units: ms, s, min, h, d; a whole number only."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration like '48h', '60min' or '2d'")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


class Reader:
    """Typed reads from a definition; every refusal names ``origin`` and the key path."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, where: str, message: str) -> ProcessError:
        return ProcessError(f"{self.origin}: {where}: {message}")

    def table(self, doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = doc.get(key)
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", "a table is required")
        return value

    def string(
        self, doc: Mapping[str, Any], key: str, where: str, default: str | None = None
    ) -> str:
        value = doc.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}.{key}", "a non-empty string is required")
        return value

    def boolean(self, doc: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = doc.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{where}.{key}", "true or false is required")
        return value

    def strings(
        self, doc: Mapping[str, Any], key: str, where: str, default: list[str] | None = None
    ) -> tuple[str, ...]:
        value = doc.get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{where}.{key}", "a list of non-empty strings is required")
        if len(set(value)) != len(value):
            raise self.fail(f"{where}.{key}", "contains a duplicate")
        return tuple(value)

    def integer(self, doc: Mapping[str, Any], key: str, where: str) -> int | None:
        value = doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{where}.{key}", "an integer is required")
        if abs(value) > MAX_SAFE_INT:
            raise self.fail(f"{where}.{key}", "outside ±(2^53 − 1)")
        return value

    def decimal(self, doc: Mapping[str, Any], key: str, where: str) -> Decimal | None:
        value = doc.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", 'a decimal string such as "5.0" is required')
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise self.fail(f"{where}.{key}", f"{value!r} is not a decimal number") from None
        if not result.is_finite():
            raise self.fail(f"{where}.{key}", "must be finite")
        return result

    def duration(self, doc: Mapping[str, Any], key: str, where: str) -> int | None:
        value = doc.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", 'a duration string such as "48h" is required')
        try:
            ms = parse_duration_ms(value)
        except ValueError as exc:
            raise self.fail(f"{where}.{key}", str(exc)) from None
        if ms <= 0:
            raise self.fail(f"{where}.{key}", "must be longer than zero")
        return ms

    def only_keys(self, doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key(s): {', '.join(unknown)}")

    def name(self, name: str, where: str) -> str:
        if _NAME.fullmatch(name) is None:
            raise self.fail(where, f"{name!r} must be lower_snake_case")
        return name
