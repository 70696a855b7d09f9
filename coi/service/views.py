"""Read-only views for the terminal UI: what a scan station expects, product pages, gates.

Owns no rule of its own: every judgement here is the domain's (``coi.domain.check.check`` run
on the current chain, without recording anything) or a plain reading of the process definition
and the product_state table. The UI shows these; ``CoiService.record`` still decides.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from coi.db.chain_repo import WINDOW_FILTERS
from coi.domain.check import check
from coi.domain.facts import Attempt, Signer
from coi.domain.messages import format_duration
from coi.domain.payload import ITEM_KINDS
from coi.domain.process import FieldSpec, Process, StepSpec
from coi.domain.scan import CoiIdScan, LabelScan, Scan
from coi.domain.state import ProductState
from coi.service.chain import SOON_MS, CoiService
from coi.service.errors import Refused
from coi.service.label_codes import parse_label_code
from coi.service.windows import live_windows

FILTERS = WINDOW_FILTERS
ORDERS = ("coi", "state", "deadline", "deviations", "recent")
_FIELD_REASON = re.compile(r"(Field |'[^']*' (needs the field|has no field|needs a witness)).*",
                           re.DOTALL)


@dataclass(frozen=True)
class ScanTarget:
    """What the first scan at a station names: a product and perhaps one of its items."""

    coi: str
    item: str | None
    kind: str  # "label" or "coi_id"


def scan_target(scan: Scan) -> ScanTarget | None:
    """The product a scan names, or None when the scan names no product (a DIN, a code)."""
    if isinstance(scan, LabelScan):
        return ScanTarget(scan.label.coi, scan.label.item, "label")
    if isinstance(scan, CoiIdScan):
        return ScanTarget(scan.coi_id.text, None, "coi_id")
    return None


def item_for_step(spec: StepSpec, item: str | None) -> str | None:
    """The item to name when recording ``spec``: none for whole-product steps."""
    if spec.item == "none" or item is None:
        return None
    if item[:1] in ("D", "W"):  # paperwork and wristbands are not items of the product
        return None
    return item


def arrival_problem(svc: CoiService, step: str, target: ScanTarget) -> str | None:
    """At the receipt after a hand-off, why the bag scanned is not one the partner shipped
    (the ``items`` of the hand-off that brought the product), or None. Records nothing."""
    if target.item is None:
        return None
    code = parse_label_code(target.item)
    item = code.item if code is not None else target.item
    for e in svc.expected_at(step, coi=target.coi):
        items = e.get("items")
        if e.get("coi") == target.coi and isinstance(items, list) and item not in items:
            return (f"{item} is not a bag {e.get('from')} shipped with this hand-off (it "
                    f"shipped {', '.join(map(str, items))}): keep it apart and ask the partner")
    return None


def station_steps(process: Process, roles: Iterable[str]) -> list[StepSpec]:
    """Steps a person with ``roles`` may author, in process order (enrolment has its own form)."""
    have = set(roles)
    return [s for s in process.steps.values()
            if s.roles & have and s.name != "enrolment" and s.effect != "correction"]


_OFF_THE_MAIN_LINE = frozenset({"final", "exceptional_release_request"})


def expected_next(process: Process, product: ProductState | None) -> list[str]:
    """Titles of the main-line steps the product's state leads to (what to expect next)."""
    if product is None:
        return [s.title for s in process.steps.values() if process.initial_state in s.from_states]
    star = frozenset(process.states) - {process.initial_state}
    out = []
    for s in process.steps.values():
        if s.from_states == star or product.state not in s.from_states:
            continue
        if s.effect in _OFF_THE_MAIN_LINE:  # possible from many states, expected from none
            continue
        if any(not product.completed(r) for r in s.requires):
            continue
        if product.completed(s.name) and not s.repeatable:
            continue
        out.append(s.title)
    return out


def window_left(svc: CoiService, product: ProductState | None, now_ms: int
                ) -> tuple[str, int] | None:
    """The live window closing first: (title, milliseconds left; negative when exceeded)."""
    windows = windows_left(svc, product, now_ms)
    return windows[0] if windows else None


def windows_left(svc: CoiService, product: ProductState | None, now_ms: int
                 ) -> list[tuple[str, int]]:
    """Every live window (one the product can still be inside: ``coi.service.windows``),
    closing first first: (title, milliseconds left; negative when exceeded)."""
    if product is None:
        return []
    process = svc.process()
    out = []
    for w in sorted(live_windows(process, product), key=lambda w: w.deadline_ms):
        title = process.windows[w.name].title + (f" ({w.item})" if w.item else "")
        out.append((title, w.deadline_ms - now_ms))
    return out


def format_left(ms: int) -> str:
    """``5 h 03 min left`` or ``exceeded by 2 h 10 min``."""
    span = abs(ms) // 60_000
    d, rest = divmod(span, 24 * 60)
    h, m = divmod(rest, 60)
    text = (f"{d} d {h} h" if d else f"{h} h {m:02d} min" if h else f"{m} min")
    return f"{text} left" if ms >= 0 else f"exceeded by {text}"


def precheck(svc: CoiService, step: str, coi: str, *, user: str, item: str | None,
             fields: Mapping[str, str] | None = None) -> list[str]:
    """Why ``step`` cannot be recorded for ``coi`` by ``user`` whatever the other fields say.

    The domain's own check, run on the current chain with ``fields`` (none by default) and no
    witness; reasons about the fields or the witness still to be entered are left out. Nothing
    is recorded.
    """
    process = svc.process()
    reg = svc.ledger.registry()
    rec = reg.user(user)
    if rec is None:
        return [f"{user} is not enrolled"]
    actor = Signer(user=user, name=rec.name, meaning="authored", roles=rec.roles)
    attempt = Attempt(step=step, subject=coi, item=item, fields=dict(fields or {}), actor=actor,
                      witness=None, now_ms=svc.clock.now_ms())
    decision = check(process, svc.chain(), attempt)
    return [r for r in decision.reasons if not _FIELD_REASON.fullmatch(r)]


def scanned_values(spec: StepSpec, target: ScanTarget, *, paperwork: str | None,
                   wristband: str | None) -> dict[str, str]:
    """The step's ``scanned`` fields, filled from the scans (the service commits the wristband).

    The process marks which fields a station fills (``scanned = true``) and which second
    identifier it asks for (``second_scan``); the names say what each one holds.
    """
    out: dict[str, str] = {}
    for f in spec.fields.values():
        if not f.scanned:
            continue
        if f.name == "scanned_coi":
            out[f.name] = target.coi
        elif f.name == "scanned_bag":
            out[f.name] = target.item or ""
        elif f.name == "wristband_commitment":
            out["wristband"] = wristband or ""
        elif f.name == "paperwork" and paperwork:
            out[f.name] = paperwork
    return out


def compare_second(first: ScanTarget, kind: str, scan: Scan) -> str | None:
    """Compare the second identifier with the first scan; the mismatch in words, or None."""
    if kind != "paperwork":
        return None
    if not isinstance(scan, LabelScan):
        return "the paperwork scan is not a coi shipping-document label"
    lab = scan.label
    if lab.item[:1] != "D":
        return (f"the second scan is a {ITEM_KINDS.get(lab.item[:1], 'label')} ({lab.item}), "
                "not the shipping document")
    if lab.coi != first.coi:
        return f"the paperwork is for {lab.coi}, but the bag is {first.coi}"
    return None


def wristband_text(raw: str) -> str:
    """The patient identifier a wristband scan carries: suffix and AIM prefix removed."""
    text = raw.rstrip("\r\n\t").strip(" ")
    if re.fullmatch(r"\][A-Za-z][0-9A-Za-z].*", text, re.DOTALL):
        text = text[3:]
    return text


def product_page(svc: CoiService, *, state: str | None = None, search: str | None = None,
                 flt: str = "all", order: str = "coi", limit: int = 100,
                 after: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One page of the products table, filtered by state, window or open deviation; ``after``
    is the previous page's last row (the page starts right after it)."""
    svc.process()
    return svc.store.product_rows(state=state, search=search, window=flt,
                                  now_ms=svc.clock.now_ms(), soon_ms=SOON_MS, limit=limit,
                                  after=after, order=order)


def enrolment_step(process: Process) -> StepSpec:
    """The one step that enrols a product (from the initial state)."""
    return next(s for s in process.steps.values() if process.initial_state in s.from_states)


def first_item(process: Process) -> tuple[StepSpec, str] | None:
    """The step after enrolment that creates the product's first item, and that item's id
    (``C00001``): what a label can first be printed for."""
    after = enrolment_step(process).target_states()
    for s in process.steps.values():
        if s.creates is not None and s.from_states & after:
            return s, f"{process.items[s.creates.kind].prefix}{1:05d}"
    return None


def may_enrol(process: Process, roles: Iterable[str]) -> bool:
    return bool(enrolment_step(process).roles & set(roles))


def may_correct(process: Process, roles: Iterable[str]) -> bool:
    step = process.step_with_effect("correction")
    return step is not None and bool(step.roles & set(roles))


@dataclass(frozen=True)
class CorrectionTarget:
    """An entry a correction may name: its step and each correctable field's value as it stands."""

    coi: str
    index: int
    step: StepSpec
    fields: tuple[tuple[FieldSpec, str], ...]  # (field, current value as text)
    corrected_by: tuple[int, ...]
    shown: tuple[str, ...] = ()  # each field's current value for people (times local, zoned)


def correction_target(svc: CoiService, coi: str, index: int) -> CorrectionTarget:
    """What entry ``index`` of ``coi`` recorded, for a correction form; Refused if none can be.

    The current value is the original's, with every earlier correction applied in order. The
    domain still decides when the correction is recorded (roles, fields, QC consistency).
    """
    shown = svc.show(coi)
    process = svc.process()
    by_index = {t["index"]: t for t in shown["timeline"]}
    entry = by_index.get(index)
    spec = process.step_for_entry_type(entry["type"]) if entry else None
    if entry is None or spec is None:
        raise Refused(f"entry {index} is not a recorded step of {shown['coi']}: pick one "
                      "from the product's timeline")
    if spec.effect == "correction":
        raise Refused(f"entry {index} is itself a correction: correct entry "
                      f"{entry['data'].get('corrects')} instead")
    values = dict(entry["data"])
    for later in entry.get("corrected_by") or ():
        values.update(by_index.get(later, {}).get("data", {}).get("values", {}))
    correctable = [f for f in spec.fields.values() if f.correctable]
    fields = tuple((f, field_text(svc, f, values.get(f.name))) for f in correctable)
    readable = tuple(field_shown(svc, f, values.get(f.name)) for f in correctable)
    if not fields:
        raise Refused(f"'{spec.title}' has no field that can be corrected; open a deviation "
                      "instead")
    return CorrectionTarget(coi=shown["coi"], index=index, step=spec, fields=fields,
                            corrected_by=tuple(entry.get("corrected_by") or ()),
                            shown=readable)


def _is_ms(spec: FieldSpec, value: object) -> bool:
    return spec.type == "timestamp" and isinstance(value, int) and not isinstance(value, bool)


def field_text(svc: CoiService, spec: FieldSpec, value: object) -> str:
    """A recorded value as a person edits it: a timestamp as local ISO time with its UTC
    offset (``2026-11-24T14:51:43.055+01:00``, read back to the same millisecond), not epoch
    milliseconds; anything else as its text."""
    if value is None:
        return ""
    if _is_ms(spec, value):
        assert isinstance(value, int)
        t = dt.datetime.fromtimestamp(value // 1000, svc.tz()).replace(
            microsecond=value % 1000 * 1000)
        return t.isoformat(timespec="milliseconds" if value % 1000 else "seconds")
    return str(value)


def field_shown(svc: CoiService, spec: FieldSpec, value: object) -> str:
    """A recorded value for people to read: a timestamp as the site's local time with its zone."""
    if _is_ms(spec, value):
        assert isinstance(value, int)
        return svc.local_time(value)
    return field_text(svc, spec, value)


def entry_data_shown(svc: CoiService, entry_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """An entry's data with every timestamp field as local time with its zone (for timelines)."""
    spec = svc.process().step_for_entry_type(entry_type)
    if spec is None:
        return data
    return {k: field_shown(svc, spec.fields[k], v) if k in spec.fields else v
            for k, v in data.items()}


def release_blockers(svc: CoiService, coi: str, user: str,
                     physician_request: int | None = None) -> list[str]:
    """Why the release step would be refused now for ``user`` (the gate, roles, duties),
    naming ``physician_request`` when given (an exceptional release after an OOS result)."""
    step = svc.process().step_with_effect("release")
    if step is None:
        return ["this process has no release step"]
    fields = {"physician_request": str(physician_request)} if physician_request is not None \
        else None
    return precheck(svc, step.name, coi, user=user, item=None, fields=fields)


__all__ = ["CorrectionTarget", "FILTERS", "ORDERS", "ScanTarget", "arrival_problem",
           "compare_second", "correction_target", "enrolment_step", "entry_data_shown",
           "expected_next",
           "field_shown", "field_text", "first_item", "format_duration", "format_left",
           "item_for_step", "may_correct", "may_enrol", "precheck", "product_page",
           "release_blockers", "scan_target", "scanned_values", "station_steps", "window_left",
           "windows_left", "wristband_text"]
