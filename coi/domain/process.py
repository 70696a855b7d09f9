"""The process as data: the model of a versioned chain-of-identity definition.

This module owns the *shape* of a process definition (``car_t.toml`` is the one shipped): its
steps, the roles allowed for each, the states they move a product between, their fields with types
and units, witness rules, time windows, the items they create and the QC tests a release needs,
as frozen dataclasses with the few queries the rules ask of them (a step by name, by entry type,
by effect). A :class:`Process` is only ever built by :mod:`coi.domain.loader`, which refuses a
bad definition, so one that exists is one the rules (:mod:`coi.domain.check`) can enforce
without further checks.

It owns no rule evaluation and no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "EFFECTS",
    "ENTRY_METHODS",
    "IDENTIFIER_CHECKS",
    "FIELD_TYPES",
    "MAX_SAFE_INT",
    "SCANNABLE_FIELDS",
    "SECOND_SCANS",
    "CreatesSpec",
    "FieldSpec",
    "ItemKindSpec",
    "Process",
    "QcTestSpec",
    "StepSpec",
    "WindowSpec",
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
        "exceptional_release_request",
        "final",
    }
)
# What a scan station scans after the bag, to compare: the paperwork, or the patient's wristband.
SECOND_SCANS = ("paperwork", "wristband")
# Fields a scan station can fill from its scans (``scanned = true``), by what the name holds.
SCANNABLE_FIELDS = ("scanned_coi", "scanned_bag", "wristband_commitment", "paperwork")
MAX_SAFE_INT = 2**53 - 1
# How a scan-only field's value was entered: a scanner burst, pasted or typed at a scan station
# (which read it as a scan), or keyed by hand where no station could tell (the command line).
ENTRY_METHODS = ("scanner", "pasted", "typed", "keyed")
# Identifiers whose check character is verified whenever they are keyed: a DIN (with K or its
# check flags), a Chain of Identity Identifier (with K), a bag's or a document's coi label code.
IDENTIFIER_CHECKS = ("din", "coi", "bag", "document")


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
    scan_only: bool = False  # keyed by hand only with a witness and a reason (1.2.0)
    check: str | None = None  # one of IDENTIFIER_CHECKS: keyed, its check character is verified


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
    labelled_items: str | None = None  # every item of this kind needs an applied label first

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
