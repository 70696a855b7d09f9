"""The validation report as a PDF a site files: rendered from ``validation.json`` alone.

Owns the layout (reportlab's platypus): the result first (PASSED, FAILED or PARTIAL, and why),
the system (coi and Python versions, host, executor, date with time zone, the database), the
installation qualification's checks, then every requirement with its clause, its outcome and
its tests with theirs, then the deviations. Every value from the report is escaped for
reportlab's paragraph markup; the file is written to a temporary file and renamed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

_COLOURS = {"passed": colors.HexColor("#1b7f3b"), "failed": colors.HexColor("#b00020"),
            "deviation": colors.HexColor("#a15c00"), "not run": colors.HexColor("#a15c00"),
            "not in scope": colors.grey,
            "skipped": colors.HexColor("#a15c00")}


def _text(value: Any) -> str:
    """Text fit for a paragraph: markup escaped, characters outside Latin-1 replaced."""
    s = "".join(ch if ch.isprintable() else " " for ch in str(value))
    return escape(s.encode("latin-1", "replace").decode("latin-1"))


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    small = ParagraphStyle("small", parent=base["BodyText"], fontSize=8, leading=10)
    return {"title": base["Title"], "h2": base["Heading2"], "h3": base["Heading3"],
            "body": base["BodyText"], "small": small}


def _outcome(value: str, style: ParagraphStyle) -> Paragraph:
    colour = _COLOURS.get(value, colors.black)
    return Paragraph(f'<font color="{colour.hexval()}"><b>{_text(value.upper())}</b></font>',
                     style)


def _table(rows: Sequence[Sequence[Any]], widths: Sequence[float]) -> Table:
    table = Table(list(map(list, rows)), colWidths=list(widths), repeatRows=1)
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))
    return table


def _story(report: Mapping[str, Any]) -> list[Any]:
    st = _styles()
    s, small = st["body"], st["small"]
    system = report["system"]
    story: list[Any] = [
        Paragraph("coi validation report", st["title"]),
        Paragraph(f"Result: <b>{_text(report['result'])}</b>. {_text(report['summary'])}", s),
        Spacer(1, 4 * mm),
        Paragraph("System", st["h2"]),
        _table([["item", "value"]] + [[Paragraph(_text(k), small), Paragraph(_text(v), small)]
                                      for k, v in system.items()], [45 * mm, 125 * mm]),
        Paragraph("Installation qualification", st["h2"]),
        _table([["check", "outcome", "detail"]] + [
            [Paragraph(_text(c["name"]), small), _outcome(c["status"], small),
             Paragraph(_text(c["detail"]), small)] for c in report["installation"]],
            [40 * mm, 25 * mm, 105 * mm]),
        Paragraph("Operational qualification: requirements and their tests", st["h2"]),
    ]
    for r in report["requirements"]:
        story.append(Paragraph(f"{_text(r['id'])} ({_text(r['clause'])}, "
                               f"{_text(r['source'])})", st["h3"]))
        story.append(Paragraph(_text(r["statement"]), s))
        rows: list[list[Any]] = [["test", "outcome"]]
        rows += [[Paragraph(_text(t["node"]) + (f"<br/><i>{_text(t['detail'])}</i>"
                                                if t["detail"] else ""), small),
                  _outcome(t["outcome"], small)] for t in r["tests"]]
        rows.append([Paragraph("<b>requirement</b>", small), _outcome(r["outcome"], small)])
        story.append(_table(rows, [145 * mm, 25 * mm]))
    story.append(Paragraph("Deviations", st["h2"]))
    if report["deviations"]:
        story += [Paragraph(f"- {_text(d)}", s) for d in report["deviations"]]
    else:
        story.append(Paragraph("None.", s))
    return story


def write_validation_pdf(report: Mapping[str, Any], path: Path) -> None:
    """Render ``report`` (the content of validation.json) to ``path``, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        doc = SimpleDocTemplate(str(tmp), pagesize=A4, title="coi validation report",
                                author=str(report["system"].get("executor", "")),
                                leftMargin=20 * mm, rightMargin=20 * mm)
        doc.build(_story(report))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
