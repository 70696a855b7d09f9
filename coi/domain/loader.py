"""Loading a process definition: TOML bytes to a validated :class:`~coi.domain.process.Process`.

Owns the entry points (:func:`load_process`, :func:`parse_process`, the shipped definitions and
:func:`shipped_for`, which finds the one a ledger's genesis names by hash), the reading of the
document's head, item kinds, windows and QC tests, and the checks that span steps (distinct entry
types, no ``requires`` cycle, the effects the rules need, one enrolling step, every state
reachable, deviation kinds the rules open). Each step is read by :mod:`coi.domain.loader_steps`.

A bad definition is refused with a :class:`~coi.domain.errors.ProcessError` naming the file and
the key at fault, so a definition that loads is one the rules can enforce without further checks.
No I/O beyond reading the definition's file.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from coi.domain.errors import ProcessError
from coi.domain.loader_reader import Reader
from coi.domain.loader_steps import Names, read_step
from coi.domain.process import EFFECTS, ItemKindSpec, Process, QcTestSpec, StepSpec, WindowSpec

__all__ = ["SHIPPED", "load_process", "parse_process", "shipped_for", "shipped_source"]

# The definitions this coi ships: the current one first, then earlier versions that ledgers
# created with them still run (a ledger keeps the definition its genesis names, by hash).
SHIPPED = ("car_t.toml", "car_t-1.1.0.toml", "car_t-1.0.0.toml")
# autologous-car-t 1.0.0 predates `second_scan` and `scanned`; the scan station applied these to
# it, and still does (the bytes, and so the hash in force, stay as they were).
_UNDECLARED_1_0_0 = "bff636bafac5256e3792b8a1bb24ffac9d0aef12a5989ee41d7db05fe160f3cc"
_STATION_1_0_0: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "receipt_at_manufacturing": ("paperwork", ()),
    "receipt_at_treatment": ("paperwork", ()),
    "bedside_verification": ("wristband", ("scanned_coi", "scanned_bag", "wristband_commitment")),
}
# Effects the state machine cannot work without, and effects that may appear at most once.
_REQUIRED_EFFECTS = ("deviation_open", "deviation_disposition", "deviation_close", "correction")
_SINGLE_EFFECTS = EFFECTS - {"step", "final"}
_PREFIX = re.compile(r"[A-Z]")


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
    return read_document(Reader(origin), doc, sha256)


# ------------------------------------------------------------------------------- the document


def read_document(r: Reader, doc: Mapping[str, Any], sha256: str) -> Process:
    """The whole parsed document; ``sha256`` is the hash of the bytes it was parsed from."""
    r.only_keys(doc, {"process", "items", "windows", "qc", "steps"}, "top level")
    head = r.table(doc, "process", "")
    r.only_keys(head, {"name", "version", "title", "roles", "states"}, "process")
    roles = r.strings(head, "roles", "process")
    if not roles:
        raise r.fail("process.roles", "at least one role is required")
    states = r.strings(head, "states", "process")
    if len(states) < 2:
        raise r.fail("process.states", "at least an initial and one further state needed")
    for state in states:
        r.name(state, "process.states")
    items = _items(r, r.table(doc, "items", ""))
    windows = _windows(r, r.table(doc, "windows", ""))
    qc_tests, qc_required = _qc(r, r.table(doc, "qc", ""))
    names = Names(frozenset(roles), frozenset(states), states[0], items, windows, qc_tests)
    steps = {
        name: read_step(r, name, body, names) for name, body in r.table(doc, "steps", "").items()
    }
    process = Process(
        name=r.string(head, "name", "process"),
        version=r.string(head, "version", "process"),
        title=r.string(head, "title", "process", default=head.get("name")),
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
    _cross_checks(r, process)
    return process


def _items(r: Reader, doc: Mapping[str, Any]) -> dict[str, ItemKindSpec]:
    out: dict[str, ItemKindSpec] = {}
    prefixes: set[str] = set()
    for name, body in doc.items():
        where = f"items.{r.name(name, 'items')}"
        if not isinstance(body, dict):
            raise r.fail(where, "a table is required")
        r.only_keys(body, {"title", "prefix"}, where)
        prefix = r.string(body, "prefix", where)
        if _PREFIX.fullmatch(prefix) is None:
            raise r.fail(f"{where}.prefix", "one uppercase letter is required")
        if prefix in prefixes:
            raise r.fail(f"{where}.prefix", f"{prefix!r} is used by another item kind")
        prefixes.add(prefix)
        out[name] = ItemKindSpec(name, r.string(body, "title", where), prefix)
    if not out:
        raise r.fail("items", "at least one item kind is required")
    return out


def _windows(r: Reader, doc: Mapping[str, Any]) -> dict[str, WindowSpec]:
    out: dict[str, WindowSpec] = {}
    for name, body in doc.items():
        where = f"windows.{r.name(name, 'windows')}"
        if not isinstance(body, dict):
            raise r.fail(where, "a table is required")
        r.only_keys(body, {"title", "min", "max", "per_item"}, where)
        max_ms = r.duration(body, "max", where)
        if max_ms is None:
            raise r.fail(f"{where}.max", "a maximum duration is required")
        min_ms = r.duration(body, "min", where)
        if min_ms is not None and min_ms >= max_ms:
            raise r.fail(f"{where}.min", "must be shorter than max")
        out[name] = WindowSpec(
            name=name,
            title=r.string(body, "title", where),
            max_ms=max_ms,
            min_ms=min_ms,
            per_item=r.boolean(body, "per_item", where, False),
        )
    return out


def _qc(r: Reader, doc: Mapping[str, Any]) -> tuple[dict[str, QcTestSpec], tuple[str, ...]]:
    r.only_keys(doc, {"required", "tests"}, "qc")
    tests = {name: _qc_test(r, name, body) for name, body in r.table(doc, "tests", "qc.").items()}
    required = r.strings(doc, "required", "qc")
    for name in required:
        if name not in tests:
            raise r.fail("qc.required", f"unknown test {name!r}")
    return tests, required


def _qc_test(r: Reader, name: str, body: Any) -> QcTestSpec:
    where = f"qc.tests.{r.name(name, 'qc.tests')}"
    if not isinstance(body, dict):
        raise r.fail(where, "a table is required")
    r.only_keys(body, {"title", "type", "unit", "values", "pass_values", "min", "max"}, where)
    kind = r.string(body, "type", where)
    values: tuple[str, ...] = ()
    pass_values: tuple[str, ...] = ()
    low: int | Decimal | None = None
    high: int | Decimal | None = None
    if kind == "enum":
        values = r.strings(body, "values", where)
        pass_values = r.strings(body, "pass_values", where)
        if not values or not pass_values or not set(pass_values) <= set(values):
            raise r.fail(where, "pass_values must be a non-empty subset of values")
    elif kind == "int":
        low, high = r.integer(body, "min", where), r.integer(body, "max", where)
    elif kind == "decimal":
        low, high = r.decimal(body, "min", where), r.decimal(body, "max", where)
    else:
        raise r.fail(f"{where}.type", "must be int, decimal or enum")
    if low is not None and high is not None and low > high:
        raise r.fail(where, "min is greater than max")
    unit = body.get("unit")
    if unit is not None and (not isinstance(unit, str) or not unit):
        raise r.fail(f"{where}.unit", "a non-empty string is required")
    return QcTestSpec(
        name=name,
        title=r.string(body, "title", where),
        type=kind,
        unit=unit,
        values=values,
        pass_values=pass_values,
        min=low,
        max=high,
    )


# ---------------------------------------------------------------------- checks across steps


def _cross_checks(r: Reader, process: Process) -> None:
    steps = process.steps
    if not steps:
        raise r.fail("steps", "at least one step is required")
    _entry_types_and_requires(r, steps)
    _no_requires_cycle(r, steps)
    _effects(r, steps)
    _qc_history(r, steps)
    _enrolment_and_reach(r, process)
    stages = {s.stage for s in steps.values()}
    for step in steps.values():
        for stage in step.independent_of_stages:
            if stage not in stages:
                raise r.fail(f"steps.{step.name}.independent_of_stages", f"{stage!r}?")
    for window in process.windows.values():
        if not any(window.name in s.starts for s in steps.values()):
            raise r.fail(f"windows.{window.name}", "no step starts this window")
    _deviation_kinds(r, steps)


def _entry_types_and_requires(r: Reader, steps: Mapping[str, StepSpec]) -> None:
    seen_types: dict[str, str] = {}
    for step in steps.values():
        if step.entry_type in seen_types:
            raise r.fail(
                f"steps.{step.name}.entry_type",
                f"{step.entry_type!r} is also used by {seen_types[step.entry_type]!r}",
            )
        seen_types[step.entry_type] = step.name
        for req in step.requires:
            if req not in steps or req == step.name:
                raise r.fail(f"steps.{step.name}.requires", f"unknown step {req!r}")


def _no_requires_cycle(r: Reader, steps: Mapping[str, StepSpec]) -> None:
    """``requires`` must not form a cycle (a step on it could never be recorded)."""
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise r.fail("steps", f"requires forms a cycle: {' -> '.join(path + (name,))}")
        state[name] = 1
        for req in steps[name].requires:
            visit(req, path + (name,))
        state[name] = 2

    for name in steps:
        visit(name, ())


def _effects(r: Reader, steps: Mapping[str, StepSpec]) -> None:
    for effect in _REQUIRED_EFFECTS:
        if not any(s.effect == effect for s in steps.values()):
            raise r.fail("steps", f"a step with effect {effect!r} is required")
    for effect in _SINGLE_EFFECTS:
        having = [s.name for s in steps.values() if s.effect == effect]
        if len(having) > 1:
            raise r.fail("steps", f"effect {effect!r} is used by {', '.join(having)}")


def _qc_history(r: Reader, steps: Mapping[str, StepSpec]) -> None:
    """A retest names the result it follows (``retest_of``, an optional int) and why
    (``retest_reason``); an exceptional-release request is named by the release
    (``physician_request``, an optional int)."""
    qc = next((s for s in steps.values() if s.effect == "qc_result"), None)
    if qc is not None and ("retest_of" in qc.fields or "retest_reason" in qc.fields):
        of, why = qc.fields.get("retest_of"), qc.fields.get("retest_reason")
        if of is None or of.type != "int" or of.required or of.correctable:
            raise r.fail(f"steps.{qc.name}.fields.retest_of",
                         "an optional int field that cannot be corrected")
        if why is None or why.type != "text" or why.required:
            raise r.fail(f"steps.{qc.name}.fields.retest_reason", "an optional text field")
    if any(s.effect == "exceptional_release_request" for s in steps.values()):
        release = next((s for s in steps.values() if s.effect == "release"), None)
        named = release.fields.get("physician_request") if release is not None else None
        if named is None or named.type != "int" or named.required or named.correctable:
            raise r.fail("steps", "an exceptional-release request needs a release step with an "
                                  "optional, uncorrectable int field 'physician_request'")


def _enrolment_and_reach(r: Reader, process: Process) -> None:
    """Exactly one step enrols (from the initial state, to a state); every state is reached."""
    steps, initial = process.steps, process.initial_state
    creators = [s for s in steps.values() if initial in s.from_states]
    if len(creators) != 1:
        raise r.fail("steps", f"exactly one step must start from {initial!r} (enrolment)")
    if creators[0].to_state is None or creators[0].item != "none":
        raise r.fail(f"steps.{creators[0].name}", "the enrolling step must set to_state")
    reachable = {initial}
    for step in steps.values():
        reachable |= step.target_states()
    unreachable = [s for s in process.states if s not in reachable]
    if unreachable:
        raise r.fail("process.states", f"no step leads to {', '.join(unreachable)}")


def _deviation_kinds(r: Reader, steps: Mapping[str, StepSpec]) -> None:
    """The kinds the rules open by themselves, and every kind a field's value opens, exist."""
    opener = next(s for s in steps.values() if s.effect == "deviation_open")
    kinds = set(opener.fields["kind"].values)
    if "window_exceeded" not in kinds:
        raise r.fail("steps", "deviation kinds must include 'window_exceeded'")
    for step in steps.values():
        for fspec in step.fields.values():
            if fspec.deviation_kind is not None and fspec.deviation_kind not in kinds:
                raise r.fail(
                    f"steps.{step.name}.fields.{fspec.name}.deviation_kind",
                    f"{fspec.deviation_kind!r} is not a deviation kind",
                )
    if "label_mismatch" not in kinds and any(
        s.effect == "bedside_verification" for s in steps.values()
    ):
        raise r.fail("steps", "deviation kinds must include 'label_mismatch'")
