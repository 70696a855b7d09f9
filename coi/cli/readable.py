"""What people read at the command line: ``coi show``'s table and ``coi steps``' field forms.

Times are the site's local time with its zone and UTC offset; field values carry their title
and unit; everything from the ledger passes through ``inert``. Machines use ``--json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from coi.service.text import inert

if TYPE_CHECKING:
    from coi.service.chain import CoiService
    from coi.service.steps import FieldSpec, Process

TIMESTAMP_EXAMPLE = "2026-11-24T08:00Z or 2026-11-24T09:00+01:00"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  "
          ) -> list[str]:
    """Rows aligned under their headers (the last column is left ragged)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        return (indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
                ).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def _number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def field_form(spec: FieldSpec) -> str:
    """What a field takes, in words: its form, allowed values or range, and unit."""
    unit = f" {spec.unit}" if spec.unit else ""
    if spec.type in ("int", "decimal"):
        kind = "whole number" if spec.type == "int" else "decimal number (e.g. 12.5)"
        if spec.min is not None and spec.max is not None:
            return f"{kind}, {_number(spec.min)} to {_number(spec.max)}{unit}"
        if spec.min is not None:
            return f"{kind}, at least {_number(spec.min)}{unit}"
        if spec.max is not None:
            return f"{kind}, at most {_number(spec.max)}{unit}"
        return f"{kind}{unit}".strip()
    if spec.type == "enum":
        return "one of: " + ", ".join(spec.values)
    if spec.type == "timestamp":
        return f"date-time with its zone, e.g. {TIMESTAMP_EXAMPLE}"
    if spec.type == "identifier":
        return "identifier: capital letters, digits and '-'"
    if spec.type == "commitment":
        return ("computed by coi from the wristband (a keyed commitment; never typed): scan "
                "the wristband at the station, or key its patient id as --field wristband=ID "
                "with --witness and --keyed-reason")
    if spec.type == "qc_value":
        return "the QC test's value (see its specification)"
    return f"text, up to {spec.max_length} characters"


def steps_lines(p: Process) -> list[str]:
    out = [f"{p.name} {p.version} (sha256 {p.sha256})"]
    for name, s in p.steps.items():
        extra = " +witness" if s.witness else ""
        extra += f" +{s.second_scan} scan" if s.second_scan else ""
        out.append(f"{name:<26} {s.title} — by {', '.join(sorted(s.roles))}{extra}")
        for fname, f in s.fields.items():
            how = "required" if f.required else "optional"
            if f.scanned:
                how += ", filled from the scans at a station"
            out.append(f"    {fname:<26} {field_form(f)}  [{how}]")
    return out


def _details(svc: CoiService, entry_type: str, data: dict[str, Any]) -> list[str]:
    """An entry's data as ``title: value unit`` (timestamps as local time with the zone)."""
    from coi.service.views import field_shown

    spec = svc.process().step_for_entry_type(entry_type)
    parts = []
    for k, v in sorted(data.items()):
        if k == "patient_commitment":
            continue
        f = spec.fields.get(k) if spec is not None else None
        if f is None:
            parts.append(f"{inert(k)}: {inert(v)}")
            continue
        unit = f" {f.unit}" if f.unit and f.type != "timestamp" else ""
        parts.append(f"{inert(f.title)}: {inert(field_shown(svc, f, v))}{unit}")
    return parts


def show_lines(svc: CoiService, view: dict[str, Any]) -> list[str]:
    """``coi show``: the product's state, its timeline as a table, then deviations."""
    st = view["state"] or {}
    out = [f"{inert(view['coi'])}  state: {inert(st.get('state', '?'))}  "
           f"(times in {inert(svc.tz())})"]
    rows = []
    details: dict[int, list[str]] = {}
    for n, t in enumerate(view["timeline"]):
        sig = "✓" if t["signature_ok"] else "✗ INVALID"
        step = inert(t["step"])
        if t["corrected_by"]:
            step += f" (corrected by {', '.join(map(str, t['corrected_by']))})"
        signers = "; ".join(f"{inert(s['name'])} ({inert(s['user'])}, {inert(s['meaning'])})"
                            for s in t["signers"])
        rows.append([f"#{t['index']}", inert(t["time_local"]), step, sig, signers])
        details[n] = _details(svc, t["type"], t["data"])
        keyed = [k for k, m in (t["data"].get("entry") or {}).items() if m == "keyed"]
        if keyed:
            details[n].insert(0, f"KEYED BY HAND, not scanned: {inert(', '.join(keyed))} "
                                 f"(reason: {inert(t['data'].get('keyed_reason') or '-')})")
    lines = table(["Entry", "Local time", "Step", "Sig", "Signed by (user, meaning)"], rows)
    out.extend(lines[:2])
    pad = " " * (len(lines[0]) - len(lines[0].lstrip()) + 2)
    for n, line in enumerate(lines[2:]):
        out.append(line)
        for d in details[n]:
            out.append(f"{pad}  {d}")
    if st.get("items"):
        out.append("  items: " + ", ".join(f"{inert(k)}={inert(v['status'])}"
                                          for k, v in st["items"].items()))
    for idx, d in st.get("deviations", {}).items():
        state = "OPEN" if d["closed_index"] is None else f"closed at #{d['closed_index']}"
        out.append(f"  deviation #{inert(idx)}: {inert(d['kind'])} — {inert(d['description'])} "
                   f"[{state}; disposition {inert(d['disposition'] or '-')}]")
    for q in view.get("qc_history", []):
        retest = (f" (retest of {q['retest_of']}: {inert(q.get('retest_reason') or '')})"
                  if q.get("retest_of") is not None else "")
        out.append(f"  QC #{q['index']}: {inert(q['test'])} {inert(q['result']).upper()} "
                   f"{inert(q['value'])}{' ' + inert(q['unit']) if q.get('unit') else ''}"
                   f"{retest}")
    for x in view.get("exceptional_releases", []):
        out.append(f"  EXCEPTIONAL RELEASE at entry {x['release']} by "
                   f"{_who(x['released_by'])}; requested at entry {x['request']} by "
                   f"{_who(x['requested_by'])}: {inert(x['justification'] or '')}; QA's "
                   f"dispositions: {_dispositions(x['oos_dispositions'])}")
    labels = st.get("labels", {})
    if labels:
        out.append("  labels: " + ", ".join(f"{inert(k)}={inert(v['status'])}"
                                           for k, v in labels.items()))
    return out


def _who(signers: list[dict[str, Any]]) -> str:
    return "; ".join(f"{inert(s['name'])} ({inert(s['user'])}, {inert(s['meaning'])})"
                     for s in signers)


def _dispositions(oos: list[dict[str, Any]]) -> str:
    """QA's disposition of each OOS deviation, with who gave it and why, on one line."""
    if not oos:
        return "none recorded"
    return "; ".join(
        f"OOS deviation #{inert(d['deviation'])} {inert(d['disposition'] or 'none recorded')}"
        + (f" at entry {inert(d['at'])} by {_who(d.get('by') or [])}: "
           f"{inert(d.get('rationale') or '')}" if d.get("at") is not None else "")
        for d in oos)
