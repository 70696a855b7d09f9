"""Label rendering benchmark: time per format, against a baseline measured in the same run.

The baseline is the least any renderer must do: encoding the bare QR matrix with qrcode, without
drawing it. Each format is timed for one 2x1 label with ISBT content (QR + Data Matrix + text),
the PDF as a sheet of 10. Run: ``python bench/bench_labels.py [repeats]``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import qrcode
import qrcode.constants

from coi.domain import isbt
from coi.labels.content import LabelContent, label_content
from coi.labels.render import render_pdf_sheet, render_png, render_svg, render_zpl


def content(n: int) -> LabelContent:
    coi = isbt.assign_coi_id("A9999", 26, n).text
    return label_content(
        coi,
        f"F{n:05d}",
        din=isbt.Din("A9999", "26", f"{n:06d}"),
        product=isbt.ProductCode("S1234", "1", "00"),
        extra_lines=("CAR-T final product", "EXP 2026-12-31"),
    )


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main(repeats: int = 30) -> None:
    one = content(1)
    sheet = [content(n) for n in range(10)]

    def bare_qr() -> object:
        code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
        code.add_data(one.payload)
        code.make(fit=True)
        return code.get_matrix()

    cases: list[tuple[str, Callable[[], object]]] = [
        ("baseline: bare QR matrix (qrcode)", bare_qr),
        ("PNG 2x1 @300 dpi", lambda: render_png(one, "2x1", 300)),
        ("PNG 4x2 @300 dpi", lambda: render_png(one, "4x2", 300)),
        ("SVG 2x1 @300 dpi", lambda: render_svg(one, "2x1", 300)),
        ("PDF sheet of 10 (2x1)", lambda: render_pdf_sheet(sheet, "2x1")),
        ("ZPL 2x1 @203 dpi", lambda: render_zpl(one, "2x1", 203)),
        ("ZPL 2x1 @300 dpi", lambda: render_zpl(one, "2x1", 300)),
    ]
    results = [(name, timed(fn, repeats)) for name, fn in cases]
    base = results[0][1]
    print(f"label rendering, median of {repeats} runs")
    print(f"{'case':40} {'ms':>9} {'x baseline':>11}")
    for name, ms in results:
        print(f"{name:40} {ms:9.3f} {ms / base:11.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
