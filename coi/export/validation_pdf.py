"""The validation report as a PDF a site files: rendered from ``validation.json`` alone.

Owns the layout (reportlab's platypus): the result first (PASSED, FAILED or PARTIAL, and why),
the system (coi and Python versions, host, executor, date with time zone, the database), the
installation qualification's checks, then every requirement with its clause, its outcome and
its tests with theirs, then the deviations. Every value from the report is escaped for
reportlab's paragraph markup and set in an embedded TrueType font, a character the font cannot
draw shown as ``<U+XXXX>`` as the legend under the title says (:mod:`coi.export.pdf_text`);
the file is written to a temporary file and renamed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from coi.export.pdf_text import PdfFont, current_font, legend, pdf_text, using

_COLOURS = {"passed": colors.HexColor("#1b7f3b"), "failed": colors.HexColor("#b00020"),
            "deviation": colors.HexColor("#a15c00"), "not run": colors.HexColor("#a15c00"),
            "not in scope": colors.grey,
            "skipped": colors.HexColor("#a15c00")}


def _text(value: Any) -> str:
    """Text fit for a paragraph in the current font: markup escaped, characters the font cannot
    draw and invisible ones as ``<U+XXXX>`` (:mod:`coi.export.pdf_text`)."""
    return pdf_text(value)


def _styles() -> dict[str, ParagraphStyle]:
    """The sample styles, set in the current font (its bold face where the sample is bold)."""
    base, font = getSampleStyleSheet(), current_font()

    def restyle(name: str, **kw: Any) -> ParagraphStyle:
        parent = base[name]
        face = font.face(bold="Bold" in parent.fontName, italic="Oblique" in parent.fontName)
        return ParagraphStyle(f"coi-{name}", parent=parent, fontName=face, **kw)

    return {"title": restyle("Title"), "h2": restyle("Heading2"), "h3": restyle("Heading3"),
            "body": restyle("BodyText"), "small": restyle("BodyText", fontSize=8, leading=10)}


def _outcome(value: str, style: ParagraphStyle) -> Paragraph:
    colour = _COLOURS.get(value, colors.black)
    return Paragraph(f'<font color="{colour.hexval()}"><b>{_text(value.upper())}</b></font>',
                     style)


def _table(rows: Sequence[Sequence[Any]], widths: Sequence[float]) -> Table:
    table = Table(list(map(list, rows)), colWidths=list(widths), repeatRows=1)
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), current_font().family),
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
        Paragraph(legend(), small),
        Paragraph(f"Result: <b>{_text(report['result'])}</b>. {_text(report['summary'])}", s),
        Spacer(1, 4 * mm),
        Paragraph("System", st["h2"]),
        _table([["item", "value"]] + [[Paragraph(_text(k), small), Paragraph(_text(v), small)]
                                      for k, v in system.items()], [45 * mm, 125 * mm]),
        Paragraph("Installation qualification", st["h2"]),
        _table([["check", "outcome", "detail"]] + [
            [Paragraph(_text(c["name"]), small), _outcome(c["status"], small),
             Paragraph(_text(c["detail"]), small)] for c in report["installation"]],
            [40 * mm, 30 * mm, 100 * mm]),
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
        story.append(_table(rows, [140 * mm, 30 * mm]))
    story.append(Paragraph("Deviations", st["h2"]))
    if report["deviations"]:
        story += [Paragraph(f"- {_text(d)}", s) for d in report["deviations"]]
    else:
        story.append(Paragraph("None.", s))
    return story


def write_validation_pdf(report: Mapping[str, Any], path: Path,
                         font: PdfFont | None = None) -> None:
    """Render ``report`` (the content of validation.json) to ``path``, atomically, in ``font``
    (default: :func:`coi.export.pdf_text.default_font`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with using(font) as chosen:
        try:
            doc = SimpleDocTemplate(str(tmp), pagesize=A4, title="coi validation report",
                                    author=str(report["system"].get("executor", "")),
                                    leftMargin=20 * mm, rightMargin=20 * mm,
                                    initialFontName=chosen.family)
            doc.build(_story(report))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
