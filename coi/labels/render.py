"""Label rendering: PNG previews, SVG, PDF sheets for office printers, and ZPL for Zebra printers.

This module owns turning a :class:`~coi.labels.content.LabelContent` into printable output. The
layout comes from the packaged TOML templates (:mod:`coi.labels.template`), the symbols from
:mod:`coi.labels.symbols` (qrcode for QR, zxing-cpp for Data Matrix; reportlab draws the PDF page
but never encodes a symbol) and the placement from :mod:`coi.labels.layout`. Modules are drawn
as whole-dot squares: a PNG at the layout's dpi, an SVG whose user unit is one dot, a PDF whose
symbols are vector rectangles exactly ``module * 72 / 300`` points wide.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.pdfgen import canvas

from coi.labels.content import IsbtContent, LabelContent, label_content
from coi.labels.errors import LabelError
from coi.labels.layout import LabelPlan, PlacedSymbol, font_name, plan_label
from coi.labels.template import load_template
from coi.labels.zpl import render_zpl

__all__ = [
    "PDF_DPI",
    "IsbtContent",
    "LabelContent",
    "label_content",
    "plan",
    "render_pdf_sheet",
    "render_png",
    "render_svg",
    "render_zpl",
]

PDF_DPI = 300
"""The layout used on PDF sheets: module sizes are whole dots of a 300 dpi grid."""

_PAGES = {"letter": LETTER, "a4": A4}
_SVG_FONTS = "Helvetica, Arial, 'Liberation Sans', sans-serif"


def plan(content: LabelContent, size: str = "2x1", dpi: int = 300) -> LabelPlan:
    """Place ``content`` on the ``size`` template at ``dpi`` (see :mod:`coi.labels.layout`)."""
    return plan_label(content, load_template(size).layout(dpi))


# ---------------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------------


@functools.cache
def _pil_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled scalable font: no system font is needed, so output is the same everywhere.
    return ImageFont.load_default(size=size)


def _draw_modules_png(draw: ImageDraw.ImageDraw, placed: PlacedSymbol) -> None:
    m = placed.module
    for row, col, run in placed.symbol.runs():
        x0, y0 = placed.x + col * m, placed.y + row * m
        draw.rectangle((x0, y0, x0 + run * m - 1, y0 + m - 1), fill=0)


def render_png(
    content: LabelContent, size: str = "2x1", dpi: int = 300, *, scale: int = 1
) -> bytes:
    """One label as an 8-bit greyscale PNG at ``dpi`` (a resolution the template lays out).

    ``scale`` (a whole number) enlarges every dot for on-screen previews; modules stay whole
    pixels. The PNG records its resolution (``dpi * scale``) so it prints at the right size.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise LabelError(f"scale must be a whole number of at least 1, not {scale!r}")
    p = plan(content, size, dpi)
    image = Image.new("L", (p.width, p.height), 255)
    draw = ImageDraw.Draw(image)
    for placed in p.symbols:
        _draw_modules_png(draw, placed)
    for t in p.texts:
        stroke = max(1, t.size // 24) if t.bold else 0
        draw.text(
            (t.x, t.baseline),
            t.text,
            fill=0,
            font=_pil_font(t.size),
            anchor="ls",
            stroke_width=stroke,
            stroke_fill=0,
        )
    for b in p.boxes:
        draw.rectangle(
            (b.x, b.y, b.x + b.width - 1, b.y + b.height - 1), outline=0, width=b.thickness
        )
    if scale != 1:
        image = image.resize((p.width * scale, p.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(dpi * scale, dpi * scale))
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# SVG
# ---------------------------------------------------------------------------------------------


def _svg_path(placed: PlacedSymbol) -> str:
    m = placed.module
    parts = [
        f"M{placed.x + col * m} {placed.y + row * m}h{run * m}v{m}h{-run * m}z"
        for row, col, run in placed.symbol.runs()
    ]
    return f'<path d="{"".join(parts)}" fill="#000"/>'


def render_svg(content: LabelContent, size: str = "2x1", dpi: int = 300) -> str:
    """One label as SVG: one user unit is one dot of the ``dpi`` layout, sized in inches."""
    p = plan(content, size, dpi)
    template = load_template(size)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" '
        f'width="{template.width_in:g}in" height="{template.height_in:g}in" '
        f'viewBox="0 0 {p.width} {p.height}" shape-rendering="crispEdges">',
        f"<title>{escape(content.coi_printed)} {escape(content.item)}</title>",
        f'<rect x="0" y="0" width="{p.width}" height="{p.height}" fill="#fff"/>',
    ]
    out += [_svg_path(s) for s in p.symbols]
    for t in p.texts:
        weight = ' font-weight="bold"' if t.bold else ""
        out.append(
            f'<text x="{t.x}" y="{t.baseline}" font-family={quoteattr(_SVG_FONTS)} '
            f'font-size="{t.size}"{weight} fill="#000">{escape(t.text)}</text>'
        )
    for b in p.boxes:
        half = b.thickness / 2
        out.append(
            f'<rect x="{b.x + half:g}" y="{b.y + half:g}" width="{b.width - b.thickness}" '
            f'height="{b.height - b.thickness}" fill="none" stroke="#000" '
            f'stroke-width="{b.thickness}"/>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# PDF sheet
# ---------------------------------------------------------------------------------------------


def _draw_pdf_label(c: canvas.Canvas, p: LabelPlan, left: float, top: float) -> None:
    """Draw one planned label with its top-left corner at (left, top) points from page bottom."""
    s = 72 / p.dpi
    c.setFillGray(0)
    for placed in p.symbols:
        m = placed.module
        for row, col, run in placed.symbol.runs():
            x = left + (placed.x + col * m) * s
            y = top - (placed.y + (row + 1) * m) * s
            c.rect(x, y, run * m * s, m * s, stroke=0, fill=1)
    for t in p.texts:
        c.setFont(font_name(t.bold), t.size * s)
        c.drawString(left + t.x * s, top - t.baseline * s, t.text)
    for b in p.boxes:
        c.setLineWidth(b.thickness * s)
        half = b.thickness / 2
        c.rect(
            left + (b.x + half) * s,
            top - (b.y + b.height - half) * s,
            (b.width - b.thickness) * s,
            (b.height - b.thickness) * s,
            stroke=1,
            fill=0,
        )


def render_pdf_sheet(contents: Sequence[LabelContent], size: str = "2x1") -> bytes:
    """Labels on sheets for an office printer, as many pages as needed, in the given order.

    Pages and label positions come from the template's ``[sheet]``; symbols are vector
    rectangles on the 300 dpi grid, so a 300 dpi print puts every module on whole dots.
    """
    if not contents:
        raise LabelError("there are no labels to put on a sheet")
    template = load_template(size)
    sheet = template.sheet
    try:
        page_w, page_h = _PAGES[sheet.page]
    except KeyError:
        raise LabelError(f"unknown sheet page size {sheet.page!r}") from None
    plans = [plan(c, size, PDF_DPI) for c in contents]
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=(page_w, page_h), invariant=True, pageCompression=1)
    c.setTitle(f"coi labels {size}")
    c.setCreator("coi")
    for i, p in enumerate(plans):
        slot = i % sheet.per_page
        if i and slot == 0:
            c.showPage()
        column, row = slot % sheet.columns, slot // sheet.columns
        left = (sheet.left_in + column * sheet.column_pitch_in) * 72
        top = page_h - (sheet.top_in + row * sheet.row_pitch_in) * 72
        _draw_pdf_label(c, p, left, top)
    c.showPage()
    c.save()
    return out.getvalue()
