"""The human-readable copy of an audit bundle as a PDF an auditor files, from the bundle alone.

The same content as the HTML copy (:mod:`coi.export.report`, whose reading of the bundle it
reuses): the verification result and the checkpoint first; then per product its chain in index
order, each entry with the step's title, the date and time in the entry's own time zone with its
UTC offset, every signature with printed name, user id and meaning, the recorded values, and the
corrections beside the entry they correct (the original values stay as recorded); the product's
deviations with their disposition and closure; every QC result in order (failures stay, each
retest names the result it follows and why) and any exceptional release with who released, the
physician's request and justification and QA's dispositions of the OOS deviations, read through
the same functions as the HTML copy so the two cannot disagree; then the key events. A bundle
that does not verify gives a one-page PDF that says so and why, and nothing else. The layout's
building blocks (styles, tables, escaping) are the validation report's
(:mod:`coi.export.validation_pdf`); every value from the bundle is escaped for reportlab's
paragraph markup and set in an embedded TrueType font, a character the font cannot draw shown as
``<U+XXXX>`` as the PDF's legend says (:mod:`coi.export.pdf_text`).
"""

from __future__ import annotations

import base64
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

from coi.export.pdf_text import PdfFont, legend, using
from coi.export.report import (
    Titles,
    _corrects,
    _Row,
    deviation_rows,
    exceptional_releases,
    format_time,
    grouped,
    load_entries,
    qc_results,
)
from coi.export.validation_pdf import _styles, _table, _text
from coi.export.verifier import BundleReport, verify_bundle
from coi.ledger.entry import Statement
from coi.ledger.errors import VerificationError

_OK = colors.HexColor("#1b7f3b").hexval()
_BAD = colors.HexColor("#b00020").hexval()
_WIDTHS = [12 * mm, 38 * mm, 44 * mm, 70 * mm, 68 * mm, 45 * mm]  # landscape A4: 277 mm


class Kinds:
    """Each field's type and unit, from the process definition bundled (timestamps are shown
    as local date-times, quantities with their unit)."""

    def __init__(self, raw: bytes | None) -> None:
        self.fields: dict[tuple[str, str], tuple[str, str]] = {}
        if raw is None:
            return
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
            for step in doc.get("steps", {}).values():
                et = step.get("entry_type")
                for name, spec in step.get("fields", {}).items():
                    if isinstance(et, str) and isinstance(spec, dict):
                        self.fields[(et, name)] = (str(spec.get("type", "")),
                                                   str(spec.get("unit", "")))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
            self.fields = {}

    def shown(self, st: Statement, name: str, v: object, et: str | None = None) -> str:
        kind, unit = self.fields.get((et or st.type, name), ("", ""))
        if kind == "timestamp" and isinstance(v, int) and not isinstance(v, bool):
            return _text(format_time(v, st.tz))
        text = _value(v)
        return f"{text} {_text(unit)}" if unit and kind in ("int", "decimal") else text


def _value(v: object) -> str:
    return _text(v if isinstance(v, str | int) else json.dumps(v, ensure_ascii=False))


def _signatures(st: Statement) -> str:
    out = []
    for n, s in enumerate(st.signers):
        role = "" if n == 0 else " (witness)" if s.meaning == "witnessed" else " (co-signer)"
        out.append(f"{_text(s.name)} ({_text(s.user)}) - <b>{_text(s.meaning)}</b>{role}")
    return "<br/>".join(out)


def _values(st: Statement, titles: Titles, by_index: Mapping[int, _Row], kinds: Kinds
            ) -> str:
    out = []
    target = by_index.get(c) if (c := _corrects(st)) is not None else None
    for k, v in st.data.items():
        if k == "values" and st.type == "correction" and isinstance(v, dict):
            for name, new in v.items():
                old = target.st.data.get(name) if target is not None else None
                ft = titles.fields.get((target.st.type, name), name) if target else name
                et = target.st.type if target else None
                was = (f"{kinds.shown(st, name, old, et)} -&gt; " if old is not None else "")
                out.append(f"{_text(ft)}: {was}<b>{kinds.shown(st, name, new, et)}</b>")
            continue
        out.append(f"{_text(titles.fields.get((st.type, k), k))}: {kinds.shown(st, k, v)}")
    return "<br/>".join(out)


def _when(st: Statement) -> str:
    return _text(format_time(st.time_ms, st.tz))


def _chain_table(rows: list[_Row], titles: Titles, corrections: Mapping[int, list[_Row]],
                 by_index: Mapping[int, _Row], kinds: Kinds, small: Any) -> Any:
    head = ["#", "Step", "Date and time (local)", "Signatures (name, user, meaning)",
            "Recorded values", "Corrections"]
    body: list[list[Any]] = [head]
    for r in rows:
        st = r.st
        notes = [f"Corrected by entry {c.index} ({_when(c.st)}, {_text(c.st.author.name)}): "
                 f"{_values(c.st, titles, by_index, kinds)}. The values here are the original "
                 "ones."
                 for c in corrections.get(r.index, [])]
        if (target := _corrects(st)) is not None:
            notes.append(f"Corrects entry {target}, which stays as recorded")
        body.append([Paragraph(str(r.index), small),
                     Paragraph(f"{_text(titles.steps.get(st.type, st.type))}<br/>"
                               f"<font size=6>{_text(st.type)}</font>", small),
                     Paragraph(_when(st), small), Paragraph(_signatures(st), small),
                     Paragraph(_values(st, titles, by_index, kinds), small),
                     Paragraph("<br/>".join(notes), small)])
    return _table(body, _WIDTHS)


def _deviation_cell(r: _Row | None, titles: Titles, kinds: Kinds, what: str, small: Any
                    ) -> Any:
    if r is None:
        return Paragraph(f'<font color="{_BAD}"><b>no {what} in this bundle</b></font>', small)
    vals = "<br/>".join(f"{_text(titles.fields.get((r.st.type, k), k))}: "
                        f"{kinds.shown(r.st, k, v)}"
                        for k, v in r.st.data.items() if k != "deviation")
    return Paragraph(f"entry {r.index}, {_when(r.st)}<br/>{_signatures(r.st)}<br/>{vals}", small)


def _deviations(chain: list[_Row], titles: Titles, kinds: Kinds, st: Mapping[str, Any]
                ) -> list[Any]:
    rows = deviation_rows(chain)
    if not rows:
        return []
    small = st["small"]
    body: list[list[Any]] = [["Deviation", "Opened", "Disposition", "Closed"]]
    for r, disp, close in rows:
        body.append([Paragraph(f"{r.index}: {_text(r.st.data.get('kind', ''))}", small),
                     _deviation_cell(r, titles, kinds, "opening", small),
                     _deviation_cell(disp, titles, kinds, "disposition", small),
                     _deviation_cell(close, titles, kinds, "closure", small)])
    return [Paragraph("Deviations and their disposition", st["h3"]),
            _table(body, [35 * mm, 80 * mm, 81 * mm, 81 * mm])]


def _qc_history(chain: list[_Row], titles: Titles, kinds: Kinds, st: Mapping[str, Any]
                ) -> list[Any]:
    """Every QC result in ledger order (as :func:`coi.export.report.qc_results` reads them): a
    failure stays, a retest names the result it follows and why it was repeated."""
    results = qc_results(chain, titles)
    if not results:
        return []
    small = st["small"]
    body: list[list[Any]] = [["Entry", "Test", "Result", "Value", "Retest of", "Why repeated",
                              "Signed"]]
    for r, of in results:
        d = r.st.data
        result = d.get("result", "")
        colour = _BAD if result == "fail" else _OK
        unit = f" {_text(d['unit'])}" if isinstance(d.get("unit"), str) else ""
        body.append([Paragraph(str(r.index), small), Paragraph(_text(d.get("test", "")), small),
                     Paragraph(f'<font color="{colour}"><b>{_text(result)}</b></font>', small),
                     Paragraph(f"{_value(d.get('value', ''))}{unit}", small),
                     Paragraph(f"entry {of}" if of is not None else "", small),
                     Paragraph(_text(d.get("retest_reason", "")), small),
                     Paragraph(f"{_signatures(r.st)}<br/>{_when(r.st)}", small)])
    return [Paragraph("QC results (every result; none is ever replaced)", st["h3"]),
            _table(body, [15 * mm, 35 * mm, 20 * mm, 30 * mm, 20 * mm, 67 * mm, 90 * mm])]


def _exceptional(chain: list[_Row], titles: Titles, by_index: Mapping[int, _Row], kinds: Kinds,
                 st: Mapping[str, Any]) -> list[Any]:
    """A release after an OOS result (as :func:`coi.export.report.exceptional_releases` reads
    it): who released, the physician's request and justification, QA's dispositions."""
    small, out = st["small"], []
    for x in exceptional_releases(chain, titles, by_index):
        body: list[list[Any]] = [["", "Entry, date and signatures; recorded values"],
                                 [Paragraph("Released", small),
                                  _deviation_cell(x.release, titles, kinds, "release", small)],
                                 [Paragraph(f"Requested by the treating physician (entry "
                                            f"{x.request_index})", small),
                                  _deviation_cell(x.request, titles, kinds, "request", small)]]
        body += [[Paragraph(f"OOS deviation {d.index}, QA disposition", small),
                  _deviation_cell(disp, titles, kinds, "disposition", small)]
                 for d, disp in x.oos]
        out += [Paragraph(f"Exceptional release (entry {x.release.index})", st["h3"]),
                _table(body, [90 * mm, 187 * mm])]
    return out


def _summary(result: BundleReport, trust: str | None, st: Mapping[str, Any]) -> list[Any]:
    s = st["body"]
    pinned = (" against the trusted site key" if trust else
              " against the key the bundle carries only: compare it with the site's")
    return [
        Paragraph(f'<font color="{_OK}"><b>Verified</b></font>: {result.entries} entries '
                  f"({result.in_scope} in scope, {result.key_events} key events) of log "
                  f"{_text(result.origin)}; signatures, keys by position, hash chain, inclusion "
                  f"in the checkpoint and the manifest all check out{pinned}.", s),
        Paragraph(f"Scope: {_text(json.dumps(dict(result.scope)))}. Log key: "
                  f"{_text(result.log_key)}. Bundle SHA-256: {_text(result.bundle_sha256)}.",
                  st["small"]),
        Paragraph("Checkpoint", st["h2"]),
        Paragraph(f"Tree of {result.tree_size} entries, root "
                  f"{_text(base64.b64encode(result.root).decode())} (base64); "
                  f"{len(result.cosigner_lines)} witness cosignature line(s).", s),
    ]


def story(path: Path, trust: str | None) -> tuple[list[Any], bool]:
    """The PDF's content for the bundle at ``path``, and whether it verified."""
    st = _styles()
    out: list[Any] = [Paragraph("Chain-of-identity audit copy", st["title"]),
                      Paragraph(legend(), st["small"])]
    try:
        result = verify_bundle(path, trust)
    except VerificationError as e:
        out += [Paragraph(f'<font color="{_BAD}"><b>Verification FAILED</b></font>: '
                          f"{_text(e)}", st["body"]),
                Paragraph("Nothing in this bundle can be relied on.", st["body"])]
        return out, False
    out += _summary(result, trust, st)
    rows, process = load_entries(path)
    titles, kinds = Titles.from_toml(process), Kinds(process)
    g = grouped(rows)
    by_index, corrections = g.by_index, g.corrections
    for subject, chain in g.chains:
        out += [Spacer(1, 4 * mm), Paragraph(f"Product {_text(subject)}", st["h2"]),
                _chain_table(chain, titles, corrections, by_index, kinds, st["small"])]
        out += _deviations(chain, titles, kinds, st)
        out += _qc_history(chain, titles, kinds, st)
        out += _exceptional(chain, titles, by_index, kinds, st)
    out += [Paragraph("Key events (who could sign, from which entry)", st["h2"]),
            _chain_table(g.key_events, titles, corrections, by_index, kinds, st["small"])]
    return out, True


def write_report_pdf(bundle: Path, out: Path, trust: str | None = None, *,
                     overwrite: bool = False, font: PdfFont | None = None) -> bool:
    """Render the PDF copy of ``bundle`` to ``out`` atomically (an existing ``out`` is replaced
    only with ``overwrite``) in ``font`` (default: :func:`coi.export.pdf_text.default_font`);
    return whether the bundle verified. ``OSError`` when a file cannot be read or written,
    ``FileExistsError`` when ``out`` exists."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with using(font) as chosen:
        content, ok = story(bundle, trust)
        try:
            doc = SimpleDocTemplate(str(tmp), pagesize=landscape(A4), title="coi audit copy",
                                    leftMargin=10 * mm, rightMargin=10 * mm, topMargin=12 * mm,
                                    bottomMargin=12 * mm, initialFontName=chosen.family)
            doc.build(content)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return ok
