"""Label rendering: every format decodes back to the same CoI identifier and item.

Symbols are decoded with zxing-cpp at the module size that would print: PNGs at the template's
dpi (4-8 px per module), SVG rasterised by resvg (resvg-py, an independent renderer), PDF sheets
rasterised at 300 dpi by PDFium (pypdfium2), and ZPL parsed field by field, then its field data
re-encoded at the printer's magnification and decoded. Every decoded text goes through the
scanner parser, :func:`coi.domain.scan.parse_scan`, as a scanner with AIM prefixes would type it.
FINs A9990-A9999 only.
"""

from __future__ import annotations

import io
import re

import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from coi.domain import isbt, payload
from coi.domain.scan import CoiIdScan, CompoundScan, DinScan, LabelScan, parse_scan
from coi.labels.content import IsbtContent, LabelContent, label_content
from coi.labels.errors import LabelContentError, LabelError, LabelLayoutError
from coi.labels.layout import LabelPlan, PlacedSymbol
from coi.labels.render import plan, render_pdf_sheet, render_png, render_svg, render_zpl
from coi.labels.symbols import Symbol, datamatrix_symbol, qr_symbol
from coi.labels.template import load_template, template_names
from coi.labels.zpl import zpl_escape, zpl_unescape

SIZES = ("2x1", "4x2")
DPIS = (203, 300)
GS = "\x1d"


# ---------------------------------------------------------------------------------------------
# factories and helpers
# ---------------------------------------------------------------------------------------------


def make_content(
    serial: int = 1,
    item: str = "F00001",
    *,
    fin: str = "A9999",
    year: int = 26,
    with_isbt: bool = True,
    extra: tuple[str, ...] = ("CAR-T final product", "EXP 2026-12-31"),
    patient: str | None = None,
) -> LabelContent:
    coi = isbt.assign_coi_id(fin, year, serial).text
    return label_content(
        coi,
        item,
        din=isbt.Din(fin, f"{year:02d}", f"{serial % 1_000_000:06d}") if with_isbt else None,
        product=isbt.ProductCode("S1234", "1", "00") if with_isbt else None,
        extra_lines=extra,
        patient_text=patient,
    )


def decode(image: Image.Image, fmt: zxingcpp.BarcodeFormat) -> list[zxingcpp.Barcode]:
    """Decode with the raw bytes as text (Plain), so a GS stays a GS."""
    formats = zxingcpp.BarcodeFormats(fmt)
    return list(zxingcpp.read_barcodes(image, formats=formats, text_mode=zxingcpp.TextMode.Plain))


def scanned(barcode: zxingcpp.Barcode) -> str:
    """What a scanner set to send AIM identifiers types for ``barcode`` (Enter stripped)."""
    return f"{barcode.symbology_identifier}{barcode.text}"


def assert_label_qr(image: Image.Image, content: LabelContent) -> None:
    found = decode(image, zxingcpp.BarcodeFormat.QRCode)
    assert [b.text for b in found] == [content.payload]
    qr = found[0]
    assert qr.format == zxingcpp.BarcodeFormat.QRCode
    assert qr.symbology_identifier == "]Q1"
    assert qr.ec_level == "M"
    scan = parse_scan(scanned(qr) + "\r")
    assert isinstance(scan, LabelScan)
    assert (scan.label.coi, scan.label.item) == (content.coi, content.item)
    assert scan.symbology == "]Q1"
    assert decode(image, zxingcpp.BarcodeFormat.MicroQRCode) == []


def assert_label_datamatrix(image: Image.Image, content: LabelContent) -> None:
    assert content.isbt is not None
    found = decode(image, zxingcpp.BarcodeFormat.DataMatrix)
    assert [b.text for b in found] == [content.isbt.message]
    scan = parse_scan(scanned(found[0]))
    assert isinstance(scan, CompoundScan)
    coi_ids = [s for s in scan.structures if isinstance(s, isbt.CoiId)]
    assert [c.text for c in coi_ids] == [content.coi]


def assert_modules_exact(
    image: Image.Image, placed: PlacedSymbol, scale: int = 1, margin: int = 0
) -> None:
    """Every module is a solid block of whole pixels of the right colour (quiet zone light).

    ``margin`` pixels at each module's edges are not looked at (PDFium rounds filled rectangles
    outwards by up to a pixel); the pitch is still checked across the whole symbol, so a module
    size scaled by a fractional factor would drift out of its blocks and fail.
    """
    grey = image.convert("L")
    m = placed.module * scale
    q = placed.symbol.quiet
    x0, y0 = placed.x * scale, placed.y * scale
    for r in range(-q, placed.symbol.height + q):
        for c in range(-q, placed.symbol.width + q):
            inside = 0 <= r < placed.symbol.height and 0 <= c < placed.symbol.width
            dark = inside and placed.symbol.rows[r][c]
            box = (
                x0 + c * m + margin,
                y0 + r * m + margin,
                x0 + (c + 1) * m - margin,
                y0 + (r + 1) * m - margin,
            )
            extrema = grey.crop(box).getextrema()
            assert isinstance(extrema[0], int) and isinstance(extrema[1], int)
            lo, hi = extrema
            if dark:
                assert hi < 64, f"module {r},{c} not solid dark"
            else:
                assert lo > 192, f"module {r},{c} not solid light"


def png_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# ---------------------------------------------------------------------------------------------
# templates
# ---------------------------------------------------------------------------------------------


def test_templates_are_packaged_with_layouts_per_printer_resolution() -> None:
    assert template_names() == ["2x1", "4x2"]
    for size in SIZES:
        template = load_template(size)
        assert set(template.layouts) == set(DPIS)
        for dpi, layout in template.layouts.items():
            assert (layout.width, layout.height) == (
                round(template.width_in * dpi),
                round(template.height_in * dpi),
            )
            # QR version 3 (29 modules) with its quiet zone fits every template's QR box.
            assert (29 + 8) * layout.qr.module <= min(layout.qr.width, layout.qr.height)
            # ~0.5 mm modules or larger: 4 dots at 203 dpi, 6 at 300 dpi.
            assert layout.qr.module * 25.4 / dpi >= 0.49


def test_unknown_template_and_resolution_are_refused() -> None:
    with pytest.raises(LabelError):
        load_template("3x3")
    with pytest.raises(LabelError):
        load_template("../pyproject")
    with pytest.raises(LabelError):
        render_png(make_content(), "2x1", dpi=600)
    with pytest.raises(LabelLayoutError):
        render_zpl(make_content(), "2x1", dpi=600)


# ---------------------------------------------------------------------------------------------
# symbols
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1", "A", "12345", "COI1", "X" * 40, "COI1" + "9" * 100])
def test_qr_is_never_micro_qr(text: str) -> None:
    symbol = qr_symbol(text)
    assert symbol.version is not None and symbol.version >= 1
    assert symbol.width == symbol.height == 17 + 4 * symbol.version >= 21
    image = symbol_image(symbol, 4)
    assert decode(image, zxingcpp.BarcodeFormat.MicroQRCode) == []
    found = decode(image, zxingcpp.BarcodeFormat.QRCode)
    assert [(b.text, b.format, b.ec_level) for b in found] == [
        (text, zxingcpp.BarcodeFormat.QRCode, "M")
    ]


def test_plain_payload_qr_is_the_smallest_version_at_ec_m() -> None:
    content = make_content()
    assert len(content.payload) == payload.PLAIN_LENGTH == 26
    symbol = qr_symbol(content.payload)
    # 26 upper-case letters and digits use alphanumeric mode: version 2-M holds 38 of them.
    assert symbol.version == 2
    assert qr_symbol("A" * 38).version == 2
    assert qr_symbol("A" * 39).version == 3
    assert qr_symbol("A" * 61).version == 3


def symbol_image(symbol: Symbol, module: int) -> Image.Image:
    side = symbol.width + 2 * symbol.quiet
    image = Image.new("L", (side, symbol.height + 2 * symbol.quiet), 255)
    for row, col, run in symbol.runs():
        for x in range(col, col + run):
            image.putpixel((x + symbol.quiet, row + symbol.quiet), 0)
    return image.resize((image.width * module, image.height * module), Image.Resampling.NEAREST)


@pytest.mark.parametrize("length", [1, 5, 12, 20, 31, 44, 50, 63, 90, 120, 200])
def test_datamatrix_is_always_square(length: int) -> None:
    text = ("=A9999" * 50)[:length]
    symbol = datamatrix_symbol(text)
    assert symbol.width == symbol.height
    found = decode(symbol_image(symbol, 3), zxingcpp.BarcodeFormat.DataMatrix)
    assert [b.text for b in found] == [text]


def test_datamatrix_keeps_group_separators_for_isbt_concatenation() -> None:
    din = isbt.Din("A9998", "26", "123456")
    product = isbt.ProductCode("S1234", "1", "00")
    content = din.barcode() + GS + product.barcode()
    symbol = datamatrix_symbol(content)
    assert symbol.width == symbol.height
    (found,) = decode(symbol_image(symbol, 4), zxingcpp.BarcodeFormat.DataMatrix)
    assert found.text == content
    assert found.bytes == content.encode("ascii")
    scan = parse_scan(scanned(found))
    assert isinstance(scan, CompoundScan) and scan.source == "concatenation"
    assert scan.structures == (din, product)


def test_isbt_compound_message_round_trips_through_a_square_datamatrix() -> None:
    content = make_content(serial=77)
    assert content.isbt is not None
    symbol = datamatrix_symbol(content.isbt.message)
    assert symbol.width == symbol.height
    assert_label_datamatrix(symbol_image(symbol, 3), content)


# ---------------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dpi", DPIS)
@pytest.mark.parametrize("with_isbt", [True, False])
def test_png_decodes_to_the_same_coi_and_item(size: str, dpi: int, with_isbt: bool) -> None:
    content = make_content(serial=4242, with_isbt=with_isbt, patient="DOB 1970-01-01")
    image = png_image(render_png(content, size, dpi))
    p = plan(content, size, dpi)
    assert image.size == (p.width, p.height)
    assert image.info["dpi"] == pytest.approx((dpi, dpi), abs=0.01)  # PNG stores dots per metre
    assert p.qr.module >= 2
    assert_modules_exact(image, p.qr)
    assert_label_qr(image, content)
    if with_isbt:
        assert p.datamatrix is not None
        assert_modules_exact(image, p.datamatrix)
        assert_label_datamatrix(image, content)
    else:
        assert p.datamatrix is None
        assert decode(image, zxingcpp.BarcodeFormat.DataMatrix) == []


def test_png_preview_scale_keeps_whole_pixel_modules() -> None:
    content = make_content()
    image = png_image(render_png(content, "2x1", 203, scale=2))
    p = plan(content, "2x1", 203)
    assert image.size == (p.width * 2, p.height * 2)
    assert_modules_exact(image, p.qr, scale=2)
    assert_label_qr(image, content)
    with pytest.raises(LabelError):
        render_png(content, "2x1", 203, scale=0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fin_digit=st.integers(0, 9),
    year=st.integers(0, 99),
    serial=st.integers(0, 36**6 - 1),
    kind=st.sampled_from("CFDW"),
    number=st.integers(0, 99_999),
    size=st.sampled_from(SIZES),
    dpi=st.sampled_from(DPIS),
)
def test_png_round_trip_for_any_valid_coi_and_item(
    fin_digit: int, year: int, serial: int, kind: str, number: int, size: str, dpi: int
) -> None:
    coi = isbt.assign_coi_id(f"A999{fin_digit}", year, serial).text
    content = label_content(coi, f"{kind}{number:05d}")
    image = png_image(render_png(content, size, dpi))
    assert_label_qr(image, content)


def test_signed_payload_needs_the_larger_label() -> None:
    key = Ed25519PrivateKey.generate()
    coi = isbt.assign_coi_id("A9990", 26, 123).text
    signed = payload.sign(coi, "D00042", b"\x01\x02\x03\x04", key)
    content = label_content(coi, "D00042", payload=signed)
    with pytest.raises(LabelLayoutError, match="larger label"):
        render_png(content, "2x1", 300)
    for dpi in DPIS:
        image = png_image(render_png(content, "4x2", dpi))
        assert_label_qr(image, content)
        (qr,) = decode(image, zxingcpp.BarcodeFormat.QRCode)
        scan = parse_scan(scanned(qr))
        assert isinstance(scan, LabelScan) and scan.label.signed
        payload.verify_signed(scan.label, key.public_key())


# ---------------------------------------------------------------------------------------------
# SVG (rasterised by resvg, an independent renderer)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dpi", DPIS)
def test_svg_rasterised_decodes_to_the_same_coi_and_item(size: str, dpi: int) -> None:
    resvg_py = pytest.importorskip("resvg_py")
    content = make_content(serial=31337)
    svg = render_svg(content, size, dpi)
    template = load_template(size)
    assert f'width="{template.width_in:g}in"' in svg
    p = plan(content, size, dpi)
    image = png_image(bytes(resvg_py.svg_to_bytes(svg_string=svg, dpi=float(dpi))))
    assert image.size == (p.width, p.height)
    assert_modules_exact(image, p.qr)
    assert_label_qr(image, content)
    assert_label_datamatrix(image, content)


def test_svg_escapes_text() -> None:
    content = make_content(extra=("<b>&\"'",), with_isbt=False)
    svg = render_svg(content)
    assert "&lt;b&gt;&amp;" in svg and "<b>" not in svg


# ---------------------------------------------------------------------------------------------
# PDF sheets (rasterised at 300 dpi by PDFium)
# ---------------------------------------------------------------------------------------------


def rasterise_pdf(data: bytes, dpi: int = 300) -> list[Image.Image]:
    pdfium = pytest.importorskip("pypdfium2")
    document = pdfium.PdfDocument(data)
    try:
        return [page.render(scale=dpi / 72).to_pil() for page in document]
    finally:
        document.close()


@pytest.mark.parametrize("size", SIZES)
def test_pdf_sheet_rasterised_at_300_dpi_decodes_every_label(size: str) -> None:
    template = load_template(size)
    contents = [
        make_content(serial=n, item=f"F{n:05d}") for n in range(template.sheet.per_page + 2)
    ]
    pages = rasterise_pdf(render_pdf_sheet(contents, size))
    assert len(pages) == 2
    sheet = template.sheet
    for i, content in enumerate(contents):
        page = pages[i // sheet.per_page]
        slot = i % sheet.per_page
        left = round((sheet.left_in + slot % sheet.columns * sheet.column_pitch_in) * 300)
        top = round((sheet.top_in + slot // sheet.columns * sheet.row_pitch_in) * 300)
        p = plan(content, size, 300)
        label = page.crop((left, top, left + p.width, top + p.height))
        assert_modules_exact(label, p.qr, margin=1)
        assert p.datamatrix is not None
        assert_modules_exact(label, p.datamatrix, margin=1)
        assert_label_qr(label, content)
        assert_label_datamatrix(label, content)
    # And a scanner looking at the whole first page finds every label on it.
    found = decode(pages[0], zxingcpp.BarcodeFormat.QRCode)
    assert sorted(b.text for b in found) == sorted(c.payload for c in contents[: sheet.per_page])


def test_pdf_sheet_refuses_an_empty_list() -> None:
    with pytest.raises(LabelError):
        render_pdf_sheet([], "2x1")


# ---------------------------------------------------------------------------------------------
# ZPL
# ---------------------------------------------------------------------------------------------

_FIELD = re.compile(r"\^FO(\d+),(\d+)(\^[A-Z0-9]{2}[^\^]*)((?:\^FH_)?)\^FD(.*?)\^FS")


def zpl_fields(zpl: str) -> list[tuple[int, int, str, bool, str]]:
    """(x, y, the command before ^FD, ^FH used, field data) for every ^FO field."""
    return [
        (int(x), int(y), command, bool(fh), data) for x, y, command, fh, data in _FIELD.findall(zpl)
    ]


def zpl_size(zpl: str) -> tuple[int, int]:
    width = re.search(r"\^PW(\d+)", zpl)
    height = re.search(r"\^LL(\d+)", zpl)
    assert width is not None and height is not None
    return int(width.group(1)), int(height.group(1))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dpi", DPIS)
def test_zpl_fields_are_printable_and_decode(size: str, dpi: int) -> None:
    content = make_content(serial=9, patient="DOB 1970-01-01")
    zpl = render_zpl(content, size, dpi)
    assert zpl.startswith("^XA\n") and zpl.endswith("^XZ\n")
    layout = load_template(size).layout(dpi)
    assert zpl_size(zpl) == (layout.width, layout.height)
    width, height = layout.width, layout.height
    fields = zpl_fields(zpl)

    # QR: ^BQN,2,<whole-dot magnification>,M and field data "MA,<payload>".
    (qr,) = [f for f in fields if f[2].startswith("^BQ")]
    x, y, command, fh, data = qr
    match = re.fullmatch(r"\^BQN,2,(\d+),M", command)
    assert match is not None
    mag = int(match.group(1))
    assert 2 <= mag <= 10 and mag == layout.qr.module
    assert data.startswith("MA,") and not fh
    symbol = qr_symbol(data[3:])
    quiet = symbol.quiet * mag
    assert x - quiet >= 0 and y - quiet >= 0
    assert x + symbol.width * mag + quiet <= width and y + symbol.height * mag + quiet <= height
    printed = symbol_image(symbol, mag)
    assert_label_qr(printed, content)

    # Data Matrix: ^BXN,<module>,200,<cols>,<rows>, square, content hex-escaped with ^FH.
    (dm,) = [f for f in fields if f[2].startswith("^BX")]
    x, y, command, fh, data = dm
    match = re.fullmatch(r"\^BXN,(\d+),200,(\d+),(\d+)", command)
    assert match is not None
    module, cols, rows = (int(g) for g in match.groups())
    assert module == layout.datamatrix.module and cols == rows
    message = zpl_unescape(data) if fh else data
    symbol = datamatrix_symbol(message)
    assert (symbol.width, symbol.height) == (cols, rows)
    assert x - module >= 0 and x + (cols + 1) * module <= width
    assert y - module >= 0 and y + (rows + 1) * module <= height
    assert_label_datamatrix(symbol_image(symbol, module), content)

    # Text: scalable font 0, inside the label, and it says what the content says.
    texts = [f for f in fields if f[2].startswith("^A0N")]
    shown = [zpl_unescape(f[4]) for f in texts]
    assert content.coi_printed in shown and f"ITEM {content.item}" in shown
    assert content.isbt is not None and content.isbt.din_text in shown
    assert "DOB 1970-01-01" in shown
    for x, y, command, _fh, _data in texts:
        h = int(command.split(",")[1])
        assert 0 <= x < width and 0 <= y and y + h <= height
    # The boxed K.
    assert re.search(r"\^GB\d+,\d+,\d+\^FS", zpl)


def test_zpl_escapes_special_characters_in_text() -> None:
    content = make_content(extra=("a^b~c_d é",), with_isbt=False)
    zpl = render_zpl(content, "4x2", 203)
    assert "a^b" not in zpl and "b~c" not in zpl
    assert "^FDa_5Eb_7Ec_5Fd _C3_A9^FS" in zpl
    assert zpl_unescape(zpl_escape("a^b~c_d é\x1d")) == "a^b~c_d é\x1d"


def test_zpl_carries_group_separators_in_datamatrix_data() -> None:
    din = isbt.Din("A9997", "26", "000001")
    message = din.barcode() + GS + isbt.ProductCode("S1234", "1", "00").barcode()
    coi = isbt.assign_coi_id("A9997", 26, 1)
    content = LabelContent(
        coi=coi.text,
        coi_printed=coi.printed(),
        item="C00001",
        payload=payload.encode(coi.text, "C00001"),
        isbt=IsbtContent(din_text="A9997 26 000001", din_check=din.check, message=message),
    )
    zpl = render_zpl(content, "2x1", 300)
    (dm,) = [f for f in zpl_fields(zpl) if f[2].startswith("^BX")]
    assert dm[3] and "_1D" in dm[4] and GS not in zpl
    assert zpl_unescape(dm[4]) == message
    (found,) = decode(
        symbol_image(datamatrix_symbol(message), 5), zxingcpp.BarcodeFormat.DataMatrix
    )
    scan = parse_scan(scanned(found))
    assert isinstance(scan, CompoundScan) and isinstance(scan.structures[0], isbt.Din)
    assert isinstance(parse_scan(din.barcode()), DinScan)
    assert isinstance(parse_scan(coi.barcode()), CoiIdScan)


def test_zpl_refuses_command_characters_in_barcode_data() -> None:
    base = make_content(with_isbt=False)
    for bad in ("COI1^XZ", "COI1~JA"):
        content = LabelContent(base.coi, base.coi_printed, base.item, bad)
        with pytest.raises(LabelContentError):
            render_zpl(content)


# ---------------------------------------------------------------------------------------------
# content and layout checks
# ---------------------------------------------------------------------------------------------


def test_label_content_is_checked_when_built() -> None:
    good = make_content(with_isbt=False)
    with pytest.raises(LabelContentError):
        LabelContent("CHA99992600001", good.coi_printed, good.item, good.payload)
    with pytest.raises(LabelContentError):
        LabelContent(good.coi, good.coi_printed, "f00001", good.payload)
    with pytest.raises(LabelContentError):
        LabelContent(good.coi, "CHA999926999999 X", good.item, good.payload)
    with pytest.raises(LabelContentError):
        LabelContent(good.coi, good.coi_printed, good.item, good.payload, extra_lines=("a\nb",))
    with pytest.raises(LabelContentError):
        LabelContent(good.coi, good.coi_printed, good.item, good.payload, patient_text=" ")
    with pytest.raises(LabelContentError):
        IsbtContent("A9999 26 000001", "KK", "=A99992600000100")


def test_printed_coi_carries_the_check_character() -> None:
    content = make_content(serial=5)
    coi_id = isbt.coi_id_from_text(content.coi)
    assert content.coi_printed == f"{content.coi} {isbt.mod37_2(content.coi)}"
    assert content.coi_printed == coi_id.printed()


def test_patient_text_is_printed_only_when_given() -> None:
    without = plan(make_content(), "4x2", 300)
    with_patient = plan(make_content(patient="Pat. initials J.D."), "4x2", 300)
    assert "Pat. initials J.D." not in [t.text for t in without.texts]
    assert "Pat. initials J.D." in [t.text for t in with_patient.texts]


def test_text_that_does_not_fit_is_refused_not_cut() -> None:
    with pytest.raises(LabelLayoutError, match="wide"):
        plan(make_content(extra=("W" * 60,)), "2x1", 203)
    with pytest.raises(LabelLayoutError, match="too many"):
        plan(make_content(extra=tuple(f"line {n}" for n in range(12))), "2x1", 300)


def test_every_format_places_the_same_plan() -> None:
    content = make_content()
    p: LabelPlan = plan(content, "2x1", 203)
    zpl = render_zpl(content, "2x1", 203)
    (qr,) = [f for f in zpl_fields(zpl) if f[2].startswith("^BQ")]
    assert (qr[0], qr[1]) == (p.qr.x, p.qr.y)
    svg = render_svg(content, "2x1", 203)
    assert f'd="M{p.qr.x} {p.qr.y}h' in svg  # a QR's first row starts with its finder pattern
