"""The human-readable copy of an audit bundle (21 CFR 11.10(b)), rendered from the bundle alone.

Owns turning a bundle file into one self-contained HTML page: the verification result and the
checkpoint first; then per product (the statement's subject) its chain in index order, each
entry with the step's title (from the process definition bundled with it, else the entry type),
the date and time in the entry's time zone with its UTC offset, every signature with printed
name, user id and meaning, and the recorded values; corrections shown beside the entry they
correct (the original is never hidden or altered); deviations with their disposition and
closure; every QC result in order, failures and the retests that follow them included, and an
exceptional release with the physician's request and QA's dispositions of the OOS deviations;
then the key events. Every value from the bundle is HTML-escaped.
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
    effects: dict[str, str] = field(default_factory=dict)  # entry type -> the step's effect

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
                    t.effects[et] = str(step.get("effect", "step"))
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
                # Already verified canonical profile JSON: the standard decoder gives its value.
                st = Statement.from_json(json.loads(base64.b64decode(obj["statement"])))
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
    """Every signature: printed name, user, meaning (witnesses named as such), date and time."""
    when = esc(format_time(st.time_ms, st.tz))
    out = []
    for n, s in enumerate(st.signers):
        role = "" if n == 0 else " (witness)" if s.meaning == "witnessed" else " (co-signer)"
        out.append(f"{esc(s.name)} ({esc(s.user)}) &mdash; <b>{esc(s.meaning)}</b>{role}, "
                   f"signed {when}")
    return "<br>".join(out)


def _shown(v: object) -> str:
    return esc(v if isinstance(v, str | int) else json.dumps(v, ensure_ascii=False))


def _values(st: Statement, titles: Titles, by_index: Mapping[int, _Row] | None = None) -> str:
    out = []
    corrected = _corrects(st)
    target = by_index.get(corrected) if by_index is not None and corrected is not None else None
    for k, v in st.data.items():
        label = titles.fields.get((st.type, k), k)
        if k == "values" and st.type == "correction" and isinstance(v, dict):
            for name, new in v.items():
                old = target.st.data.get(name) if target is not None else None
                ft = titles.fields.get((target.st.type, name), name) if target else name
                was = (f"<code>{_shown(old)}</code> &rarr; " if old is not None else "")
                out.append(f"{esc(ft)}: {was}<code>{_shown(new)}</code>")
            continue
        out.append(f"{esc(label)}: <code>{_shown(v)}</code>")
    return "<br>".join(out)


def _corrects(st: Statement) -> int | None:
    """The index a correction corrects (``data.corrects``), else None."""
    if st.type != "correction":
        return None
    v = st.data.get("corrects")
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return None


@dataclass(frozen=True)
class Grouped:
    """A bundle's rows as both copies (HTML and PDF) lay them out: by index; the corrections
    of each entry; each product's chain (in-scope entries, key events apart), by subject; and
    the key events."""

    by_index: Mapping[int, _Row]
    corrections: Mapping[int, list[_Row]]
    chains: list[tuple[str, list[_Row]]]
    key_events: list[_Row]


def grouped(rows: list[_Row]) -> Grouped:
    """See :class:`Grouped`: the one place the copies' sections are chosen."""
    corrections: dict[int, list[_Row]] = {}
    by_subject: dict[str, list[_Row]] = {}
    for r in rows:
        if (target := _corrects(r.st)) is not None:
            corrections.setdefault(target, []).append(r)
        if r.in_scope and r.st.type not in KEY_EVENT_TYPES:
            by_subject.setdefault(r.st.subject, []).append(r)
    return Grouped({r.index: r for r in rows}, corrections, sorted(by_subject.items()),
                   [r for r in rows if r.st.type in KEY_EVENT_TYPES])


def _entry_row(r: _Row, titles: Titles, corrections: Mapping[int, list[_Row]],
               by_index: Mapping[int, _Row], css: str = "") -> str:
    st = r.st
    title = titles.steps.get(st.type, st.type)
    cells = [f'<a id="e{r.index}"></a>{r.index}',
             f"{esc(title)}<br><small><code>{esc(st.type)}</code></small>",
             esc(format_time(st.time_ms, st.tz)), _signers(st), _values(st, titles, by_index)]
    notes = []
    for c in corrections.get(r.index, []):
        notes.append(f'<span class="corr">Corrected by <a href="#e{c.index}">entry {c.index}'
                     f"</a> ({esc(format_time(c.st.time_ms, c.st.tz))}, {esc(c.st.author.name)}"
                     f"): {_values(c.st, titles, by_index)}</span><br><small>The values recorded "
                     "here are the original ones, unchanged.</small>")
    corrected = _corrects(st)
    if corrected is not None:
        notes.append(f'Corrects <a href="#e{corrected}">entry {corrected}</a>, which stays as '
                     "recorded")
    cells.append("<br>".join(notes))
    cls = f' class="{css}"' if css else ""
    return f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


_HEAD = ("<tr><th>#</th><th>Step</th><th>Date and time</th><th>Signatures (printed name, user, "
         "meaning, when)</th><th>Recorded values</th><th>Corrections</th></tr>")
_DEV_HEAD = ("<tr><th>Deviation</th><th>Opened</th><th>Disposition</th><th>Closed</th></tr>")


def _dev_cell(r: _Row | None, titles: Titles, what: str) -> str:
    if r is None:
        return f'<span class="bad">no {what} in this bundle</span>'
    st = r.st
    signed = "<br>".join(f"{esc(s.name)} ({esc(s.user)}) &mdash; <b>{esc(s.meaning)}</b>"
                         for s in st.signers)
    vals = "<br>".join(f"{esc(titles.fields.get((st.type, k), k))}: <code>{_shown(v)}</code>"
                       for k, v in st.data.items() if k != "deviation")
    return (f'<a href="#e{r.index}">entry {r.index}</a>, '
            f"{esc(format_time(st.time_ms, st.tz))}<br>{signed}<br>{vals}")


def deviation_rows(chain: list[_Row]) -> list[tuple[_Row, _Row | None, _Row | None]]:
    """Each deviation opened, with the first disposition and the first closure naming it."""
    later: dict[tuple[str, int], _Row] = {}
    for r in chain:
        ref = r.st.data.get("deviation")
        if r.st.type in ("deviation.disposition", "deviation.close") and \
                isinstance(ref, int) and not isinstance(ref, bool):
            later.setdefault((r.st.type, ref), r)
    return [(r, later.get(("deviation.disposition", r.index)),
             later.get(("deviation.close", r.index)))
            for r in chain if r.st.type == "deviation.open"]


def _deviations(chain: list[_Row], titles: Titles) -> list[str]:
    """One row per deviation opened: its opening, disposition and closure side by side."""
    rows = deviation_rows(chain)
    if not rows:
        return []
    parts = ["<h3>Deviations and their disposition</h3><table>" + _DEV_HEAD]
    for r, disp, close in rows:
        kind = r.st.data.get("kind", "")
        parts.append(f"<tr><td>{r.index}: {esc(kind)}</td><td>{_dev_cell(r, titles, 'opening')}"
                     f"</td><td>{_dev_cell(disp, titles, 'disposition')}</td>"
                     f"<td>{_dev_cell(close, titles, 'closure')}</td></tr>")
    parts.append("</table>")
    for r, disp, _close in rows:
        if disp is None:
            parts.append(f'<p class="bad">Deviation opened at entry {r.index} has no '
                         "disposition in this bundle.</p>")
    return parts


def _of(chain: list[_Row], titles: Titles, effect: str) -> list[_Row]:
    return [r for r in chain if titles.effects.get(r.st.type) == effect]


def qc_results(chain: list[_Row], titles: Titles) -> list[tuple[_Row, int | None]]:
    """Every QC result in ledger order with the index of the result it retests (or None): a
    failure stays, a retest names the one it follows. The HTML and PDF copies both read this."""
    out = []
    for r in _of(chain, titles, "qc_result"):
        of = r.st.data.get("retest_of")
        out.append((r, of if isinstance(of, int) and not isinstance(of, bool) else None))
    return out


@dataclass(frozen=True)
class ExceptionalRelease:
    """A release after an OOS result: the release, the physician's request it names (None when
    the bundle lacks it) and each OOS deviation with QA's first disposition of it (or None)."""

    release: _Row
    request_index: int
    request: _Row | None
    oos: tuple[tuple[_Row, _Row | None], ...]


def exceptional_releases(chain: list[_Row], titles: Titles, by_index: Mapping[int, _Row]
                         ) -> list[ExceptionalRelease]:
    """Every release of the chain that names a physician's request, with QA's dispositions of
    the chain's OOS deviations. The HTML and PDF copies both read this."""
    out = []
    for r in _of(chain, titles, "release"):
        ref = r.st.data.get("physician_request")
        if isinstance(ref, bool) or not isinstance(ref, int):
            continue
        oos = tuple((d, next((x for x in chain if x.st.type == "deviation.disposition"
                              and x.st.data.get("deviation") == d.index), None))
                    for d in chain if d.st.type == "deviation.open"
                    and d.st.data.get("kind") == "oos_result")
        out.append(ExceptionalRelease(r, ref, by_index.get(ref), oos))
    return out


def _qc_history(chain: list[_Row], titles: Titles) -> list[str]:
    """Every QC result in ledger order: a failure stays, a retest names the one it follows."""
    results = qc_results(chain, titles)
    if not results:
        return []
    parts = ["<h3>QC results (every result; none is ever replaced)</h3><table><tr><th>Entry"
             "</th><th>Test</th><th>Result</th><th>Value</th><th>Retest of</th><th>Why "
             "repeated</th><th>Signed</th></tr>"]
    for r, of in results:
        d = r.st.data
        result = d.get("result", "")
        css = "bad" if result == "fail" else "ok"
        unit = f" {d['unit']}" if isinstance(d.get("unit"), str) else ""
        link = f'<a href="#e{of}">entry {of}</a>' if of is not None else ""
        parts.append(f'<tr><td><a href="#e{r.index}">{r.index}</a></td><td>'
                     f"{esc(d.get('test', ''))}</td><td class=\"{css}\">{esc(result)}</td>"
                     f"<td>{esc(d.get('value', ''))}{esc(unit)}</td><td>{link}</td>"
                     f"<td>{esc(d.get('retest_reason', ''))}</td><td>{_signers(r.st)}</td></tr>")
    parts.append("</table>")
    return parts


def _exceptional(chain: list[_Row], titles: Titles, by_index: Mapping[int, _Row]) -> list[str]:
    """A release after an OOS result: the physician's request and QA's dispositions."""
    parts: list[str] = []
    for x in exceptional_releases(chain, titles, by_index):
        r = x.release
        parts.append(f'<h3>Exceptional release (entry <a href="#e{r.index}">{r.index}</a>)'
                     f"</h3><p>Released by {_signers(r.st)}</p>")
        parts.append("<p>Requested by the treating physician: "
                     f"{_dev_cell(x.request, titles, 'request')}</p>")
        for d, disp in x.oos:
            parts.append(f"<p>OOS deviation {d.index}, QA disposition: "
                         f"{_dev_cell(disp, titles, 'disposition')}</p>")
    return parts


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
        f"<code>{esc(base64.b64encode(result.root).decode())}</code> (base64, as in the "
        f"checkpoint); {len(result.cosigner_lines)} other signature "
        f"line(s) (witness cosignatures).</p><pre>{esc(result.checkpoint)}</pre>")
    try:
        rows, process = load_entries(path)
    except (OSError, LedgerError, ValueError, KeyError) as e:  # pragma: no cover - verified
        raise VerificationError(f"the bundle changed while it was read: {e}") from None
    titles = Titles.from_toml(process)
    g = grouped(rows)
    by_index, corrections = g.by_index, g.corrections
    for subject, chain in g.chains:
        parts.append(f"<h2>Product {esc(subject)}</h2><h3>Chain</h3><table>{_HEAD}")
        for r in chain:
            parts.append(_entry_row(r, titles, corrections, by_index,
                                    "corr" if r.st.type == "correction" else ""))
        parts.append("</table>")
        parts.extend(_deviations(chain, titles))
        parts.extend(_qc_history(chain, titles))
        parts.extend(_exceptional(chain, titles, by_index))
    parts.append(f"<h2>Key events (who could sign, from which entry)</h2><table>{_HEAD}")
    parts.extend(_entry_row(r, titles, corrections, by_index) for r in g.key_events)
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
