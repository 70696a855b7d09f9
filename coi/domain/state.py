"""The chain-of-identity state machine: what each product is, and whether an attempt may happen.

This module owns the *rules* of a loaded :class:`~coi.domain.process.Process` over ledger facts:

* :class:`ChainState` / :class:`ProductState` — the state of every product, rebuilt by
  :meth:`ChainState.apply` from ledger facts in order. Replay is deterministic: the same facts give
  the same :meth:`ChainState.to_json`, so the state the service keeps can be compared with the state
  rebuilt from the ledger.
* :func:`check` — whether a person's :class:`Attempt` is allowed now, with the typed field values to
  record, or refused with reasons a person understands; plus the deviations that must be opened
  automatically (:class:`AutoDeviation`).
* :func:`replay` — re-checks every fact of a ledger against the process (``coi verify``).

Pure: no clock, no I/O, no database. Time comes in as ``now_ms`` / ``Fact.time_ms``. Locked or
revoked users are the service layer's business, and so is recording refusals in the ledger.
Patient data never enters a fact: enrolment carries only :func:`patient_commitment`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from coi.domain.errors import ReplayError

from .process import MAX_SAFE_INT, FieldSpec, Process, QcTestSpec, StepSpec, WindowSpec

__all__ = [
    "Attempt",
    "AutoDeviation",
    "ChainState",
    "Decision",
    "Deviation",
    "Fact",
    "Item",
    "Label",
    "ProductState",
    "QcResult",
    "Signer",
    "WindowState",
    "attempt_from_fact",
    "check",
    "format_duration",
    "format_ms",
    "patient_commitment",
    "pending_breaches",
    "replay",
]

# ----------------------------------------------------------------------- the interface with ledger


@dataclass(frozen=True)
class Signer:
    """A person signing an entry, as the ledger knows them at the time of signing."""

    user: str
    name: str
    meaning: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Fact:
    """One ledger entry, as the domain sees it. ``signers[0]`` is the author, the rest witnesses."""

    index: int
    time_ms: int
    type: str
    subject: str  # the CoI identifier text
    data: Mapping[str, Any]  # JSON values: str, int, bool, None, list, dict
    signers: tuple[Signer, ...]


@dataclass(frozen=True)
class Attempt:
    """What a person is trying to record now; ``fields`` are raw text from the CLI or TUI."""

    step: str
    subject: str
    item: str | None
    fields: Mapping[str, str]
    actor: Signer
    witness: Signer | None
    now_ms: int


@dataclass(frozen=True)
class AutoDeviation:
    """A deviation the service must open (as a ``deviation_open`` entry) because of a rule.

    ``fields`` are ready to use as an :class:`Attempt`'s fields for the deviation step, and
    ``data`` is the JSON the entry carries (what :func:`check` would produce for that attempt).
    """

    subject: str
    kind: str
    description: str
    window: str | None = None
    item: str | None = None

    @property
    def fields(self) -> dict[str, str]:
        out = {"kind": self.kind, "description": self.description}
        if self.window is not None:
            out["window"] = self.window
        return out

    @property
    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.fields)
        if self.item is not None:
            out["item"] = self.item
        return out


@dataclass(frozen=True)
class Decision:
    """The answer to an :class:`Attempt`.

    Allowed: ``entry_type`` and ``data`` (typed JSON-profile values: ints and strings, never
    floats) are what to append. Refused: ``reasons`` say why, one sentence each. Either way,
    ``auto_deviations`` lists deviations the service must open now.
    """

    step: str
    allowed: bool
    entry_type: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    auto_deviations: tuple[AutoDeviation, ...] = ()


def patient_commitment(secret: bytes, patient_id: str) -> str:
    """The keyed commitment to a patient identifier: HMAC-SHA256(secret, UTF-8 id), hex.

    Only this goes into the ledger; erasing ``secret`` later leaves every entry verifiable while
    no-one can test a guessed identifier against it any more.
    """
    if not secret:
        raise ValueError("the patient secret is empty")
    if not patient_id:
        raise ValueError("the patient identifier is empty")
    return hmac.new(secret, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------------------- state


@dataclass
class Item:
    """A physical item bound to the CoI: the collection bag or one final product bag."""

    id: str
    kind: str
    status: str
    created_index: int

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "status": self.status, "created_index": self.created_index}


@dataclass
class WindowState:
    """One running (or ended) time window of a product, or of one of its items."""

    name: str
    item: str | None
    started_by: str  # step name
    start_index: int
    start_ms: int
    opens_ms: int | None  # not before (the window's minimum)
    deadline_ms: int
    ended_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "item": self.item,
            "started_by": self.started_by,
            "start_index": self.start_index,
            "start_ms": self.start_ms,
            "opens_ms": self.opens_ms,
            "deadline_ms": self.deadline_ms,
            "ended_index": self.ended_index,
        }


@dataclass
class QcResult:
    """One recorded QC result (corrections applied)."""

    index: int
    test: str
    result: str
    value: str | int
    unit: str | None

    def to_json(self) -> dict[str, Any]:
        return {"test": self.test, "result": self.result, "value": self.value, "unit": self.unit}


@dataclass
class Deviation:
    """A deviation, identified by the ledger index of the entry that opened it."""

    index: int
    kind: str
    description: str
    window: str | None
    item: str | None
    opened_by: str
    disposition: str | None = None
    disposition_index: int | None = None
    closed_index: int | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_index is None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "window": self.window,
            "item": self.item,
            "opened_by": self.opened_by,
            "disposition": self.disposition,
            "disposition_index": self.disposition_index,
            "closed_index": self.closed_index,
        }


@dataclass
class Label:
    """A controlled label: issued -> printed -> applied, or voided (and then perhaps reprinted)."""

    id: str
    item: str | None
    status: str
    events: list[int] = field(default_factory=list)
    replaces: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "status": self.status,
            "events": list(self.events),
            "replaces": self.replaces,
        }


@dataclass
class ProductState:
    """Everything the rules need to know about one product (one CoI)."""

    coi: str
    state: str
    enrolled_index: int
    patient_commitment: str | None = None
    steps: dict[str, list[int]] = field(default_factory=dict)
    entry_steps: dict[int, str] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    windows: dict[str, WindowState] = field(default_factory=dict)
    qc_results: dict[int, QcResult] = field(default_factory=dict)
    deviations: dict[int, Deviation] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    authors: dict[str, set[str]] = field(default_factory=dict)
    witnesses: dict[str, set[str]] = field(default_factory=dict)
    corrections: dict[int, list[int]] = field(default_factory=dict)
    custodian: str | None = None
    last_index: int = -1
    last_time_ms: int = 0

    def completed(self, step: str) -> bool:
        return bool(self.steps.get(step))

    def latest_qc(self, test: str) -> QcResult | None:
        found = [r for r in self.qc_results.values() if r.test == test]
        return max(found, key=lambda r: r.index) if found else None

    def open_deviations(self) -> list[Deviation]:
        return [d for d in self.deviations.values() if d.is_open]

    def items_of(self, kind: str) -> list[Item]:
        return [i for i in self.items.values() if i.kind == kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "coi": self.coi,
            "state": self.state,
            "enrolled_index": self.enrolled_index,
            "patient_commitment": self.patient_commitment,
            "steps": {k: list(v) for k, v in sorted(self.steps.items())},
            "items": {k: v.to_json() for k, v in sorted(self.items.items())},
            "windows": {k: v.to_json() for k, v in sorted(self.windows.items())},
            "qc_results": {str(k): v.to_json() for k, v in sorted(self.qc_results.items())},
            "deviations": {str(k): v.to_json() for k, v in sorted(self.deviations.items())},
            "labels": {k: v.to_json() for k, v in sorted(self.labels.items())},
            "authors": {k: sorted(v) for k, v in sorted(self.authors.items())},
            "witnesses": {k: sorted(v) for k, v in sorted(self.witnesses.items())},
            "corrections": {str(k): list(v) for k, v in sorted(self.corrections.items())},
            "custodian": self.custodian,
            "last_index": self.last_index,
            "last_time_ms": self.last_time_ms,
        }


class ChainState:
    """The state of every product under one process; built by applying facts in ledger order."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.products: dict[str, ProductState] = {}
        self.last_index = -1

    def product(self, coi: str) -> ProductState | None:
        return self.products.get(coi)

    def to_json(self) -> dict[str, Any]:
        return {
            "process": self.process.sha256,
            "last_index": self.last_index,
            "products": {k: v.to_json() for k, v in sorted(self.products.items())},
        }

    def apply(self, fact: Fact) -> None:
        """Apply one fact (already checked when it was appended). Unknown entry types are ignored:
        genesis, user enrolment, refusals and other ledger business are not the product chain's.
        """
        if fact.index <= self.last_index:
            raise ReplayError(
                f"facts must be applied in ledger order (after {self.last_index})", index=fact.index
            )
        self.last_index = fact.index
        step = self.process.step_for_entry_type(fact.type)
        if step is None:
            return
        try:
            _apply(self.process, self, step, fact)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayError(
                f"{fact.type} for {fact.subject} cannot be applied: {exc!r}", index=fact.index
            ) from exc


def _apply(process: Process, chain: ChainState, step: StepSpec, fact: Fact) -> None:
    data = fact.data
    product = chain.products.get(fact.subject)
    if product is None:
        if process.initial_state not in step.from_states:
            raise ReplayError(f"{fact.subject} is not enrolled", index=fact.index)
        product = ProductState(coi=fact.subject, state=process.initial_state, enrolled_index=-1)
        product.enrolled_index = fact.index
        chain.products[fact.subject] = product
    product.steps.setdefault(step.name, []).append(fact.index)
    product.entry_steps[fact.index] = step.name
    product.last_index = fact.index
    product.last_time_ms = fact.time_ms
    if fact.signers:
        product.authors.setdefault(step.name, set()).add(fact.signers[0].user)
        for witness in fact.signers[1:]:
            product.witnesses.setdefault(step.name, set()).add(witness.user)
    item_id = data.get("item")
    if not isinstance(item_id, str):
        item_id = None

    if process.initial_state in step.from_states and "patient_commitment" in data:
        product.patient_commitment = str(data["patient_commitment"])
    if step.item_to is not None and item_id is not None:
        product.items[item_id].status = step.item_to
    if step.creates is not None:
        kind = process.items[step.creates.kind]
        count = step.creates.count
        if count is None:
            count = int(data[step.creates.count_field or ""])
        existing = len(product.items_of(kind.name))
        for n in range(existing + 1, existing + count + 1):
            new_id = f"{kind.prefix}{n:05d}"
            product.items[new_id] = Item(new_id, kind.name, "created", fact.index)
        if step.to_state is not None:
            for item in product.items_of(kind.name):
                if item.created_index == fact.index:
                    item.status = step.to_state
    for kind_name, status in step.items_to.items():
        for item in product.items_of(kind_name):
            item.status = status
    if step.to_state is not None:
        product.state = step.to_state
    elif step.to_state_field is not None:
        product.state = step.to_state_map[str(data[step.to_state_field])]
    for window_name in step.ends:
        key = _window_key(process.windows[window_name], item_id)
        if key in product.windows and product.windows[key].ended_index is None:
            product.windows[key].ended_index = fact.index
    for window_name in step.starts:
        spec = process.windows[window_name]
        key = _window_key(spec, item_id)
        product.windows[key] = WindowState(
            name=window_name,
            item=item_id if spec.per_item else None,
            started_by=step.name,
            start_index=fact.index,
            start_ms=fact.time_ms,
            opens_ms=None if spec.min_ms is None else fact.time_ms + spec.min_ms,
            deadline_ms=fact.time_ms + spec.max_ms,
        )
    if step.takes_custody and fact.signers:
        product.custodian = fact.signers[0].user

    effect = step.effect
    if effect == "custody_transfer" and len(fact.signers) > 1:
        product.custodian = fact.signers[1].user
    elif effect == "qc_result":
        unit = data.get("unit")
        product.qc_results[fact.index] = QcResult(
            index=fact.index,
            test=str(data["test"]),
            result=str(data["result"]),
            value=_json_scalar(data["value"]),
            unit=unit if isinstance(unit, str) else None,
        )
    elif effect == "deviation_open":
        window = data.get("window")
        product.deviations[fact.index] = Deviation(
            index=fact.index,
            kind=str(data["kind"]),
            description=str(data["description"]),
            window=window if isinstance(window, str) else None,
            item=item_id,
            opened_by=fact.signers[0].user if fact.signers else "",
        )
    elif effect == "deviation_disposition":
        deviation = product.deviations[int(data["deviation"])]
        deviation.disposition = str(data["disposition"])
        deviation.disposition_index = fact.index
    elif effect == "deviation_close":
        product.deviations[int(data["deviation"])].closed_index = fact.index
    elif effect == "correction":
        corrected = int(data["corrects"])
        product.corrections.setdefault(corrected, []).append(fact.index)
        values = data["values"]
        if not isinstance(values, Mapping):
            raise TypeError("correction values must be an object")
        qc = product.qc_results.get(corrected)
        if qc is not None:
            if "result" in values:
                qc.result = str(values["result"])
            if "value" in values:
                qc.value = _json_scalar(values["value"])
        dev = product.deviations.get(corrected)
        if dev is not None and "description" in values:
            dev.description = str(values["description"])
    elif effect == "label_issue":
        label_id = str(data["label"])
        product.labels[label_id] = Label(label_id, item_id, "issued", [fact.index])
    elif effect in ("label_print", "label_apply", "label_void"):
        label = product.labels[str(data["label"])]
        label.status = {"label_print": "printed", "label_apply": "applied"}.get(effect, "voided")
        label.events.append(fact.index)
    elif effect == "label_reprint":
        old = product.labels[str(data["replaces"])]
        old.events.append(fact.index)
        label_id = str(data["label"])
        product.labels[label_id] = Label(label_id, old.item, "printed", [fact.index], old.id)


def _json_scalar(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"expected a string or an integer, got {value!r}")
    return value


def _window_key(spec: WindowSpec, item: str | None) -> str:
    return f"{spec.name}/{item}" if spec.per_item and item is not None else spec.name


# ----------------------------------------------------------------------------------- wording


def format_ms(ms: int) -> str:
    """``1790000000000`` -> ``2026-09-21 13:33 UTC`` (for messages; minutes are enough)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def format_duration(ms: int) -> str:
    """``172800000`` -> ``48 h``; ``3600000`` -> ``60 min``; ``1209600000`` -> ``14 d``."""
    if ms % 86_400_000 == 0 and ms >= 3 * 86_400_000:
        return f"{ms // 86_400_000} d"
    if ms % 3_600_000 == 0 and ms >= 2 * 3_600_000:
        return f"{ms // 3_600_000} h"
    if ms % 60_000 == 0:
        return f"{ms // 60_000} min"
    if ms % 1000 == 0:
        return f"{ms // 1000} s"
    return f"{ms} ms"


def _mid(title: str) -> str:
    """A title as it reads inside a sentence: 'Courier pickup' -> 'courier pickup', 'QA release'."""
    if len(title) > 1 and title[:2].isupper():
        return title
    return title[:1].lower() + title[1:]


def _role_words(roles: Iterable[str]) -> str:
    names = [r.upper() if r in ("qa", "qc") else r for r in sorted(roles)]
    return " or ".join(names) if names else "nobody"


def _has_roles(signer: Signer) -> str:
    return ", ".join(sorted(signer.roles)) if signer.roles else "none"


def _field_label(spec: FieldSpec) -> str:
    unit = f", {spec.unit}" if spec.unit else ""
    return f"'{spec.name}' ({spec.title}{unit})"


# ----------------------------------------------------------------------------- parsing fields

_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_IDENTIFIER = re.compile(r"[A-Z0-9][A-Z0-9-]*")
_COMMITMENT = re.compile(r"[0-9a-f]{64}")
_ISO = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,3})?)?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_IDENTIFIER_MAX = 64


def _parse_int(
    spec_label: str, raw: str, low: int | Decimal | None, high: int | Decimal | None
) -> int:
    text = raw.strip()
    if _INT.fullmatch(text) is None:
        raise ValueError(f"{spec_label}: {raw!r} is not a whole number")
    value = int(text)
    if abs(value) > MAX_SAFE_INT:
        raise ValueError(f"{spec_label}: {raw!r} is too large")
    if low is not None and value < low:
        raise ValueError(f"{spec_label}: {value} is below the minimum {low}")
    if high is not None and value > high:
        raise ValueError(f"{spec_label}: {value} is above the maximum {high}")
    return value


def _parse_decimal(
    spec_label: str, raw: str, low: int | Decimal | None, high: int | Decimal | None
) -> str:
    text = raw.strip()
    if _DECIMAL.fullmatch(text) is None or len(text) > 40:
        raise ValueError(f"{spec_label}: {raw!r} is not a decimal number like 12.5")
    value = Decimal(text)
    if low is not None and value < low:
        raise ValueError(f"{spec_label}: {text} is below the minimum {low}")
    if high is not None and value > high:
        raise ValueError(f"{spec_label}: {text} is above the maximum {high}")
    return text


def _parse_enum(spec_label: str, raw: str, values: tuple[str, ...]) -> str:
    text = raw.strip().lower()
    if text not in values:
        raise ValueError(f"{spec_label}: {raw!r} is not one of {', '.join(values)}")
    return text


def _parse_field(spec: FieldSpec, raw: str, now_ms: int) -> str | int:
    """Raw text -> typed JSON-profile value, or ValueError with a sentence a person understands."""
    label = f"Field {_field_label(spec)}"
    if not isinstance(raw, str):
        raise ValueError(f"{label}: expected text")
    kind = spec.type
    if kind == "int":
        return _parse_int(label, raw, spec.min, spec.max)
    if kind == "decimal":
        return _parse_decimal(label, raw, spec.min, spec.max)
    if kind == "enum":
        return _parse_enum(label, raw, spec.values)
    if kind == "text":
        text = unicodedata.normalize("NFC", raw.strip())
        if not text:
            raise ValueError(f"{label}: must not be empty")
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ValueError(f"{label}: must not contain control characters")
        if len(text) > spec.max_length:
            raise ValueError(f"{label}: longer than {spec.max_length} characters")
        return text
    if kind == "identifier":
        text = raw.strip().upper()
        limit = min(spec.max_length, _IDENTIFIER_MAX)
        if _IDENTIFIER.fullmatch(text) is None or len(text) > limit:
            raise ValueError(
                f"{label}: {raw!r} is not an identifier (A-Z, 0-9 and -, up to {limit})"
            )
        if spec.pattern is not None and re.fullmatch(spec.pattern, text) is None:
            raise ValueError(f"{label}: {raw!r} does not have the expected format")
        return text
    if kind == "commitment":
        text = raw.strip().lower()
        if _COMMITMENT.fullmatch(text) is None:
            raise ValueError(f"{label}: expected 64 hexadecimal characters")
        return text
    if kind == "timestamp":
        return _parse_timestamp(label, raw, now_ms)
    raise ValueError(f"{label}: type {kind!r} is checked with its step")  # qc_value


def _parse_timestamp(label: str, raw: str, now_ms: int) -> int:
    text = raw.strip()
    if _INT.fullmatch(text) is not None and not text.startswith(("+", "-")):
        value = int(text)
    elif _ISO.fullmatch(text) is not None:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        delta = moment - epoch
        value = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    else:
        raise ValueError(
            f"{label}: {raw!r} is not a time (milliseconds since 1970 or 2026-01-31T09:30Z)"
        )
    if value <= 0 or value > MAX_SAFE_INT:
        raise ValueError(f"{label}: {raw!r} is out of range")
    if value > now_ms:
        raise ValueError(f"{label}: {format_ms(value)} is in the future")
    return value


def _parse_qc_value(test: QcTestSpec, raw: str) -> str | int:
    label = f"Field 'value' ({test.title}{', ' + test.unit if test.unit else ''})"
    if test.type == "enum":
        return _parse_enum(label, raw, test.values)
    if test.type == "int":
        return _parse_int(label, raw, None, None)
    return _parse_decimal(label, raw, None, None)


def _qc_passes(test: QcTestSpec, value: str | int) -> bool:
    if test.type == "enum":
        return value in test.pass_values
    number = Decimal(value) if isinstance(value, str) else Decimal(value)
    if test.min is not None and number < test.min:
        return False
    return not (test.max is not None and number > test.max)


def _parse_fields(
    step: StepSpec, raw: Mapping[str, str], now_ms: int, *, partial: bool = False
) -> tuple[dict[str, str | int], list[str]]:
    """Validate the step's own fields; unknown names and missing required ones are reasons."""
    values: dict[str, str | int] = {}
    reasons: list[str] = []
    for name in raw:
        if name not in step.fields:
            reasons.append(
                f"'{step.title}' has no field {name!r}; its fields are: {', '.join(step.fields)}"
            )
    for name, spec in step.fields.items():
        if name not in raw:
            if spec.required and not partial:
                reasons.append(f"'{step.title}' needs the field {_field_label(spec)}")
            continue
        if spec.type == "qc_value":
            values[name] = raw[name]  # checked against its test by the QC rule
            continue
        try:
            values[name] = _parse_field(spec, raw[name], now_ms)
        except ValueError as exc:
            reasons.append(str(exc))
    return values, reasons


# ------------------------------------------------------------------------------------ the rules


class _Check:
    """One evaluation of one attempt; collects reasons and automatic deviations."""

    def __init__(self, process: Process, chain: ChainState, attempt: Attempt) -> None:
        self.process = process
        self.chain = chain
        self.attempt = attempt
        self.reasons: list[str] = []
        self.breaches: list[AutoDeviation] = []  # reported only if nothing else is wrong
        self.consequences: list[AutoDeviation] = []  # reported only if allowed
        self.breach_reasons: set[str] = set()
        self.product = chain.product(attempt.subject)
        self.item: str | None = None

    def refuse(self, reason: str) -> None:
        self.reasons.append(reason)

    def decide(self, step: StepSpec, data: dict[str, Any]) -> Decision:
        if self.reasons:
            only_breaches = all(r in self.breach_reasons for r in self.reasons)
            return Decision(
                step=step.name,
                allowed=False,
                reasons=tuple(self.reasons),
                auto_deviations=tuple(self.breaches) if only_breaches else (),
            )
        return Decision(
            step=step.name,
            allowed=True,
            entry_type=step.entry_type,
            data=data,
            auto_deviations=tuple(self.consequences),
        )

    def breach(self, reason: str, deviation: AutoDeviation | None) -> None:
        """A refusal caused by a time window or a mismatch: it opens a deviation by itself."""
        self.reasons.append(reason)
        self.breach_reasons.add(reason)
        if deviation is not None:
            self.breaches.append(deviation)

    # -- who ------------------------------------------------------------------------------------

    def roles(self, step: StepSpec) -> None:
        actor = self.attempt.actor
        if not actor.roles & step.roles:
            self.refuse(
                f"Only {_role_words(step.roles)} may record '{step.title}'; "
                f"{actor.user} has roles: {_has_roles(actor)}"
            )

    def witness(self, step: StepSpec) -> None:
        witness = self.attempt.witness
        if witness is None:
            if step.witness:
                self.refuse(f"'{step.title}' needs a witness (a second person co-signs)")
            return
        if witness.user == self.attempt.actor.user:
            self.refuse(f"The witness must be someone other than {witness.user}")
        elif not witness.roles & step.witness_roles:
            self.refuse(
                f"The witness for '{step.title}' must be {_role_words(step.witness_roles)}; "
                f"{witness.user} has roles: {_has_roles(witness)}"
            )

    # -- order ----------------------------------------------------------------------------------

    def order(self, step: StepSpec) -> None:
        process, product = self.process, self.product
        subject = self.attempt.subject
        if product is None:
            if process.initial_state not in step.from_states:
                self.refuse(f"No product with chain of identity {subject} is enrolled")
            return
        if process.initial_state in step.from_states:
            self.refuse(f"{subject} is already enrolled (entry {product.enrolled_index})")
            return
        star = frozenset(process.states) - {process.initial_state}
        if product.state not in step.from_states and not any(
            product.state in s.from_states for s in process.steps.values() if s.from_states != star
        ):
            self.refuse(
                f"{step.title} is not allowed: this product is at '{product.state}', "
                "where its chain ends"
            )
            return
        done = product.steps.get(step.name)
        if done and not step.repeatable:
            self.refuse(f"'{step.title}' was already recorded for this product (entry {done[0]})")
            return
        missing = [r for r in step.requires if not product.completed(r)]
        if missing:
            need = " and ".join(_mid(process.steps[r].title) for r in missing)
            self.refuse(f"{step.title} needs {need} first; this product is at '{product.state}'")
            return
        if product.state in step.from_states:
            return
        leading = [
            s
            for s in process.steps.values()
            if s.target_states() & step.from_states and not product.completed(s.name)
        ]
        if leading:
            need = " or ".join(_mid(s.title) for s in leading)
            self.refuse(f"{step.title} needs {need} first; this product is at '{product.state}'")
            return
        allowed = ", ".join(s for s in process.states if s in step.from_states)
        self.refuse(
            f"{step.title} is not allowed while this product is at '{product.state}' "
            f"(allowed at: {allowed})"
        )

    # -- what -----------------------------------------------------------------------------------

    def target_item(self, step: StepSpec) -> None:
        raw = self.attempt.item
        item = raw.strip().upper() if raw is not None and raw.strip() else None
        self.item = item
        product = self.product
        if step.item == "none":
            if item is not None:
                self.refuse(f"'{step.title}' is about the whole product; do not name an item")
            return
        if product is None:
            return
        known = ", ".join(sorted(product.items)) or "none yet"
        if item is None:
            if step.item != "optional":
                kind = self.process.items[step.item]
                candidates = sorted(
                    i.id
                    for i in product.items_of(step.item)
                    if not step.item_from or i.status in step.item_from
                )
                which = ", ".join(candidates) if candidates else "none is ready"
                self.refuse(f"'{step.title}' needs the {kind.title} it is about ({which})")
            return
        found = product.items.get(item)
        if found is None:
            self.refuse(f"Item {item} does not belong to {product.coi}; its items: {known}")
            return
        if step.item not in ("optional", found.kind):
            kind = self.process.items[step.item]
            self.refuse(f"'{step.title}' needs a {kind.title}; {item} is a {found.kind} item")
            return
        if step.item_from and found.status not in step.item_from:
            need = " or ".join(sorted(step.item_from))
            self.refuse(f"{item} is '{found.status}'; '{step.title}' needs it {need}")

    def windows(self, step: StepSpec) -> None:
        product = self.product
        if product is None:
            return
        now = self.attempt.now_ms
        for name in step.checked_windows():
            spec = self.process.windows[name]
            if spec.per_item and self.item is None:
                continue
            window = product.windows.get(_window_key(spec, self.item))
            if window is None:
                continue
            started = _mid(self.process.steps[window.started_by].title)
            if window.opens_ms is not None and now < window.opens_ms:
                self.refuse(
                    f"'{step.title}' may not happen before {format_ms(window.opens_ms)} "
                    f"({format_duration(spec.min_ms or 0)} after {started})"
                )
            if now <= window.deadline_ms:
                continue
            closed = (
                f"The {spec.title} window closed at {format_ms(window.deadline_ms)} "
                f"({format_duration(spec.max_ms)} after {started})"
            )
            covering = [
                d
                for d in product.deviations.values()
                if d.window == name
                and d.index > window.start_index
                and (d.item == window.item or not spec.per_item)
            ]
            if any(d.disposition == "proceed" for d in covering):
                continue
            if covering:
                dev = covering[-1]
                if dev.disposition is None:
                    self.breach(f"{closed}; deviation {dev.index} awaits a QA disposition", None)
                else:
                    self.breach(
                        f"{closed}; deviation {dev.index} was dispositioned '{dev.disposition}'",
                        None,
                    )
                continue
            self.breach(
                closed,
                AutoDeviation(
                    subject=product.coi,
                    kind="window_exceeded",
                    description=(
                        f"Opened automatically: {closed}; '{step.title}' was attempted at "
                        f"{format_ms(now)} by {self.attempt.actor.user}"
                    ),
                    window=name,
                    item=window.item,
                ),
            )

    def field_consequences(self, step: StepSpec, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            spec = step.fields.get(name)
            if spec is None or spec.deviation_kind is None or value not in spec.deviation_on:
                continue
            self.consequences.append(
                AutoDeviation(
                    subject=self.attempt.subject,
                    kind=spec.deviation_kind,
                    description=(
                        f"Opened automatically: {spec.title} was '{value}' at '{step.title}' "
                        f"({format_ms(self.attempt.now_ms)}, {self.attempt.actor.user})"
                    ),
                    item=self.item,
                )
            )

    # -- effects --------------------------------------------------------------------------------

    def qc_result(self, step: StepSpec, values: dict[str, Any]) -> None:
        test_name = values.get("test")
        raw_value = values.get("value")
        if not isinstance(test_name, str) or not isinstance(raw_value, str):
            values.pop("value", None)
            return
        test = self.process.qc_tests[test_name]
        try:
            value = _parse_qc_value(test, raw_value)
        except ValueError as exc:
            self.refuse(str(exc))
            return
        values["value"] = value
        if test.unit is not None:
            values["unit"] = test.unit
        result = values.get("result")
        passes = _qc_passes(test, value)
        shown = f"{value} {test.unit}" if test.unit else str(value)
        if result == "pass" and not passes:
            self.refuse(
                f"The {test.title} value {shown} is outside the specification "
                f"({test.specification()}), so the result cannot be 'pass'"
            )
        elif result == "fail" and passes:
            self.refuse(
                f"The {test.title} value {shown} meets the specification "
                f"({test.specification()}), so the result cannot be 'fail'"
            )

    def release_gate(self, step: StepSpec) -> None:
        product = self.product
        if product is None:
            return
        problems: list[str] = []
        for test in self.process.qc_required:
            latest = product.latest_qc(test)
            if latest is None:
                problems.append(f"QC result '{test}' missing")
            elif latest.result != "pass":
                problems.append(f"QC result '{test}' failed (entry {latest.index})")
        for dev in sorted(product.deviations.values(), key=lambda d: d.index):
            if dev.is_open:
                problems.append(f"deviation {dev.index} is open")
            elif dev.disposition == "reject":
                problems.append(f"deviation {dev.index} was dispositioned 'reject'")
        for label in sorted(product.labels.values(), key=lambda lab: lab.id):
            if label.status == "printed":
                problems.append(f"label {label.id} was printed but neither applied nor voided")
        if problems:
            self.refuse("Release blocked: " + "; ".join(problems))

    def separation_of_duties(self, step: StepSpec) -> None:
        product = self.product
        if product is None or not step.independent_of_stages:
            return
        user = self.attempt.actor.user
        verb = "release it" if step.effect == "release" else f"record '{_mid(step.title)}'"
        for other in self.process.steps.values():
            if other.stage not in step.independent_of_stages:
                continue
            if user in product.authors.get(other.name, set()):
                self.refuse(
                    f"Separation of duties: {user} recorded '{_mid(other.title)}' on this "
                    f"product and may not {verb}"
                )
            elif user in product.witnesses.get(other.name, set()):
                self.refuse(
                    f"Separation of duties: {user} witnessed '{_mid(other.title)}' on this "
                    f"product and may not {verb}"
                )

    def bedside(self, step: StepSpec, values: Mapping[str, Any]) -> None:
        product = self.product
        if product is None or self.item is None or self.reasons:
            return
        mismatches: list[str] = []
        if values.get("scanned_coi") != product.coi.strip().upper():
            mismatches.append(
                f"the bag's chain of identity {values.get('scanned_coi')} is not {product.coi}"
            )
        if values.get("scanned_bag") != self.item:
            mismatches.append(f"the bag scanned is {values.get('scanned_bag')}, not {self.item}")
        if values.get("wristband_commitment") != product.patient_commitment:
            mismatches.append("the wristband does not match the patient enrolled for this product")
        if mismatches:
            text = "Bedside verification failed: " + "; ".join(mismatches)
            self.breach(
                text,
                AutoDeviation(
                    subject=product.coi,
                    kind="label_mismatch",
                    description=f"Opened automatically: {text} ({self.attempt.actor.user})",
                    item=self.item,
                ),
            )

    def deviation_ref(self, step: StepSpec, values: Mapping[str, Any]) -> None:
        product = self.product
        number = values.get("deviation")
        if product is None or not isinstance(number, int):
            return
        dev = product.deviations.get(number)
        if dev is None:
            opened = ", ".join(str(d.index) for d in product.open_deviations()) or "none"
            self.refuse(f"There is no deviation {number} on this product (open: {opened})")
        elif not dev.is_open:
            self.refuse(f"Deviation {number} was closed at entry {dev.closed_index}")
        elif step.effect == "deviation_disposition" and dev.disposition is not None:
            self.refuse(
                f"Deviation {number} already has the disposition '{dev.disposition}' "
                f"(entry {dev.disposition_index})"
            )
        elif step.effect == "deviation_close" and dev.disposition is None:
            self.refuse(f"Deviation {number} needs a QA disposition before it can be closed")

    def labels(self, step: StepSpec, values: Mapping[str, Any]) -> None:
        product = self.product
        label_id = values.get("label")
        if product is None or not isinstance(label_id, str):
            return
        label = product.labels.get(label_id)
        effect = step.effect
        if effect in ("label_issue", "label_reprint"):
            if label is not None:
                self.refuse(f"Label {label_id} already exists on this product ({label.status})")
            if effect == "label_reprint":
                old_id = values.get("replaces")
                old = product.labels.get(old_id) if isinstance(old_id, str) else None
                if old is None:
                    self.refuse(f"There is no label {old_id} on this product to reprint")
                elif old.status != "voided":
                    self.refuse(f"Void label {old_id} before reprinting it (it is {old.status})")
            return
        if label is None:
            self.refuse(f"There is no label {label_id} on this product")
            return
        needed = {"label_print": ("issued",), "label_apply": ("printed",)}.get(
            effect, ("issued", "printed", "applied")
        )
        if label.status not in needed:
            self.refuse(
                f"Label {label_id} is {label.status}; '{step.title}' needs it {' or '.join(needed)}"
            )

    def correction(self, step: StepSpec) -> dict[str, Any]:
        """Corrections carry ``corrects`` and ``reason`` plus the corrected fields of the target."""
        attempt, product = self.attempt, self.product
        own = {k: v for k, v in attempt.fields.items() if k in step.fields}
        rest = {k: v for k, v in attempt.fields.items() if k not in step.fields}
        values, reasons = _parse_fields(step, own, attempt.now_ms)
        for reason in reasons:
            self.refuse(reason)
        number = values.get("corrects")
        if product is None or not isinstance(number, int):
            return {}
        target_name = product.entry_steps.get(number)
        if target_name is None:
            self.refuse(f"Entry {number} is not a recorded step of {product.coi}")
            return {}
        target = self.process.steps[target_name]
        if target.effect == "correction":
            original = next(k for k, v in product.corrections.items() if number in v)
            self.refuse(f"Entry {number} is itself a correction; correct entry {original} instead")
            return {}
        release = self.process.step_with_effect("release")
        may = target.roles | (release.roles if release is not None else frozenset())
        if not attempt.actor.roles & may:
            self.refuse(
                f"Only someone who may record '{target.title}' ({_role_words(target.roles)}) "
                f"or {_role_words(may - target.roles) if may - target.roles else 'QA'} may "
                f"correct entry {number}; {attempt.actor.user} has roles: "
                f"{_has_roles(attempt.actor)}"
            )
        if not rest:
            self.refuse(
                f"A correction must give at least one corrected field of '{target.title}' "
                f"({', '.join(n for n, s in target.fields.items() if s.correctable)})"
            )
        corrected: dict[str, Any] = {}
        for name, raw in rest.items():
            spec = target.fields.get(name)
            if spec is None:
                self.refuse(
                    f"'{target.title}' has no field {name!r}; its fields are: "
                    f"{', '.join(target.fields)}"
                )
                continue
            if not spec.correctable:
                self.refuse(
                    f"Field {_field_label(spec)} of '{target.title}' cannot be corrected; "
                    "open a deviation instead"
                )
                continue
            try:
                if spec.type == "qc_value":
                    test_name = product.qc_results[number].test
                    corrected[name] = _parse_qc_value(self.process.qc_tests[test_name], raw)
                else:
                    corrected[name] = _parse_field(spec, raw, attempt.now_ms)
            except ValueError as exc:
                self.refuse(str(exc))
        qc = product.qc_results.get(number)
        if qc is not None and not self.reasons:
            test = self.process.qc_tests[qc.test]
            result = corrected.get("result", qc.result)
            value = corrected.get("value", qc.value)
            if (result == "pass") != _qc_passes(test, value):
                self.refuse(
                    f"After this correction the {test.title} result '{result}' would not agree "
                    f"with its value {value} ({test.specification()})"
                )
        self.field_consequences(target, corrected)
        return {"corrects": number, "reason": values.get("reason"), "values": corrected}


def check(process: Process, chain: ChainState, attempt: Attempt) -> Decision:
    """May ``attempt`` be recorded now? Pure: reads ``chain``, never changes it."""
    step = process.step(attempt.step)
    if step is None:
        return Decision(
            step=attempt.step,
            allowed=False,
            reasons=(f"Unknown step {attempt.step!r}; steps are: {', '.join(process.steps)}",),
        )
    c = _Check(process, chain, attempt)
    c.roles(step)
    c.witness(step)
    c.order(step)
    c.target_item(step)
    if step.effect == "correction":
        return c.decide(step, c.correction(step))
    values, reasons = _parse_fields(step, attempt.fields, attempt.now_ms)
    for reason in reasons:
        c.refuse(reason)
    effect = step.effect
    if effect == "qc_result":
        c.qc_result(step, values)
    elif effect == "release":
        c.release_gate(step)
    elif effect in ("deviation_disposition", "deviation_close"):
        c.deviation_ref(step, values)
    elif effect.startswith("label_"):
        c.labels(step, values)
    c.separation_of_duties(step)
    if not c.reasons:
        c.windows(step)
    if effect == "bedside_verification":
        c.bedside(step, values)
    c.field_consequences(step, values)
    data: dict[str, Any] = dict(values)
    if c.item is not None and step.item != "none":
        data["item"] = c.item
    return c.decide(step, data)


def pending_breaches(chain: ChainState, now_ms: int) -> list[AutoDeviation]:
    """Windows that ran out with nobody attempting the step yet, and no deviation for them.

    The service calls this (e.g. on ``coi status``) and opens the deviations it returns, so a
    product left sitting past its window is visible to QA without anyone trying to move it.
    """
    out: list[AutoDeviation] = []
    process = chain.process
    for coi, product in sorted(chain.products.items()):
        for _key, window in sorted(product.windows.items()):
            if window.ended_index is not None or now_ms <= window.deadline_ms:
                continue
            if any(
                d.window == window.name and d.item == window.item and d.index > window.start_index
                for d in product.deviations.values()
            ):
                continue
            spec = process.windows[window.name]
            started = _mid(process.steps[window.started_by].title)
            out.append(
                AutoDeviation(
                    subject=coi,
                    kind="window_exceeded",
                    description=(
                        f"Opened automatically: the {spec.title} window closed at "
                        f"{format_ms(window.deadline_ms)} ({format_duration(spec.max_ms)} after "
                        f"{started})"
                    ),
                    window=window.name,
                    item=window.item,
                )
            )
    return out


# ------------------------------------------------------------------------------------ replaying


def attempt_from_fact(process: Process, fact: Fact) -> Attempt:
    """The attempt that, checked at ``fact.time_ms``, must produce exactly ``fact.data``."""
    step = process.step_for_entry_type(fact.type)
    if step is None:
        raise ReplayError(f"{fact.type!r} is not a step of the process", index=fact.index)
    if not fact.signers:
        raise ReplayError("the entry has no signer", index=fact.index)
    fields: dict[str, str] = {}
    for key, value in fact.data.items():
        if key == "item" or (step.effect == "qc_result" and key == "unit"):
            continue
        if step.effect == "correction" and key == "values":
            if not isinstance(value, Mapping):
                raise ReplayError("correction values must be an object", index=fact.index)
            for k, v in value.items():
                fields[str(k)] = _as_text(v, fact.index)
            continue
        fields[key] = _as_text(value, fact.index)
    item = fact.data.get("item")
    return Attempt(
        step=step.name,
        subject=fact.subject,
        item=item if isinstance(item, str) else None,
        fields=fields,
        actor=fact.signers[0],
        witness=fact.signers[1] if len(fact.signers) > 1 else None,
        now_ms=fact.time_ms,
    )


def _as_text(value: Any, index: int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ReplayError(f"field value {value!r} is not a string or an integer", index=index)
    return str(value)


def replay(process: Process, facts: Iterable[Fact]) -> ChainState:
    """Rebuild the chain from facts, checking each one against the rules as it was recorded.

    Raises :class:`ReplayError` at the first fact the rules would have refused, or whose data
    differ from what the rules produce from it.
    """
    chain = ChainState(process)
    for fact in facts:
        if process.step_for_entry_type(fact.type) is not None:
            decision = check(process, chain, attempt_from_fact(process, fact))
            if not decision.allowed:
                raise ReplayError("; ".join(decision.reasons), index=fact.index)
            if dict(decision.data) != dict(fact.data):
                raise ReplayError(
                    f"the recorded data of {fact.type} differ from what the process gives",
                    index=fact.index,
                )
        chain.apply(fact)
    return chain
