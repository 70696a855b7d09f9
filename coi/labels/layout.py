"""Placing one label's content on a template layout: symbols, text lines and boxes, in dots.

Every output format draws the same :class:`LabelPlan`, so a PNG preview, an SVG, a PDF sheet and
ZPL for a Zebra printer put every module and every line in the same place. Everything that can
go wrong with fitting (a symbol too big for its box, a line too wide, too many lines) is found
here, once, and raised as :class:`~coi.labels.errors.LabelLayoutError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from reportlab.pdfbase.pdfmetrics import stringWidth

from coi.labels.content import LabelContent
from coi.labels.errors import LabelLayoutError
from coi.labels.symbols import Symbol, datamatrix_symbol, qr_symbol
from coi.labels.template import Layout, SymbolBox

ASCENT = 0.78
"""Baseline position below a line's top, as a fraction of its size (Helvetica-like fonts)."""

LINE_SPACING = 1.2


def font_name(bold: bool) -> str:
    """The PDF base font used for text, and for measuring it in every format."""
    return "Helvetica-Bold" if bold else "Helvetica"


def text_width(text: str, size: int, bold: bool) -> float:
    """Width of ``text`` in dots at character height ``size`` dots (Helvetica metrics)."""
    return float(stringWidth(text, font_name(bold), size))


@dataclass(frozen=True, slots=True)
class PlacedSymbol:
    """A symbol with its top-left module at (x, y) and ``module`` dots per module."""

    symbol: Symbol
    x: int
    y: int
    module: int

    @property
    def quiet_dots(self) -> int:
        return self.symbol.quiet * self.module


@dataclass(frozen=True, slots=True)
class PlacedText:
    """One line of text whose top is at (x, y), ``size`` dots tall."""

    text: str
    x: int
    y: int
    size: int
    bold: bool

    @property
    def baseline(self) -> int:
        return self.y + round(self.size * ASCENT)


@dataclass(frozen=True, slots=True)
class PlacedBox:
    """An outlined rectangle (outer edge at x, y, width, height), ``thickness`` dots wide."""

    x: int
    y: int
    width: int
    height: int
    thickness: int


@dataclass(frozen=True, slots=True)
class LabelPlan:
    """One label, ready to draw: everything in whole dots at ``dpi``."""

    dpi: int
    width: int
    height: int
    symbols: tuple[PlacedSymbol, ...]
    texts: tuple[PlacedText, ...]
    boxes: tuple[PlacedBox, ...]

    @property
    def qr(self) -> PlacedSymbol:
        return next(s for s in self.symbols if s.symbol.kind == "qr")

    @property
    def datamatrix(self) -> PlacedSymbol | None:
        return next((s for s in self.symbols if s.symbol.kind == "datamatrix"), None)


def _place(symbol: Symbol, box: SymbolBox, what: str) -> PlacedSymbol:
    m = box.module
    outer_w = (symbol.width + 2 * symbol.quiet) * m
    outer_h = (symbol.height + 2 * symbol.quiet) * m
    if outer_w > box.width or outer_h > box.height:
        raise LabelLayoutError(
            f"the {what} ({symbol.width}x{symbol.height} modules at {m} dots, quiet zone "
            f"included {outer_w}x{outer_h} dots) does not fit its {box.width}x{box.height} box; "
            "use a larger label"
        )
    x = box.x + (box.width - outer_w) // 2 + symbol.quiet * m
    y = box.y + (box.height - outer_h) // 2 + symbol.quiet * m
    return PlacedSymbol(symbol, x, y, m)


def fit_text(text: str, layout: Layout, field: str) -> str:
    """``text`` cut (at the end) to what fits one ``field`` line of ``layout``'s text area."""
    spec = next((s for s in layout.lines if s.field == field), None)
    if spec is None:
        raise LabelLayoutError(f"the layout has no {field} line")
    while text and text_width(text, spec.size, spec.bold) > layout.text.width:
        text = text[:-1].rstrip()
    return text


def plan_label(content: LabelContent, layout: Layout) -> LabelPlan:
    """Place ``content`` on ``layout``; raise :class:`LabelLayoutError` if anything overflows."""
    symbols = [_place(qr_symbol(content.payload), layout.qr, "QR code")]
    texts: list[PlacedText] = []
    boxes: list[PlacedBox] = []

    block = layout.text
    bottom = block.bottom
    if content.isbt is not None:
        bottom = block.bottom_isbt
        dm = _place(datamatrix_symbol(content.isbt.message), layout.datamatrix, "Data Matrix")
        symbols.append(dm)
        spot = layout.din
        din = PlacedText(content.isbt.din_text, spot.x, spot.y, spot.size, True)
        gap = max(2, round(spot.size * 0.4))
        pad = max(2, spot.size // 8)
        thickness = max(1, layout.dpi // 100)
        k_x = spot.x + round(text_width(din.text, spot.size, True)) + gap + pad + thickness
        k = PlacedText(content.isbt.din_check, k_x, spot.y, spot.size, True)
        k_w = round(text_width(k.text, spot.size, True))
        box = PlacedBox(
            x=k_x - pad - thickness,
            y=spot.y - pad - thickness,
            width=k_w + 2 * (pad + thickness),
            height=spot.size + 2 * (pad + thickness),
            thickness=thickness,
        )
        dm_left = layout.datamatrix.x
        if box.x + box.width > dm_left or box.y + box.height > layout.height:
            raise LabelLayoutError(
                f"the DIN {din.text!r} with its boxed K does not fit beside the Data Matrix"
            )
        texts += [din, k]
        boxes.append(box)

    y = block.y
    for spec in layout.lines:
        if spec.field == "coi":
            values: tuple[str, ...] = (content.coi_printed,)
        elif spec.field == "item":
            note = f"  {content.item_note}" if content.item_note else ""
            values = (f"ITEM {content.item}{note}",)
        elif spec.field == "extra":
            values = content.extra_lines
        else:
            values = (content.patient_text,) if content.patient_text is not None else ()
        for value in values:
            if y + spec.size > bottom:
                raise LabelLayoutError(
                    f"too many text lines for the label: {value!r} would go below the text area"
                )
            width = text_width(value, spec.size, spec.bold)
            if width > block.width:
                raise LabelLayoutError(
                    f"the line {value!r} is {width:.0f} dots wide; the text area is "
                    f"{block.width} dots wide at {layout.dpi} dpi"
                )
            texts.append(PlacedText(value, block.x, y, spec.size, spec.bold))
            y += round(spec.size * LINE_SPACING)

    return LabelPlan(
        layout.dpi, layout.width, layout.height, tuple(symbols), tuple(texts), tuple(boxes)
    )
