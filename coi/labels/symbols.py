"""Barcode symbols as module matrices: the one place that chooses QR and Data Matrix encoders.

Every output format (PNG, SVG, PDF, ZPL preview) draws from these matrices, so what is printed is
exactly what was encoded. The tracker's own payload goes into a normal QR code (never Micro QR),
error correction M, smallest version that fits. ISBT 128 content goes into a square ECC 200 Data
Matrix made by zxing-cpp's writer (reportlab's encoder corrupts ISBT characters), byte for byte,
group separators included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import qrcode
import qrcode.constants
import zxingcpp

from coi.labels.errors import LabelContentError

QR_QUIET_MODULES = 4
"""ISO/IEC 18004 quiet zone for QR: four modules on every side."""

DATAMATRIX_QUIET_MODULES = 1
"""ISO/IEC 16022 quiet zone for Data Matrix: one module on every side."""


@dataclass(frozen=True, slots=True)
class Symbol:
    """A 2-D symbol as rows of dark (True) and light (False) modules, without its quiet zone."""

    kind: str  # "qr" or "datamatrix"
    rows: tuple[tuple[bool, ...], ...]
    quiet: int
    version: int | None = None  # QR version (1-40); None for Data Matrix

    @property
    def width(self) -> int:
        return len(self.rows[0])

    @property
    def height(self) -> int:
        return len(self.rows)

    def runs(self) -> list[tuple[int, int, int]]:
        """Horizontal runs of dark modules as (row, first column, length), for compact drawing."""
        out: list[tuple[int, int, int]] = []
        for y, row in enumerate(self.rows):
            x = 0
            while x < len(row):
                if row[x]:
                    start = x
                    while x < len(row) and row[x]:
                        x += 1
                    out.append((y, start, x - start))
                else:
                    x += 1
        return out


def qr_symbol(payload: str) -> Symbol:
    """Encode ``payload`` as a normal QR code, error correction M, smallest version that fits.

    The qrcode package implements QR Model 2 only, so a Micro QR can never come out of here.
    """
    if not payload:
        raise LabelContentError("the QR payload is empty")
    try:
        payload.encode("ascii")
    except UnicodeEncodeError as exc:
        raise LabelContentError("the QR payload must be ASCII") from exc
    code = qrcode.QRCode(version=None, error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    code.add_data(payload)
    code.make(fit=True)
    matrix: list[list[bool]] = code.get_matrix()
    rows = tuple(tuple(bool(m) for m in row) for row in matrix)
    version = int(code.version)
    if len(rows) != 17 + 4 * version:
        raise AssertionError(f"unexpected QR size {len(rows)} for version {version}")
    return Symbol("qr", rows, QR_QUIET_MODULES, version)


def datamatrix_symbol(content: str) -> Symbol:
    """Encode ISBT 128 ``content`` as a square ECC 200 Data Matrix, every byte preserved.

    zxing-cpp's Python writer takes creator options as keyword arguments and silently ignores
    unknown ones, so the square shape is checked here rather than trusted.
    """
    if not content:
        raise LabelContentError("the Data Matrix content is empty")
    try:
        content.encode("ascii")
    except UnicodeEncodeError as exc:
        raise LabelContentError("ISBT 128 Data Matrix content must be ASCII") from exc
    barcode = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.DataMatrix, force_square=True)
    image = barcode.to_image(scale=1, add_quiet_zones=False)
    height, width = image.shape[0], image.shape[1]
    if width != height:
        raise AssertionError(f"zxing-cpp made a {width}x{height} Data Matrix, not a square")
    raw = bytes(memoryview(cast(Any, image)).cast("B"))  # zxingcpp.Image is a buffer
    rows = tuple(tuple(raw[y * width + x] < 128 for x in range(width)) for y in range(height))
    return Symbol("datamatrix", rows, DATAMATRIX_QUIET_MODULES)
