"""``coi label``, ``coi labels …`` and ``coi parse`` through the real Typer app.

Every ``coi label`` output is decoded with zxing-cpp (PNG as written, SVG rasterised by resvg,
PDF by PDFium at 300 dpi, ZPL field data re-encoded at the printer's magnification) and the
decoded text parsed back to the product it names. One demo site per module. FIN A9999 only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain import payload
from coi.domain.scan import CompoundScan, LabelScan, parse_scan
from coi.labels.symbols import datamatrix_symbol, qr_symbol
from coi.labels.zpl import zpl_unescape
from coi.service import demo
from tests.test_labels import (
    decode,
    png_image,
    rasterise_pdf,
    scanned,
    symbol_image,
    zpl_fields,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[demo.Site, Path]:
    d = tmp_path_factory.mktemp("cli-labels")
    s = demo.create_site(str(d / "coi.db"), clock=demo.MovableClock(1_780_000_000_000))
    return s, d


_SEQ = iter(range(1, 10_000))


def collected(site: demo.Site) -> demo.Walk:
    clock = site.svc.clock
    assert isinstance(clock, demo.MovableClock)
    w = demo.Walk(seq=next(_SEQ))
    clock.set(clock.now_ms() + demo.D)
    demo.enrol(site, w)
    demo.step(site, w, 0, clock.now_ms())
    return w


def run(d: Path, *args: str, user: str | None = None) -> tuple[int, str, str]:
    extra: list[str] = ["--db", str(d / "coi.db")]
    if user is not None:
        pw = d / f"{user}.pw"
        pw.write_text(demo.demo_password(user) + "\n")
        extra += ["--as", user, "--password-file", str(pw)]
    result = runner.invoke(app, [*args, *extra])
    return result.exit_code, result.stdout, result.stderr


def images(fmt: str, path: Path) -> list[Image.Image]:
    """What a scanner sees of the written file."""
    if fmt == "png":
        return [png_image(path.read_bytes())]
    if fmt == "svg":
        resvg_py = pytest.importorskip("resvg_py")
        return [png_image(bytes(resvg_py.svg_to_bytes(svg_string=path.read_text(), dpi=300.0)))]
    if fmt == "pdf":
        return rasterise_pdf(path.read_bytes())
    fields = zpl_fields(path.read_text())
    (qr,) = [f for f in fields if f[2].startswith("^BQ")]
    mag = int(qr[2].split(",")[2])
    assert qr[4].startswith("MA,")
    out = [symbol_image(qr_symbol(qr[4][3:]), mag)]
    for _x, _y, command, fh, data in fields:
        if command.startswith("^BX"):
            message = zpl_unescape(data) if fh else data
            out.append(symbol_image(datamatrix_symbol(message), int(command.split(",")[1])))
    return out


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf", "zpl"])
def test_coi_label_output_decodes_and_parses_back_to_the_product(
    site: tuple[demo.Site, Path], tmp_path: Path, fmt: str
) -> None:
    s, d = site
    w = collected(s)
    out = tmp_path / f"label.{fmt}"
    code, stdout, stderr = run(d, "label", w.coi.lower(), "--format", fmt, "--isbt",
                               "--product-code", "S1234100", "-o", str(out), user="alice")
    assert code == 0, stderr
    lid = f"L-{w.coi}-C00001-1"
    assert f"label {lid} printed" in stdout
    qrs: list[str] = []
    dms: list[str] = []
    for image in images(fmt, out):
        qrs += [scanned(b) for b in decode(image, zxingcpp.BarcodeFormat.QRCode)]
        dms += [scanned(b) for b in decode(image, zxingcpp.BarcodeFormat.DataMatrix)]
    assert len(qrs) == 1 and len(dms) == 1
    label = parse_scan(qrs[0] + "\r")
    assert isinstance(label, LabelScan)
    assert (label.label.coi, label.label.item) == (w.coi, "C00001")
    compound = parse_scan(dms[0])
    assert isinstance(compound, CompoundScan)
    texts = {json.dumps(x, sort_keys=True) for x in compound.to_json()["structures"]}
    assert any(w.coi in t for t in texts) and any(w.din in t for t in texts)
    assert any("S1234" in t for t in texts)

    # The printed label confirms its own application; then it is reconciled.
    code, stdout, stderr = run(d, "labels", "apply", w.coi, lid, "--scan", qrs[0], user="alice")
    assert code == 0, stderr
    code, stdout, _ = run(d, "labels", "list", w.coi, "--json")
    assert code == 0 and [r["outcome"] for r in json.loads(stdout)] == ["applied"]


def test_reprint_void_check_and_list(site: tuple[demo.Site, Path], tmp_path: Path) -> None:
    s, d = site
    w = collected(s)
    code, _, err = run(d, "label", w.coi, "--format", "zpl", "--dpi", "300", "-o",
                       str(tmp_path / "a.zpl"), user="alice")
    assert code == 0, err
    old = f"L-{w.coi}-C00001-1"
    code, stdout, err = run(d, "labels", "reprint", w.coi, old, "--grounds", "torn",
                            "--format", "png", "-o", str(tmp_path / "b.png"), user="alice")
    assert code == 0, err
    new = f"L-{w.coi}-C00001-2"
    assert f"label {new} replaces {old}" in stdout

    old_scan = payload.encode(w.coi, "C00001")
    code, stdout, err = run(d, "labels", "check", "--scan", old_scan, "--coi", w.coi,
                            user="alice")
    assert code == 1 and "superseded" in err and "recorded as entry" in err
    code, stdout, err = run(d, "labels", "check", "--scan", payload.encode(w.coi, "C01001"),
                            "--coi", w.coi, user="alice")
    assert code == 0, err
    assert json.loads(stdout)["label"] == new

    code, stdout, _ = run(d, "labels", "list", w.coi)
    assert code == 0
    assert "1 OUTSTANDING" in stdout and "VOIDED" in stdout and "grounds: torn" in stdout
    code, _, err = run(d, "labels", "void", w.coi, new, "--grounds", "wrong bag", user="alice")
    assert code == 0, err
    code, stdout, _ = run(d, "labels", "list", w.coi)
    assert "all accounted for" in stdout
    code, _, err = run(d, "labels", "void", w.coi, "L-NOPE", "--grounds", "x", user="alice")
    assert code == 1 and "no label L-NOPE" in err

    # Label events are entries on the product: coi show lists them.
    code, stdout, _ = run(d, "show", w.coi)
    assert code == 0
    for title in ("Label issued", "Label printed", "Label voided", "Label reprinted"):
        assert title in stdout


def test_coi_label_refuses_hostile_arguments(site: tuple[demo.Site, Path],
                                             tmp_path: Path) -> None:
    s, d = site
    w = collected(s)
    existing = tmp_path / "keep.png"
    existing.write_bytes(b"keep")
    cases = [
        (["--format", "gif", "-o", str(tmp_path / "x.gif")], 2, "format"),
        (["--format", "png", "-o", str(existing)], 2, "never overwritten"),
        (["--format", "png", "--size", "9x9", "-o", str(tmp_path / "x.png")], 2, "size"),
        (["--format", "png", "--product-code", "S1234100", "-o", str(tmp_path / "x.png")], 2,
         "add --isbt"),
        (["--format", "png", "--isbt", "--product-code", "S12341\x1b[2J", "-o",
          str(tmp_path / "x.png")], 2, "product code"),
        (["--format", "png", "--item", "F00001", "-o", str(tmp_path / "x.png")], 1,
         "does not belong"),
    ]
    for args, want, words in cases:
        code, _, err = run(d, "label", w.coi, *args, user="alice")
        assert code == want and words in err, (args, err)
        assert "\x1b" not in err
    code, _, err = run(d, "label", "CHA999926ZZZZZZ", "--format", "png", "-o",
                       str(tmp_path / "x.png"), user="alice")
    assert code == 1 and "no product" in err
    # A courier may not issue labels: refused by the process, and the refusal recorded.
    code, _, err = run(d, "label", w.coi, "--format", "png", "-o", str(tmp_path / "x.png"),
                       user="colin")
    assert code == 1 and "recorded as entry" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]
    assert existing.read_bytes() == b"keep"


def test_coi_parse_prints_json_and_exit_codes() -> None:
    coi = "CHA999926000001"
    good = payload.encode(coi, "F01001")
    result = runner.invoke(app, ["parse", f"]Q1{good.lower()}"])
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert (out["kind"], out["coi"], out["item"], out["symbology"]) == (
        "label", coi, "F01001", "]Q1")
    assert out["label_code"] == {"item": "F00001", "generation": 1}

    compound = "=+03000&/CHA999925000001=A99992500012365=<S1234100"
    for spelled in (compound, compound.replace("=A", "\\x1d=A"), compound.replace("=A", "<GS>=A")):
        result = runner.invoke(app, ["parse", spelled])
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["kind"] == "compound"
    result = runner.invoke(app, ["parse", "]C0=A99992500012365" + "\\x1d" + "=<S1234100"])
    assert result.exit_code == 0 and json.loads(result.stdout)["source"] == "concatenation"

    for bad, words in ((good[:-1] + ("A" if good[-1] != "A" else "B"), "check character"),
                       ("\x1b[31mCOI1", "control character"), ("hello", "not a code coi reads"),
                       ("X" * 600, "characters long")):
        result = runner.invoke(app, ["parse", bad])
        assert result.exit_code == 1, bad
        assert words in result.stderr and "\x1b" not in result.stderr
        assert result.stdout == ""


def test_parse_reads_stdin() -> None:
    result = runner.invoke(app, ["parse", "-"], input="=A99992500012365\r\n")
    assert result.exit_code == 0 and json.loads(result.stdout)["kind"] == "din"


@pytest.mark.parametrize("command", [["label"], ["labels"], ["labels", "apply"],
                                     ["labels", "void"], ["labels", "reprint"],
                                     ["labels", "check"], ["labels", "list"], ["parse"]])
def test_every_label_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout
