"""The human-readable copy of an audit bundle (21 CFR 11.10(b)), rendered from the bundle alone.

Owns turning a bundle file into one self-contained HTML page: the verification result and the
checkpoint first; then per product (the statement's subject) its chain in index order, each
entry with the step's title (from the process definition bundled with it, else the entry type),
the date and time in the entry's time zone with its UTC offset, every signature with printed
name, user id and meaning, and the recorded values; corrections shown beside the entry they
correct (the original is never hidden or altered); deviations with their disposition and
closure; then the key events. Every value from the bundle is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coi.export.verifier import BundleReport, _lines, parse_line, verify_bundle
from coi.ledger import jcs
from coi.ledger.entry import Statement
from coi.ledger.errors import LedgerError, VerificationError
from coi.ledger.registry import KEY_EVENT_TYPES


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def format_time(time_ms: int, tz: str) -> str:
    """``2026-03-01 14:02:11.250 CET (UTC+01:00, Europe/Paris)``; UTC if the zone is unknown."""
    try:
        zone: Any = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone, tz = UTC, f"UTC; unknown zone {tz!r}"
    t = datetime.fromtimestamp(time_ms / 1000, tz=UTC).astimezone(zone)
    off = t.strftime("%z")
    return (f"{t:%Y-%m-%d %H:%M:%S}.{time_ms % 1000:03d} {t.tzname()} "
            f"(UTC{off[:3]}:{off[3:]}, {tz})")


@dataclass
class Titles:
    steps: dict[str, str] = field(default_factory=dict)
    fields: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, raw: bytes | None) -> Titles:
        t = cls()
        if raw is None:
            return t
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
            for step in doc.get("steps", {}).values():
                et = step.get("entry_type")
                if isinstance(et, str):
                    t.steps[et] = str(step.get("title", et))
                    for name, spec in step.get("fields", {}).items():
                        t.fields[(et, name)] = str(spec.get("title", name))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
            return cls()
        return t


@dataclass
class _Row:
    index: int
    st: Statement
    in_scope: bool


def load_entries(path: Path) -> tuple[list[_Row], bytes | None]:
    """The statements of a bundle (already verified) and its process definition, if any."""
    rows: list[_Row] = []
    process: bytes | None = None
    with open(path, "rb") as f:
        for line in _lines(f):
            obj = parse_line(line)
            if obj["kind"] == "process":
                process = base64.b64decode(obj["toml"])
            elif obj["kind"] == "entry":
                st = Statement.from_json(jcs.decode(base64.b64decode(obj["statement"])))
                rows.append(_Row(st.index, st, bool(obj["in_scope"])))
    return rows, process


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}
table{border-collapse:collapse;width:100%;margin-bottom:1.5em}
td,th{border:1px solid #999;padding:.3em .5em;vertical-align:top;text-align:left}
th{background:#eee}.ok{color:#060;font-weight:bold}.bad{color:#a00;font-weight:bold}
.corr{background:#fff4d6}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}
"""


def _signers(st: Statement) -> str:
    return "<br>".join(f"{esc(s.name)} ({esc(s.user)}) &mdash; <b>{esc(s.meaning)}</b>"
                       for s in st.signers)


def _values(st: Statement, titles: Titles) -> str:
    out = []
    for k, v in st.data.items():
        label = titles.fields.get((st.type, k), k)
        shown = v if isinstance(v, str | int) else json.dumps(v, ensure_ascii=False)
        out.append(f"{esc(label)}: <code>{esc(shown)}</code>")
    return "<br>".join(out)


def _entry_row(r: _Row, titles: Titles, corrections: Mapping[int, list[_Row]],
               css: str = "") -> str:
    st = r.st
    title = titles.steps.get(st.type, st.type)
    cells = [f"{r.index}", f"{esc(title)}<br><small><code>{esc(st.type)}</code></small>",
             esc(format_time(st.time_ms, st.tz)), _signers(st), _values(st, titles)]
    notes = []
    for c in corrections.get(r.index, []):
        notes.append(f"Corrected by entry {c.index} ({esc(format_time(c.st.time_ms, c.st.tz))},"
                     f" {esc(c.st.author.name)}): {_values(c.st, titles)}")
    cells.append("<br>".join(notes))
    cls = f' class="{css}"' if css else ""
    return f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


_HEAD = ("<tr><th>#</th><th>Step</th><th>Date and time</th><th>Signatures (printed name, user, "
         "meaning)</th><th>Recorded values</th><th>Corrections</th></tr>")


def render(path: Path, trust: str | None = None) -> tuple[str, bool]:
    """The HTML copy of the bundle at ``path``; the verification result is part of it."""
    result: BundleReport | None = None
    failure: str | None = None
    try:
        result = verify_bundle(path, trust)
    except VerificationError as e:
        failure = str(e)
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>coi audit copy</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>Chain-of-identity audit copy</h1>"]
    if result is None:
        parts.append(f'<p class="bad">Verification FAILED: {esc(failure)}</p>'
                     "<p>Nothing can be relied on.</p></body></html>")
        return "".join(parts), False
    parts.append(
        f'<p class="ok">Verified: {result.entries} entries ({result.in_scope} in scope, '
        f"{result.key_events} key events) of log <code>{esc(result.origin)}</code>; signatures, "
        "keys by position, hash chain, inclusion in the checkpoint and the manifest all check "
        f"out{' against the trusted key' if trust else ''}.</p>"
        f"<p>Scope: <code>{esc(json.dumps(dict(result.scope)))}</code>. Log key: "
        f"<code>{esc(result.log_key)}</code>. Bundle SHA-256: "
        f"<code>{esc(result.bundle_sha256)}</code></p>"
        f"<h2>Checkpoint</h2><p>Tree of {result.tree_size} entries, root "
        f"<code>{esc(result.root.hex())}</code>; {len(result.cosigner_lines)} other signature "
        f"line(s) (witness cosignatures).</p><pre>{esc(result.checkpoint)}</pre>")
    try:
        rows, process = load_entries(path)
    except (OSError, LedgerError, ValueError, KeyError) as e:  # pragma: no cover - verified
        raise VerificationError(f"the bundle changed while it was read: {e}") from None
    titles = Titles.from_toml(process)
    corrections: dict[int, list[_Row]] = {}
    for r in rows:
        if r.st.type == "correction" and isinstance(r.st.data.get("corrects"), int):
            corrections.setdefault(int(r.st.data["corrects"]), []).append(r)
    by_subject: dict[str, list[_Row]] = {}
    for r in rows:
        if r.in_scope and r.st.type not in KEY_EVENT_TYPES:
            by_subject.setdefault(r.st.subject, []).append(r)
    for subject in sorted(by_subject):
        chain = by_subject[subject]
        parts.append(f"<h2>Product {esc(subject)}</h2><h3>Chain</h3><table>{_HEAD}")
        for r in chain:
            parts.append(_entry_row(r, titles, corrections,
                                    "corr" if r.st.type == "correction" else ""))
        parts.append("</table>")
        devs = [r for r in chain if r.st.type.startswith("deviation.")]
        if devs:
            parts.append("<h3>Deviations and their disposition</h3><table>" + _HEAD)
            for r in devs:
                parts.append(_entry_row(r, titles, corrections))
            parts.append("</table>")
            opened: set[object] = {r.index for r in devs if r.st.type == "deviation.open"}
            disposed: set[object] = {r.st.data.get("deviation") for r in devs
                        if r.st.type == "deviation.disposition"}
            for i in sorted(int(str(i)) for i in opened - disposed):
                parts.append(f'<p class="bad">Deviation opened at entry {i} has no disposition '
                             "in this bundle.</p>")
    keys = [r for r in rows if r.st.type in KEY_EVENT_TYPES]
    parts.append(f"<h2>Key events (who could sign, from which entry)</h2><table>{_HEAD}")
    parts.extend(_entry_row(r, titles, corrections) for r in keys)
    parts.append("</table></body></html>")
    return "\n".join(parts), True


def write_report(bundle: Path, out: Path, trust: str | None = None) -> bool:
    """Render and write atomically; return whether the bundle verified."""
    text, ok = render(bundle, trust)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return ok
