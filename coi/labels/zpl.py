"""ZPL II for Zebra label printers: one ``^XA … ^XZ`` format per label, in whole dots.

This module owns the printer dialect. It draws the same :class:`~coi.labels.layout.LabelPlan`
as the other formats, but lets the printer encode the symbols from their field data:

- QR: ``^BQN,2,<mag>,M`` with field data ``MA,<payload>`` (error correction M, automatic mode;
  without the ``MA,`` prefix the printer eats the first characters as parameters);
- Data Matrix: ``^BXN,<module>,200,<columns>,<rows>`` (quality 200 is ECC 200; the obsolete
  ECC 000 is used otherwise), with the square size our encoder chose so the printer cannot pick a
  rectangle, and the field data hex-escaped with ``^FH`` so group separators survive;
- text: ``^A0N,<height>,<width>`` with ``^FH`` escapes for ``^``, ``~``, ``_`` and non-ASCII
  (sent as UTF-8 under ``^CI28``).

Characters that ZPL would read as commands inside barcode data (``^`` and ``~``) are refused
there rather than escaped: ``~`` is the Data Matrix escape character even after ``^FH``.
"""

from __future__ import annotations

from coi.labels.content import LabelContent
from coi.labels.errors import LabelContentError, LabelLayoutError
from coi.labels.layout import LabelPlan, PlacedSymbol, plan_label
from coi.labels.template import load_template

ZPL_DPIS = (203, 300)
HEX_INDICATOR = "_"
_SAFE = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"^", "~", HEX_INDICATOR}


def zpl_escape(text: str) -> str:
    """Field data for ``^FH``: ``^``, ``~``, ``_``, control and non-ASCII bytes as ``_XX``."""
    out = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"{HEX_INDICATOR}{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def zpl_unescape(data: str) -> str:
    """Undo :func:`zpl_escape` (what the printer does with ``^FH``); for tests and tools."""
    raw = bytearray()
    i = 0
    while i < len(data):
        if data[i] == HEX_INDICATOR:
            raw.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(data[i].encode("utf-8"))
            i += 1
    return raw.decode("utf-8")


def _barcode_data(text: str, what: str) -> None:
    bad = sorted({ch for ch in text if ch in "^~" or not ch.isascii()})
    if bad:
        raise LabelContentError(f"the {what} holds characters ZPL cannot carry in a barcode: {bad}")


def _qr(placed: PlacedSymbol, payload: str) -> str:
    _barcode_data(payload, "QR payload")
    if any(ord(ch) < 0x20 for ch in payload):
        raise LabelContentError("the QR payload holds a control character")
    if not 1 <= placed.module <= 10:
        raise LabelLayoutError(f"ZPL QR magnification must be 1-10 dots, not {placed.module}")
    return f"^FO{placed.x},{placed.y}^BQN,2,{placed.module},M^FDMA,{payload}^FS"


def _datamatrix(placed: PlacedSymbol, message: str) -> str:
    _barcode_data(message, "Data Matrix content")
    sym = placed.symbol
    return (
        f"^FO{placed.x},{placed.y}^BXN,{placed.module},200,{sym.width},{sym.height}"
        f"^FH{HEX_INDICATOR}^FD{zpl_escape(message)}^FS"
    )


def plan_to_zpl(p: LabelPlan, content: LabelContent) -> str:
    """ZPL for a planned label (the plan must have been made from ``content``)."""
    lines = ["^XA", "^CI28", f"^PW{p.width}", f"^LL{p.height}", "^LH0,0"]
    lines.append(_qr(p.qr, content.payload))
    dm = p.datamatrix
    if dm is not None:
        if content.isbt is None:
            raise AssertionError("a Data Matrix was planned without ISBT content")
        lines.append(_datamatrix(dm, content.isbt.message))
    for t in p.texts:
        lines.append(
            f"^FO{t.x},{t.y}^A0N,{t.size},{t.size}^FH{HEX_INDICATOR}^FD{zpl_escape(t.text)}^FS"
        )
    for b in p.boxes:
        lines.append(f"^FO{b.x},{b.y}^GB{b.width},{b.height},{b.thickness}^FS")
    lines += ["^PQ1", "^XZ"]
    return "\n".join(lines) + "\n"


def render_zpl(content: LabelContent, size: str = "2x1", dpi: int = 203) -> str:
    """One label as a ZPL II format for a Zebra printer of ``dpi`` (203 or 300) resolution."""
    if dpi not in ZPL_DPIS:
        raise LabelLayoutError(f"ZPL layouts exist for 203 and 300 dpi printers, not {dpi}")
    return plan_to_zpl(plan_label(content, load_template(size).layout(dpi)), content)
