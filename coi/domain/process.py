"""The process as data: loading and validating a versioned chain-of-identity definition.

This module owns the *shape* of a process definition (``car_t.toml`` is the one shipped): its
steps, the roles allowed for each, the states they move a product between, their fields with types
and units, witness rules, time windows, the items they create and the QC tests a release needs. It
refuses a bad definition with :class:`ProcessError` naming the key that is wrong, so a definition
that loads is one that :mod:`coi.domain.state` can enforce without further checks.

It owns no rule evaluation (that is :mod:`coi.domain.state`) and no I/O beyond reading the file.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from coi.domain.errors import ProcessError

__all__ = [
    "FIELD_TYPES",
    "EFFECTS",
    "FieldSpec",
    "ItemKindSpec",
    "Process",
    "QcTestSpec",
    "StepSpec",
    "WindowSpec",
    "SCANNABLE_FIELDS",
    "SECOND_SCANS",
    "SHIPPED",
    "load_process",
    "parse_duration_ms",
    "parse_process",
    "shipped_for",
    "shipped_source",
]

FIELD_TYPES = frozenset(
    {"int", "decimal", "text", "enum", "timestamp", "identifier", "commitment", "qc_value"}
)
EFFECTS = frozenset(
    {
        "step",
        "qc_result",
        "release",
        "bedside_verification",
        "custody_transfer",
        "deviation_open",
        "deviation_disposition",
        "deviation_close",
        "correction",
        "label_issue",
        "label_print",
        "label_apply",
        "label_void",
        "label_reprint",
    }
)
# Effects the state machine cannot work without, and effects that may appear at most once.
_REQUIRED_EFFECTS = ("deviation_open", "deviation_disposition", "deviation_close", "correction")
_SINGLE_EFFECTS = EFFECTS - {"step"}
# Fields each special effect reads: name -> the type it must have.
_EFFECT_FIELDS: Mapping[str, Mapping[str, str]] = {
    "qc_result": {"test": "enum", "result": "enum", "value": "qc_value"},
    "bedside_verification": {
        "scanned_coi": "identifier",
        "scanned_bag": "identifier",
        "wristband_commitment": "commitment",
    },
    "deviation_open": {"kind": "enum", "description": "text"},
    "deviation_disposition": {"deviation": "int", "disposition": "enum"},
    "deviation_close": {"deviation": "int"},
    "correction": {"corrects": "int", "reason": "text"},
    "label_issue": {"label": "identifier"},
    "label_print": {"label": "identifier"},
    "label_apply": {"label": "identifier"},
    "label_void": {"label": "identifier"},
    "label_reprint": {"label": "identifier", "replaces": "identifier"},
}
SECOND_SCANS = ("paperwork", "wristband")
# Fields a scan station can fill from its scans (``scanned = true``), by what the name holds.
SCANNABLE_FIELDS = ("scanned_coi", "scanned_bag", "wristband_commitment", "paperwork")
MAX_SAFE_INT = 2**53 - 1
_DURATION = re.compile(r"([0-9]+)(ms|s|min|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_VALUE = re.compile(r"[a-z0-9][a-z0-9_]*")
_ENTRY_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_PREFIX = re.compile(r"[A-Z]")


# ------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class FieldSpec:
    """One field of a step: how its raw text is parsed and what it must satisfy."""

    name: str
    title: str
    type: str
    unit: str | None = None
    required: bool = True
    correctable: bool = True
    values: tuple[str, ...] = ()
    min: int | Decimal | None = None
    max: int | Decimal | None = None
    max_length: int = 500
    pattern: str | None = None
    deviation_on: tuple[str, ...] = ()
    deviation_kind: str | None = None
    scanned: bool = False  # filled by the scan station from the scans, never typed


@dataclass(frozen=True)
class QcTestSpec:
    """A QC test: the type of its value, its unit and what counts as a pass (its specification)."""

    name: str
    title: str
    type: str  # "int" | "decimal" | "enum"
    unit: str | None
    values: tuple[str, ...]
    pass_values: tuple[str, ...]
    min: int | Decimal | None
    max: int | Decimal | None

    def specification(self) -> str:
        """The acceptance criterion in words, e.g. ``≤ 5.0 EU/mL`` or ``no_growth``."""
        if self.type == "enum":
            return " or ".join(self.pass_values)
        unit = f" {self.unit}" if self.unit else ""
        parts = []
        if self.min is not None:
            parts.append(f"≥ {self.min}{unit}")
        if self.max is not None:
            parts.append(f"≤ {self.max}{unit}")
        return " and ".join(parts) if parts else "any value"


@dataclass(frozen=True)
class WindowSpec:
    """A time window: opened by a step, checked by steps inside it, closed by a step ending it."""

    name: str
    title: str
    max_ms: int
    min_ms: int | None = None
    per_item: bool = False


@dataclass(frozen=True)
class ItemKindSpec:
    """A kind of physical item (collection bag, final bag); ids are ``prefix`` + 5 digits."""

    name: str
    title: str
    prefix: str


@dataclass(frozen=True)
class CreatesSpec:
    """Items a step creates: a fixed ``count`` or the value of the int field ``count_field``."""

    kind: str
    count: int | None = None
    count_field: str | None = None


@dataclass(frozen=True)
class StepSpec:
    """One step of the process, exactly as the definition states it."""

    name: str
    title: str
    entry_type: str
    stage: str
    effect: str
    roles: frozenset[str]
    witness: bool
    witness_roles: frozenset[str]
    from_states: frozenset[str]
    requires: tuple[str, ...]
    to_state: str | None
    to_state_field: str | None
    to_state_map: Mapping[str, str]
    repeatable: bool
    item: str  # "none" | "optional" | an item kind
    item_from: frozenset[str]
    item_to: str | None
    items_to: Mapping[str, str]
    starts: tuple[str, ...]
    inside: tuple[str, ...]
    ends: tuple[str, ...]
    takes_custody: bool
    creates: CreatesSpec | None
    independent_of_stages: frozenset[str]
    fields: Mapping[str, FieldSpec]
    second_scan: str | None = None  # "paperwork" or "wristband": scanned after the bag, compared

    def target_states(self) -> frozenset[str]:
        """Every state this step can move a product to (empty when it leaves the state as is)."""
        if self.to_state is not None:
            return frozenset({self.to_state})
        return frozenset(self.to_state_map.values())

    def checked_windows(self) -> tuple[str, ...]:
        """Windows the step must fall inside: those it is inside and those it ends."""
        return tuple(dict.fromkeys(self.inside + self.ends))


@dataclass(frozen=True)
class Process:
    """A loaded, validated process definition and the SHA-256 of the bytes it came from."""

    name: str
    version: str
    title: str
    sha256: str
    roles: frozenset[str]
    states: tuple[str, ...]
    initial_state: str
    items: Mapping[str, ItemKindSpec]
    windows: Mapping[str, WindowSpec]
    qc_tests: Mapping[str, QcTestSpec]
    qc_required: tuple[str, ...]
    steps: Mapping[str, StepSpec]

    @property
    def entry_types(self) -> frozenset[str]:
        """Every ledger entry type this process owns: the generic append must refuse them."""
        return frozenset(step.entry_type for step in self.steps.values())

    def step(self, name: str) -> StepSpec | None:
        return self.steps.get(name)

    def step_for_entry_type(self, entry_type: str) -> StepSpec | None:
        return self._by_type().get(entry_type)

    def step_with_effect(self, effect: str) -> StepSpec | None:
        for step in self.steps.values():
            if step.effect == effect:
                return step
        return None

    def _by_type(self) -> Mapping[str, StepSpec]:
        cached: Mapping[str, StepSpec] | None = self.__dict__.get("_by_type_cache")
        if cached is None:
            cached = {step.entry_type: step for step in self.steps.values()}
            object.__setattr__(self, "_by_type_cache", cached)
        return cached


# ---------------------------------------------------------------------------------------- loading


# The definitions this coi ships: the current one first, then earlier versions that ledgers
# created with them still run (a ledger keeps the definition its genesis names, by hash).
SHIPPED = ("car_t.toml", "car_t-1.0.0.toml")
# autologous-car-t 1.0.0 predates `second_scan` and `scanned`; the scan station applied these to
# it, and still does (the bytes, and so the hash in force, stay as they were).
_UNDECLARED_1_0_0 = "bff636bafac5256e3792b8a1bb24ffac9d0aef12a5989ee41d7db05fe160f3cc"
_STATION_1_0_0: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "receipt_at_manufacturing": ("paperwork", ()),
    "receipt_at_treatment": ("paperwork", ()),
    "bedside_verification": ("wristband", ("scanned_coi", "scanned_bag", "wristband_commitment")),
}


def load_process(path: str | Path | None = None) -> Process:
    """Load and validate a process definition; the packaged ``car_t.toml`` when no path is given."""
    if path is None:
        return parse_process(shipped_source(SHIPPED[0]), origin=SHIPPED[0])
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ProcessError(f"{p}: cannot read the process definition: {exc.strerror}") from exc
    return parse_process(raw, origin=str(p))


def shipped_source(name: str) -> bytes:
    """The exact bytes of a shipped definition (one of ``SHIPPED``)."""
    return (resources.files("coi.domain") / name).read_bytes()


@functools.cache
def shipped_for(sha256: str) -> tuple[Process, bytes] | None:
    """The shipped definition whose bytes hash to ``sha256`` (the one a ledger has in force).

    Remembered: the shipped files do not change while coi runs, and a ``Process`` is frozen;
    the generic append asks on every call."""
    for name in SHIPPED:
        raw = shipped_source(name)
        if hashlib.sha256(raw).hexdigest() == sha256:
            return parse_process(raw, origin=name), raw
    return None


def parse_process(raw: bytes, *, origin: str = "process definition") -> Process:
    """Parse and validate the bytes of a definition; ``Process.sha256`` is over exactly ``raw``."""
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProcessError(f"{origin}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProcessError(f"{origin}: not valid TOML: {exc}") from exc
    sha256 = hashlib.sha256(raw).hexdigest()
    if sha256 == _UNDECLARED_1_0_0:
        for step, (second, scanned) in _STATION_1_0_0.items():
            doc["steps"][step]["second_scan"] = second
            for fname in scanned:
                doc["steps"][step]["fields"][fname]["scanned"] = True
    return _Loader(origin).process(doc, sha256)


def parse_duration_ms(text: str) -> int:
    """``"48h"`` -> 172800000. Units: ms, s, min, h, d; a whole number only."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration like '48h', '60min' or '2d'")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


class _Loader:
    """Validation with error messages that name the key path (``steps.thaw.from_states``)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, where: str, message: str) -> ProcessError:
        return ProcessError(f"{self.origin}: {where}: {message}")

    # -- small typed readers ------------------------------------------------------------------

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

    # -- the document ---------------------------------------------------------------------------

    def process(self, doc: Mapping[str, Any], sha256: str) -> Process:
        self.only_keys(doc, {"process", "items", "windows", "qc", "steps"}, "top level")
        head = self.table(doc, "process", "")
        self.only_keys(head, {"name", "version", "title", "roles", "states"}, "process")
        roles = self.strings(head, "roles", "process")
        if not roles:
            raise self.fail("process.roles", "at least one role is required")
        states = self.strings(head, "states", "process")
        if len(states) < 2:
            raise self.fail("process.states", "at least an initial and one further state needed")
        for state in states:
            self.name(state, "process.states")
        items = self.items(self.table(doc, "items", ""))
        windows = self.windows(self.table(doc, "windows", ""))
        qc_tests, qc_required = self.qc(self.table(doc, "qc", ""))
        raw_steps = self.table(doc, "steps", "")
        steps = {
            name: self.step(
                name, body, set(roles), set(states), states[0], items, windows, qc_tests
            )
            for name, body in raw_steps.items()
        }
        process = Process(
            name=self.string(head, "name", "process"),
            version=self.string(head, "version", "process"),
            title=self.string(head, "title", "process", default=head.get("name")),
            sha256=sha256,
            roles=frozenset(roles),
            states=states,
            initial_state=states[0],
            items=items,
            windows=windows,
            qc_tests=qc_tests,
            qc_required=qc_required,
            steps=steps,
        )
        self.cross_checks(process)
        return process

    def items(self, doc: Mapping[str, Any]) -> dict[str, ItemKindSpec]:
        out: dict[str, ItemKindSpec] = {}
        prefixes: set[str] = set()
        for name, body in doc.items():
            where = f"items.{self.name(name, 'items')}"
            if not isinstance(body, dict):
                raise self.fail(where, "a table is required")
            self.only_keys(body, {"title", "prefix"}, where)
            prefix = self.string(body, "prefix", where)
            if _PREFIX.fullmatch(prefix) is None:
                raise self.fail(f"{where}.prefix", "one uppercase letter is required")
            if prefix in prefixes:
                raise self.fail(f"{where}.prefix", f"{prefix!r} is used by another item kind")
            prefixes.add(prefix)
            out[name] = ItemKindSpec(name, self.string(body, "title", where), prefix)
        if not out:
            raise self.fail("items", "at least one item kind is required")
        return out

    def windows(self, doc: Mapping[str, Any]) -> dict[str, WindowSpec]:
        out: dict[str, WindowSpec] = {}
        for name, body in doc.items():
            where = f"windows.{self.name(name, 'windows')}"
            if not isinstance(body, dict):
                raise self.fail(where, "a table is required")
            self.only_keys(body, {"title", "min", "max", "per_item"}, where)
            max_ms = self.duration(body, "max", where)
            if max_ms is None:
                raise self.fail(f"{where}.max", "a maximum duration is required")
            min_ms = self.duration(body, "min", where)
            if min_ms is not None and min_ms >= max_ms:
                raise self.fail(f"{where}.min", "must be shorter than max")
            out[name] = WindowSpec(
                name=name,
                title=self.string(body, "title", where),
                max_ms=max_ms,
                min_ms=min_ms,
                per_item=self.boolean(body, "per_item", where, False),
            )
        return out

    def qc(self, doc: Mapping[str, Any]) -> tuple[dict[str, QcTestSpec], tuple[str, ...]]:
        self.only_keys(doc, {"required", "tests"}, "qc")
        tests: dict[str, QcTestSpec] = {}
        for name, body in self.table(doc, "tests", "qc.").items():
            where = f"qc.tests.{self.name(name, 'qc.tests')}"
            if not isinstance(body, dict):
                raise self.fail(where, "a table is required")
            self.only_keys(
                body, {"title", "type", "unit", "values", "pass_values", "min", "max"}, where
            )
            kind = self.string(body, "type", where)
            values: tuple[str, ...] = ()
            pass_values: tuple[str, ...] = ()
            low: int | Decimal | None = None
            high: int | Decimal | None = None
            if kind == "enum":
                values = self.strings(body, "values", where)
                pass_values = self.strings(body, "pass_values", where)
                if not values or not pass_values or not set(pass_values) <= set(values):
                    raise self.fail(where, "pass_values must be a non-empty subset of values")
            elif kind == "int":
                low, high = self.integer(body, "min", where), self.integer(body, "max", where)
            elif kind == "decimal":
                low, high = self.decimal(body, "min", where), self.decimal(body, "max", where)
            else:
                raise self.fail(f"{where}.type", "must be int, decimal or enum")
            if low is not None and high is not None and low > high:
                raise self.fail(where, "min is greater than max")
            unit = body.get("unit")
            if unit is not None and (not isinstance(unit, str) or not unit):
                raise self.fail(f"{where}.unit", "a non-empty string is required")
            tests[name] = QcTestSpec(
                name=name,
                title=self.string(body, "title", where),
                type=kind,
                unit=unit,
                values=values,
                pass_values=pass_values,
                min=low,
                max=high,
            )
        required = self.strings(doc, "required", "qc")
        for name in required:
            if name not in tests:
                raise self.fail("qc.required", f"unknown test {name!r}")
        return tests, required

    def field(self, name: str, body: Any, where: str) -> FieldSpec:
        if not isinstance(body, dict):
            raise self.fail(where, "a table is required")
        self.only_keys(
            body,
            {
                "title",
                "type",
                "unit",
                "required",
                "correctable",
                "values",
                "min",
                "max",
                "max_length",
                "pattern",
                "deviation_on",
                "deviation_kind",
                "scanned",
            },
            where,
        )
        kind = self.string(body, "type", where)
        if kind not in FIELD_TYPES:
            raise self.fail(f"{where}.type", f"{kind!r} is not one of {sorted(FIELD_TYPES)}")
        values = self.strings(body, "values", where, default=[])
        if kind == "enum" and not values:
            raise self.fail(f"{where}.values", "an enum needs its allowed values")
        if kind != "enum" and values:
            raise self.fail(f"{where}.values", "only an enum has values")
        for value in values:
            if _VALUE.fullmatch(value) is None:
                raise self.fail(f"{where}.values", f"{value!r}: use a-z, 0-9 and _ only")
        low: int | Decimal | None = None
        high: int | Decimal | None = None
        if kind == "int":
            low, high = self.integer(body, "min", where), self.integer(body, "max", where)
        elif kind == "decimal":
            low, high = self.decimal(body, "min", where), self.decimal(body, "max", where)
        elif "min" in body or "max" in body:
            raise self.fail(where, "min and max apply to int and decimal fields only")
        if low is not None and high is not None and low > high:
            raise self.fail(where, "min is greater than max")
        max_length = self.integer(body, "max_length", where)
        if max_length is not None and max_length < 1:
            raise self.fail(f"{where}.max_length", "must be at least 1")
        pattern = body.get("pattern")
        if pattern is not None:
            if kind != "identifier" or not isinstance(pattern, str):
                raise self.fail(f"{where}.pattern", "a regular expression, identifiers only")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise self.fail(f"{where}.pattern", f"not a regular expression: {exc}") from None
        deviation_on = self.strings(body, "deviation_on", where, default=[])
        deviation_kind = body.get("deviation_kind")
        if bool(deviation_on) != (deviation_kind is not None):
            raise self.fail(where, "deviation_on and deviation_kind go together")
        if deviation_on and not set(deviation_on) <= set(values):
            raise self.fail(f"{where}.deviation_on", "must be values of this enum")
        if deviation_kind is not None and not isinstance(deviation_kind, str):
            raise self.fail(f"{where}.deviation_kind", "a string is required")
        scanned = self.boolean(body, "scanned", where, False)
        if scanned and name not in SCANNABLE_FIELDS:
            raise self.fail(f"{where}.scanned", f"a station can fill only {SCANNABLE_FIELDS}")
        unit = body.get("unit")
        if unit is not None and (not isinstance(unit, str) or not unit):
            raise self.fail(f"{where}.unit", "a non-empty string is required")
        return FieldSpec(
            name=name,
            title=self.string(body, "title", where),
            type=kind,
            unit=unit,
            required=self.boolean(body, "required", where, True),
            correctable=self.boolean(body, "correctable", where, True),
            values=values,
            min=low,
            max=high,
            max_length=max_length if max_length is not None else 500,
            pattern=pattern,
            deviation_on=deviation_on,
            deviation_kind=deviation_kind,
            scanned=scanned,
        )

    def step(
        self,
        name: str,
        body: Any,
        roles: set[str],
        states: set[str],
        initial: str,
        items: Mapping[str, ItemKindSpec],
        windows: Mapping[str, WindowSpec],
        qc_tests: Mapping[str, QcTestSpec],
    ) -> StepSpec:
        where = f"steps.{self.name(name, 'steps')}"
        if not isinstance(body, dict):
            raise self.fail(where, "a table is required")
        self.only_keys(
            body,
            {
                "title",
                "entry_type",
                "stage",
                "effect",
                "roles",
                "witness",
                "witness_roles",
                "from_states",
                "requires",
                "to_state",
                "to_state_by",
                "repeatable",
                "item",
                "item_from",
                "item_to",
                "items_to",
                "starts",
                "inside",
                "ends",
                "takes_custody",
                "creates",
                "independent_of_stages",
                "fields",
                "second_scan",
            },
            where,
        )
        entry_type = self.string(body, "entry_type", where)
        if _ENTRY_TYPE.fullmatch(entry_type) is None:
            raise self.fail(f"{where}.entry_type", f"{entry_type!r} is not like 'step.harvest'")
        effect = self.string(body, "effect", where, default="step")
        if effect not in EFFECTS:
            raise self.fail(f"{where}.effect", f"{effect!r} is not one of {sorted(EFFECTS)}")
        step_roles = self.strings(body, "roles", where)
        if not step_roles:
            raise self.fail(f"{where}.roles", "at least one role is required")
        for role in step_roles:
            if role not in roles:
                raise self.fail(f"{where}.roles", f"unknown role {role!r}")
        witness_roles = self.strings(body, "witness_roles", where, default=list(step_roles))
        for role in witness_roles:
            if role not in roles:
                raise self.fail(f"{where}.witness_roles", f"unknown role {role!r}")
        raw_from = body.get("from_states")
        if raw_from == "*":
            from_states = frozenset(s for s in states if s != initial)
        else:
            from_list = self.strings(body, "from_states", where)
            if not from_list:
                raise self.fail(f"{where}.from_states", "at least one state is required")
            for state in from_list:
                if state not in states:
                    raise self.fail(f"{where}.from_states", f"unknown state {state!r}")
            from_states = frozenset(from_list)
        to_state = body.get("to_state")
        if to_state is not None and to_state not in states:
            raise self.fail(f"{where}.to_state", f"unknown state {to_state!r}")
        fields: dict[str, FieldSpec] = {}
        for fname, fbody in self.table(body, "fields", f"{where}.").items():
            fwhere = f"{where}.fields.{self.name(fname, f'{where}.fields')}"
            if fname == "item":
                raise self.fail(fwhere, "'item' is reserved for the item the step is about")
            if fname in ("corrects", "reason") and effect != "correction":
                raise self.fail(fwhere, f"{fname!r} is reserved for corrections")
            fields[fname] = self.field(fname, fbody, fwhere)
        if not fields:
            raise self.fail(f"{where}.fields", "at least one field is required")
        to_state_field: str | None = None
        to_state_map: dict[str, str] = {}
        by = body.get("to_state_by")
        if by is not None:
            if to_state is not None:
                raise self.fail(where, "to_state and to_state_by exclude each other")
            if not isinstance(by, dict) or set(by) != {"field", "map"}:
                raise self.fail(f"{where}.to_state_by", "a table {field, map} is required")
            to_state_field = by["field"]
            spec = fields.get(to_state_field) if isinstance(to_state_field, str) else None
            if spec is None or spec.type != "enum" or not spec.required:
                raise self.fail(f"{where}.to_state_by.field", "must name a required enum field")
            mapping = by["map"]
            if not isinstance(mapping, dict) or set(mapping) != set(spec.values):
                raise self.fail(f"{where}.to_state_by.map", "must map every value of the field")
            for value, state in mapping.items():
                if state not in states:
                    raise self.fail(f"{where}.to_state_by.map.{value}", f"unknown state {state!r}")
                to_state_map[value] = state
            # The field that decides the state can never be corrected afterwards.
            fields[to_state_field] = _replace_correctable(spec)
        item = self.string(body, "item", where, default="none")
        if item not in ("none", "optional") and item not in items:
            raise self.fail(f"{where}.item", "must be 'none', 'optional' or an item kind")
        item_from = self.strings(body, "item_from", where, default=[])
        item_to = body.get("item_to")
        if (item_from or item_to is not None) and item in ("none", "optional"):
            raise self.fail(where, "item_from and item_to need a required item kind in 'item'")
        if item_to is not None and (not isinstance(item_to, str) or not item_to):
            raise self.fail(f"{where}.item_to", "a non-empty string is required")
        items_to_raw = body.get("items_to", {})
        if not isinstance(items_to_raw, dict):
            raise self.fail(f"{where}.items_to", "a table {item kind = status} is required")
        for kind, status in items_to_raw.items():
            if kind not in items or not isinstance(status, str) or not status:
                raise self.fail(f"{where}.items_to.{kind}", "an item kind and a status needed")
        starts = self.strings(body, "starts", where, default=[])
        inside = self.strings(body, "inside", where, default=[])
        ends = self.strings(body, "ends", where, default=[])
        for key, names in (("starts", starts), ("inside", inside), ("ends", ends)):
            for window in names:
                if window not in windows:
                    raise self.fail(f"{where}.{key}", f"unknown window {window!r}")
        creates: CreatesSpec | None = None
        raw_creates = body.get("creates")
        if raw_creates is not None:
            if not isinstance(raw_creates, dict):
                raise self.fail(f"{where}.creates", "a table is required")
            self.only_keys(raw_creates, {"kind", "count", "count_field"}, f"{where}.creates")
            kind = raw_creates.get("kind")
            if not isinstance(kind, str) or kind not in items:
                raise self.fail(f"{where}.creates.kind", f"unknown item kind {kind!r}")
            count = self.integer(raw_creates, "count", f"{where}.creates")
            count_field = raw_creates.get("count_field")
            if (count is None) == (count_field is None):
                raise self.fail(f"{where}.creates", "exactly one of count and count_field")
            if count is not None and not 1 <= count <= 99_999:
                raise self.fail(f"{where}.creates.count", "must be 1 to 99999")
            if count_field is not None:
                found = fields.get(count_field) if isinstance(count_field, str) else None
                if (
                    found is None
                    or found.type != "int"
                    or not found.required
                    or found.min is None
                    or found.max is None
                    or found.min < 1
                    or found.max > 99_999
                ):
                    raise self.fail(
                        f"{where}.creates.count_field",
                        "must name a required int field with min ≥ 1 and max ≤ 99999",
                    )
                fields[found.name] = _replace_correctable(found)
            creates = CreatesSpec(
                kind=kind,
                count=count,
                count_field=count_field if isinstance(count_field, str) else None,
            )
        for fname, fspec in fields.items():
            if fspec.type == "qc_value" and effect != "qc_result":
                raise self.fail(f"{where}.fields.{fname}", "qc_value belongs to the QC step")
        for fname, ftype in _EFFECT_FIELDS.get(effect, {}).items():
            needed = fields.get(fname)
            if needed is None or needed.type != ftype or not needed.required:
                raise self.fail(
                    f"{where}.fields", f"effect {effect!r} needs a required {ftype} field {fname!r}"
                )
        if effect == "qc_result":
            test_values = set(fields["test"].values)
            if test_values != set(qc_tests):
                raise self.fail(f"{where}.fields.test.values", "must list exactly the QC tests")
            if set(fields["result"].values) != {"pass", "fail"}:
                raise self.fail(f"{where}.fields.result.values", "must be pass and fail")
        if effect == "deviation_disposition" and set(fields["disposition"].values) != {
            "proceed",
            "reject",
        }:
            raise self.fail(f"{where}.fields.disposition.values", "must be proceed and reject")
        if effect == "deviation_open":
            window_field = fields.get("window")
            if window_field is None or window_field.type != "enum":
                raise self.fail(f"{where}.fields.window", "an optional enum of window names")
            if set(window_field.values) != set(windows):
                raise self.fail(f"{where}.fields.window.values", "must list exactly the windows")
        if effect == "bedside_verification" and item not in items:
            raise self.fail(f"{where}.item", "bedside verification must name an item kind")
        second_scan = body.get("second_scan")
        if second_scan is not None and second_scan not in SECOND_SCANS:
            raise self.fail(f"{where}.second_scan", f"one of {', '.join(SECOND_SCANS)}")
        if second_scan == "wristband" and effect != "bedside_verification":
            raise self.fail(f"{where}.second_scan", "a wristband is scanned at the bedside only")
        if effect == "bedside_verification" and second_scan != "wristband":
            raise self.fail(f"{where}.second_scan", "bedside verification scans the wristband")
        return StepSpec(
            name=name,
            title=self.string(body, "title", where),
            entry_type=entry_type,
            stage=self.string(body, "stage", where),
            effect=effect,
            roles=frozenset(step_roles),
            witness=self.boolean(body, "witness", where, False),
            witness_roles=frozenset(witness_roles),
            from_states=from_states,
            requires=self.strings(body, "requires", where),
            to_state=to_state,
            to_state_field=to_state_field,
            to_state_map=to_state_map,
            repeatable=self.boolean(body, "repeatable", where, False),
            item=item,
            item_from=frozenset(item_from),
            item_to=item_to,
            items_to=dict(items_to_raw),
            starts=starts,
            inside=inside,
            ends=ends,
            takes_custody=self.boolean(body, "takes_custody", where, False),
            creates=creates,
            independent_of_stages=frozenset(
                self.strings(body, "independent_of_stages", where, default=[])
            ),
            fields=fields,
            second_scan=second_scan,
        )

    def cross_checks(self, process: Process) -> None:
        steps = process.steps
        if not steps:
            raise self.fail("steps", "at least one step is required")
        seen_types: dict[str, str] = {}
        for step in steps.values():
            if step.entry_type in seen_types:
                raise self.fail(
                    f"steps.{step.name}.entry_type",
                    f"{step.entry_type!r} is also used by {seen_types[step.entry_type]!r}",
                )
            seen_types[step.entry_type] = step.name
            for req in step.requires:
                if req not in steps or req == step.name:
                    raise self.fail(f"steps.{step.name}.requires", f"unknown step {req!r}")
        # requires must not form a cycle (a step could never be recorded).
        state: dict[str, int] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise self.fail("steps", f"requires forms a cycle: {' -> '.join(path + (name,))}")
            state[name] = 1
            for req in steps[name].requires:
                visit(req, path + (name,))
            state[name] = 2

        for name in steps:
            visit(name, ())
        for effect in _REQUIRED_EFFECTS:
            if not any(s.effect == effect for s in steps.values()):
                raise self.fail("steps", f"a step with effect {effect!r} is required")
        for effect in _SINGLE_EFFECTS:
            having = [s.name for s in steps.values() if s.effect == effect]
            if len(having) > 1:
                raise self.fail("steps", f"effect {effect!r} is used by {', '.join(having)}")
        initial = process.initial_state
        creators = [s for s in steps.values() if initial in s.from_states]
        if len(creators) != 1:
            raise self.fail("steps", f"exactly one step must start from {initial!r} (enrolment)")
        if creators[0].to_state is None or creators[0].item != "none":
            raise self.fail(f"steps.{creators[0].name}", "the enrolling step must set to_state")
        reachable = {initial}
        for step in steps.values():
            reachable |= step.target_states()
        unreachable = [s for s in process.states if s not in reachable]
        if unreachable:
            raise self.fail("process.states", f"no step leads to {', '.join(unreachable)}")
        stages = {s.stage for s in steps.values()}
        for step in steps.values():
            for stage in step.independent_of_stages:
                if stage not in stages:
                    raise self.fail(f"steps.{step.name}.independent_of_stages", f"{stage!r}?")
        for window in process.windows.values():
            if not any(window.name in s.starts for s in steps.values()):
                raise self.fail(f"windows.{window.name}", "no step starts this window")
        kinds = set(steps[_effect_step(steps, "deviation_open")].fields["kind"].values)
        if "window_exceeded" not in kinds:
            raise self.fail("steps", "deviation kinds must include 'window_exceeded'")
        for step in steps.values():
            for fspec in step.fields.values():
                if fspec.deviation_kind is not None and fspec.deviation_kind not in kinds:
                    raise self.fail(
                        f"steps.{step.name}.fields.{fspec.name}.deviation_kind",
                        f"{fspec.deviation_kind!r} is not a deviation kind",
                    )
        if "label_mismatch" not in kinds and any(
            s.effect == "bedside_verification" for s in steps.values()
        ):
            raise self.fail("steps", "deviation kinds must include 'label_mismatch'")


def _effect_step(steps: Mapping[str, StepSpec], effect: str) -> str:
    for step in steps.values():
        if step.effect == effect:
            return step.name
    raise KeyError(effect)  # pragma: no cover - guarded by cross_checks


def _replace_correctable(spec: FieldSpec) -> FieldSpec:
    return replace(spec, correctable=False)
