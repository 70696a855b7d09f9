"""Reading one step of a process definition, and the fields it records, into the model.

Owns :func:`read_step` and :func:`read_field`: every key a step or field table may hold, what
it must look like, and what it may refer to (roles, states, item kinds, windows and QC tests,
read first by :mod:`coi.domain.loader`, passed in as :class:`Names`). An effect brings its own
demands (a QC step has exactly the QC tests as its ``test`` values; bedside verification names
an item kind and scans the wristband), checked here too. Checks that span steps (entry types,
``requires`` cycles) are the loader's. Every refusal is a
:class:`~coi.domain.errors.ProcessError` naming the key path, the first fault always first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from coi.domain.loader_reader import Reader
from coi.domain.process import (
    EFFECTS,
    FIELD_TYPES,
    IDENTIFIER_CHECKS,
    SCANNABLE_FIELDS,
    SECOND_SCANS,
    CreatesSpec,
    FieldSpec,
    ItemKindSpec,
    QcTestSpec,
    StepSpec,
    WindowSpec,
)

__all__ = ["Names", "read_field", "read_step"]

_VALUE = re.compile(r"[a-z0-9][a-z0-9_]*")
_ENTRY_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_FIELD_KEYS = {
    "title", "type", "unit", "required", "correctable", "values", "min", "max", "max_length",
    "pattern", "deviation_on", "deviation_kind", "scanned", "scan_only", "check",
}
_STEP_KEYS = {
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
    "labelled_items",
}
# Fields each special effect reads: name -> the type it must have (and it must be required).
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
    "exceptional_release_request": {"justification": "text"},
    "final": {"grounds": "text"},
}
_MAX_CREATED = 99_999


@dataclass(frozen=True)
class Names:
    """What a step may refer to, read from the rest of the definition before the steps."""

    roles: frozenset[str]
    states: frozenset[str]
    initial: str
    items: Mapping[str, ItemKindSpec]
    windows: Mapping[str, WindowSpec]
    qc_tests: Mapping[str, QcTestSpec]


# ------------------------------------------------------------------------------------ a field


def read_field(r: Reader, name: str, body: Any, where: str) -> FieldSpec:
    """One ``[steps.S.fields.NAME]`` table; ``where`` is its key path."""
    if not isinstance(body, dict):
        raise r.fail(where, "a table is required")
    r.only_keys(body, _FIELD_KEYS, where)
    kind = r.string(body, "type", where)
    if kind not in FIELD_TYPES:
        raise r.fail(f"{where}.type", f"{kind!r} is not one of {sorted(FIELD_TYPES)}")
    values = _field_values(r, body, where, kind)
    low, high = _field_bounds(r, body, where, kind)
    max_length = r.integer(body, "max_length", where)
    if max_length is not None and max_length < 1:
        raise r.fail(f"{where}.max_length", "must be at least 1")
    pattern = _field_pattern(r, body, where, kind)
    deviation_on, deviation_kind = _field_deviation(r, body, where, values)
    scanned = r.boolean(body, "scanned", where, False)
    if scanned and name not in SCANNABLE_FIELDS:
        raise r.fail(f"{where}.scanned", f"a station can fill only {SCANNABLE_FIELDS}")
    scan_only = r.boolean(body, "scan_only", where, False)
    if scan_only and not scanned:
        raise r.fail(f"{where}.scan_only", "only a field a station scans (scanned = true)")
    check = body.get("check")
    if check is not None and (kind != "identifier" or check not in IDENTIFIER_CHECKS):
        raise r.fail(f"{where}.check", f"an identifier's check: one of {IDENTIFIER_CHECKS}")
    unit = body.get("unit")
    if unit is not None and (not isinstance(unit, str) or not unit):
        raise r.fail(f"{where}.unit", "a non-empty string is required")
    return FieldSpec(
        name=name,
        title=r.string(body, "title", where),
        type=kind,
        unit=unit,
        required=r.boolean(body, "required", where, True),
        correctable=r.boolean(body, "correctable", where, True),
        values=values,
        min=low,
        max=high,
        max_length=max_length if max_length is not None else 500,
        pattern=pattern,
        deviation_on=deviation_on,
        deviation_kind=deviation_kind,
        scanned=scanned,
        scan_only=scan_only,
        check=check,
    )


def _field_values(r: Reader, body: Mapping[str, Any], where: str, kind: str) -> tuple[str, ...]:
    values = r.strings(body, "values", where, default=[])
    if kind == "enum" and not values:
        raise r.fail(f"{where}.values", "an enum needs its allowed values")
    if kind != "enum" and values:
        raise r.fail(f"{where}.values", "only an enum has values")
    for value in values:
        if _VALUE.fullmatch(value) is None:
            raise r.fail(f"{where}.values", f"{value!r}: use a-z, 0-9 and _ only")
    return values


def _field_bounds(
    r: Reader, body: Mapping[str, Any], where: str, kind: str
) -> tuple[int | Decimal | None, int | Decimal | None]:
    low: int | Decimal | None = None
    high: int | Decimal | None = None
    if kind == "int":
        low, high = r.integer(body, "min", where), r.integer(body, "max", where)
    elif kind == "decimal":
        low, high = r.decimal(body, "min", where), r.decimal(body, "max", where)
    elif "min" in body or "max" in body:
        raise r.fail(where, "min and max apply to int and decimal fields only")
    if low is not None and high is not None and low > high:
        raise r.fail(where, "min is greater than max")
    return low, high


def _field_pattern(r: Reader, body: Mapping[str, Any], where: str, kind: str) -> str | None:
    pattern = body.get("pattern")
    if pattern is None:
        return None
    if kind != "identifier" or not isinstance(pattern, str):
        raise r.fail(f"{where}.pattern", "a regular expression, identifiers only")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise r.fail(f"{where}.pattern", f"not a regular expression: {exc}") from None
    return pattern


def _field_deviation(
    r: Reader, body: Mapping[str, Any], where: str, values: tuple[str, ...]
) -> tuple[tuple[str, ...], str | None]:
    deviation_on = r.strings(body, "deviation_on", where, default=[])
    deviation_kind = body.get("deviation_kind")
    if bool(deviation_on) != (deviation_kind is not None):
        raise r.fail(where, "deviation_on and deviation_kind go together")
    if deviation_on and not set(deviation_on) <= set(values):
        raise r.fail(f"{where}.deviation_on", "must be values of this enum")
    if deviation_kind is not None and not isinstance(deviation_kind, str):
        raise r.fail(f"{where}.deviation_kind", "a string is required")
    return deviation_on, deviation_kind


# ------------------------------------------------------------------------------------- a step


def read_step(r: Reader, name: str, body: Any, names: Names) -> StepSpec:
    """One ``[steps.NAME]`` table, checked against ``names`` and its effect's demands."""
    where = f"steps.{r.name(name, 'steps')}"
    if not isinstance(body, dict):
        raise r.fail(where, "a table is required")
    return _StepReader(r, names, name, where, body).spec()


class _StepReader:
    """The reading of one step: each part of it, in the order its faults are reported."""

    def __init__(
        self, r: Reader, names: Names, name: str, where: str, body: Mapping[str, Any]
    ) -> None:
        self.r, self.names, self.name, self.where, self.body = r, names, name, where, body

    def spec(self) -> StepSpec:
        r, body, where = self.r, self.body, self.where
        r.only_keys(body, _STEP_KEYS, where)
        entry_type, effect = self.kind()
        step_roles, witness_roles = self.roles()
        from_states, to_state = self.states()
        fields = self.fields(effect)
        to_state_field, to_state_map = self.to_state_by(to_state, fields)
        item, item_from, item_to, items_to = self.item(effect)
        starts, inside, ends = self.windows()
        creates = self.creates(fields)
        self.effect_demands(effect, fields, item)
        second_scan = self.second_scan(effect)
        return StepSpec(
            name=self.name,
            title=r.string(body, "title", where),
            entry_type=entry_type,
            stage=r.string(body, "stage", where),
            effect=effect,
            roles=frozenset(step_roles),
            witness=r.boolean(body, "witness", where, False),
            witness_roles=frozenset(witness_roles),
            from_states=from_states,
            requires=r.strings(body, "requires", where),
            to_state=to_state,
            to_state_field=to_state_field,
            to_state_map=to_state_map,
            repeatable=r.boolean(body, "repeatable", where, False),
            item=item,
            item_from=frozenset(item_from),
            item_to=item_to,
            items_to=items_to,
            starts=starts,
            inside=inside,
            ends=ends,
            takes_custody=r.boolean(body, "takes_custody", where, False),
            creates=creates,
            independent_of_stages=frozenset(
                r.strings(body, "independent_of_stages", where, default=[])
            ),
            fields=fields,
            second_scan=second_scan,
            labelled_items=self.labelled_items(),
        )

    def labelled_items(self) -> str | None:
        """The item kind every item of which must carry an applied label before this step."""
        if "labelled_items" not in self.body:
            return None
        kind = self.r.string(self.body, "labelled_items", self.where)
        if kind not in self.names.items:
            raise self.r.fail(f"{self.where}.labelled_items", f"{kind!r} is not an item kind")
        return kind

    def kind(self) -> tuple[str, str]:
        """The entry type it records and its effect."""
        r, body, where = self.r, self.body, self.where
        entry_type = r.string(body, "entry_type", where)
        if _ENTRY_TYPE.fullmatch(entry_type) is None:
            raise r.fail(f"{where}.entry_type", f"{entry_type!r} is not like 'step.harvest'")
        effect = r.string(body, "effect", where, default="step")
        if effect not in EFFECTS:
            raise r.fail(f"{where}.effect", f"{effect!r} is not one of {sorted(EFFECTS)}")
        return entry_type, effect

    def roles(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Who may record it (at least one role) and who may witness it (default: the same)."""
        r, body, where = self.r, self.body, self.where
        step_roles = r.strings(body, "roles", where)
        if not step_roles:
            raise r.fail(f"{where}.roles", "at least one role is required")
        for role in step_roles:
            if role not in self.names.roles:
                raise r.fail(f"{where}.roles", f"unknown role {role!r}")
        witness_roles = r.strings(body, "witness_roles", where, default=list(step_roles))
        for role in witness_roles:
            if role not in self.names.roles:
                raise r.fail(f"{where}.witness_roles", f"unknown role {role!r}")
        return step_roles, witness_roles

    def states(self) -> tuple[frozenset[str], str | None]:
        """The states it may start from (``"*"``: any but the initial one) and its target."""
        r, body, where, names = self.r, self.body, self.where, self.names
        raw_from = body.get("from_states")
        if raw_from == "*":
            from_states = frozenset(s for s in names.states if s != names.initial)
        else:
            from_list = r.strings(body, "from_states", where)
            if not from_list:
                raise r.fail(f"{where}.from_states", "at least one state is required")
            for state in from_list:
                if state not in names.states:
                    raise r.fail(f"{where}.from_states", f"unknown state {state!r}")
            from_states = frozenset(from_list)
        to_state = body.get("to_state")
        if to_state is not None and not _is_state(to_state, names):
            raise r.fail(f"{where}.to_state", f"unknown state {to_state!r}")
        return from_states, to_state

    def fields(self, effect: str) -> dict[str, FieldSpec]:
        r, where = self.r, self.where
        fields: dict[str, FieldSpec] = {}
        for fname, fbody in r.table(self.body, "fields", f"{where}.").items():
            fwhere = f"{where}.fields.{r.name(fname, f'{where}.fields')}"
            if fname == "item":
                raise r.fail(fwhere, "'item' is reserved for the item the step is about")
            if fname in ("corrects", "reason") and effect != "correction":
                raise r.fail(fwhere, f"{fname!r} is reserved for corrections")
            fields[fname] = read_field(r, fname, fbody, fwhere)
        if not fields:
            raise r.fail(f"{where}.fields", "at least one field is required")
        return fields

    def to_state_by(
        self, to_state: str | None, fields: dict[str, FieldSpec]
    ) -> tuple[str | None, dict[str, str]]:
        """A target state chosen by a required enum field (which then cannot be corrected)."""
        r, where = self.r, self.where
        by = self.body.get("to_state_by")
        if by is None:
            return None, {}
        if to_state is not None:
            raise r.fail(where, "to_state and to_state_by exclude each other")
        if not isinstance(by, dict) or set(by) != {"field", "map"}:
            raise r.fail(f"{where}.to_state_by", "a table {field, map} is required")
        to_state_field = by["field"]
        spec = fields.get(to_state_field) if isinstance(to_state_field, str) else None
        if spec is None or spec.type != "enum" or not spec.required:
            raise r.fail(f"{where}.to_state_by.field", "must name a required enum field")
        mapping = by["map"]
        if not isinstance(mapping, dict) or set(mapping) != set(spec.values):
            raise r.fail(f"{where}.to_state_by.map", "must map every value of the field")
        to_state_map: dict[str, str] = {}
        for value, state in mapping.items():
            if not _is_state(state, self.names):
                raise r.fail(f"{where}.to_state_by.map.{value}", f"unknown state {state!r}")
            to_state_map[value] = state
        fields[spec.name] = replace(spec, correctable=False)
        return spec.name, to_state_map

    def item(self, effect: str) -> tuple[str, tuple[str, ...], str | None, dict[str, str]]:
        """The item it is about, the statuses it needs and sets, and statuses of all items.

        A ``final`` step (return, disposal, destruction) is about one item or the whole product:
        ``item = "optional"`` with ``item_to``, the final status of the item (or of every item).
        """
        r, body, where, items = self.r, self.body, self.where, self.names.items
        item = r.string(body, "item", where, default="none")
        if item not in ("none", "optional") and item not in items:
            raise r.fail(f"{where}.item", "must be 'none', 'optional' or an item kind")
        item_from = r.strings(body, "item_from", where, default=[])
        item_to = body.get("item_to")
        if effect == "final":
            if item != "optional" or item_from or not isinstance(item_to, str) or not item_to:
                raise r.fail(where, "a final step has item = 'optional' and an item_to status")
        elif (item_from or item_to is not None) and item in ("none", "optional"):
            raise r.fail(where, "item_from and item_to need a required item kind in 'item'")
        if item_to is not None and (not isinstance(item_to, str) or not item_to):
            raise r.fail(f"{where}.item_to", "a non-empty string is required")
        items_to = body.get("items_to", {})
        if not isinstance(items_to, dict):
            raise r.fail(f"{where}.items_to", "a table {item kind = status} is required")
        for kind, status in items_to.items():
            if kind not in items or not isinstance(status, str) or not status:
                raise r.fail(f"{where}.items_to.{kind}", "an item kind and a status needed")
        return item, item_from, item_to, dict(items_to)

    def windows(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The windows it starts, falls inside, and ends."""
        r, body, where = self.r, self.body, self.where
        starts = r.strings(body, "starts", where, default=[])
        inside = r.strings(body, "inside", where, default=[])
        ends = r.strings(body, "ends", where, default=[])
        for key, names in (("starts", starts), ("inside", inside), ("ends", ends)):
            for window in names:
                if window not in self.names.windows:
                    raise r.fail(f"{where}.{key}", f"unknown window {window!r}")
        return starts, inside, ends

    def creates(self, fields: dict[str, FieldSpec]) -> CreatesSpec | None:
        """Items it creates: a fixed count, or a bounded required int field (not correctable)."""
        r, where = self.r, f"{self.where}.creates"
        raw = self.body.get("creates")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise r.fail(where, "a table is required")
        r.only_keys(raw, {"kind", "count", "count_field"}, where)
        kind = raw.get("kind")
        if not isinstance(kind, str) or kind not in self.names.items:
            raise r.fail(f"{where}.kind", f"unknown item kind {kind!r}")
        count = r.integer(raw, "count", where)
        count_field = raw.get("count_field")
        if (count is None) == (count_field is None):
            raise r.fail(where, "exactly one of count and count_field")
        if count is not None and not 1 <= count <= _MAX_CREATED:
            raise r.fail(f"{where}.count", "must be 1 to 99999")
        if count_field is not None:
            found = fields.get(count_field) if isinstance(count_field, str) else None
            if found is None or not _bounded_count(found):
                raise r.fail(
                    f"{where}.count_field",
                    "must name a required int field with min ≥ 1 and max ≤ 99999",
                )
            fields[found.name] = replace(found, correctable=False)
        return CreatesSpec(
            kind=kind,
            count=count,
            count_field=count_field if isinstance(count_field, str) else None,
        )

    def effect_demands(self, effect: str, fields: Mapping[str, FieldSpec], item: str) -> None:
        """The fields (and item) its effect reads, with the types and values it needs."""
        r, where = self.r, self.where
        for fname, fspec in fields.items():
            if fspec.type == "qc_value" and effect != "qc_result":
                raise r.fail(f"{where}.fields.{fname}", "qc_value belongs to the QC step")
        for fname, ftype in _EFFECT_FIELDS.get(effect, {}).items():
            needed = fields.get(fname)
            if needed is None or needed.type != ftype or not needed.required:
                raise r.fail(
                    f"{where}.fields", f"effect {effect!r} needs a required {ftype} field {fname!r}"
                )
        if effect == "qc_result":
            if set(fields["test"].values) != set(self.names.qc_tests):
                raise r.fail(f"{where}.fields.test.values", "must list exactly the QC tests")
            if set(fields["result"].values) != {"pass", "fail"}:
                raise r.fail(f"{where}.fields.result.values", "must be pass and fail")
        if effect == "deviation_disposition" and set(fields["disposition"].values) != {
            "proceed",
            "reject",
        }:
            raise r.fail(f"{where}.fields.disposition.values", "must be proceed and reject")
        if effect == "deviation_open":
            window_field = fields.get("window")
            if window_field is None or window_field.type != "enum":
                raise r.fail(f"{where}.fields.window", "an optional enum of window names")
            if set(window_field.values) != set(self.names.windows):
                raise r.fail(f"{where}.fields.window.values", "must list exactly the windows")
        if effect == "final" and self.body.get("to_state") is None:
            raise r.fail(f"{where}.to_state", "a final step names the product's final state")
        if effect == "bedside_verification" and item not in self.names.items:
            raise r.fail(f"{where}.item", "bedside verification must name an item kind")

    def second_scan(self, effect: str) -> str | None:
        """What a scan station scans after the bag: paperwork, or the wristband at the bedside."""
        r, where = self.r, f"{self.where}.second_scan"
        second_scan = self.body.get("second_scan")
        if second_scan is not None and second_scan not in SECOND_SCANS:
            raise r.fail(where, f"one of {', '.join(SECOND_SCANS)}")
        if second_scan == "wristband" and effect != "bedside_verification":
            raise r.fail(where, "a wristband is scanned at the bedside only")
        if effect == "bedside_verification" and second_scan != "wristband":
            raise r.fail(where, "bedside verification scans the wristband")
        return second_scan


def _is_state(value: object, names: Names) -> bool:
    """A state of the process (a table or a list there is refused, not a crash)."""
    return isinstance(value, str) and value in names.states


def _bounded_count(spec: FieldSpec) -> bool:
    return (
        spec.type == "int"
        and spec.required
        and spec.min is not None
        and spec.max is not None
        and spec.min >= 1
        and spec.max <= _MAX_CREATED
    )
