"""Every character of the ledger's text reaches the PDF copies readably, on any machine.

The PDFs embed a TrueType font (DejaVu Sans where the system has it, else Bitstream Vera Sans from
reportlab's own package); a character the font cannot draw, and every invisible one, is shown as
``<U+XXXX>`` and the legend says so. Checked as a reader sees it: the PDF read back with
``pdftotext``, its fonts listed with ``pdffonts``, for both fonts (so a machine without DejaVu is
covered here too), and for any text at all with hypothesis.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from xml.sax.saxutils import unescape

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import Paragraph, SimpleDocTemplate
from typer.testing import CliRunner

from coi.cli.main import app
from coi.export.pdf_text import PdfFont, bundled_font, drawable, pdf_text, system_font
from coi.export.report_pdf import write_report_pdf
from coi.export.validation_pdf import write_validation_pdf
from coi.ledger.keys import generate
from coi.service.demo import demo_password
from coi.service.ledger import Unlocked
from tests.tui_support import open_service

POPPLER = all(shutil.which(t) for t in ("pdftotext", "pdffonts"))
runner = CliRunner()

NAMES = {"lukasz": ("Łukasz Wąs", "qa"), "zoe": ("Zoë Ωmega", "manufacturing"),
         "li": ("李小龙", "qa")}
DESCRIPTION = "Bag 2 label smudged → relabelled; Δt ≥ 5 min; <b>not bold</b> & <U+0041>"
RATIONALE = "Łukasz checked: temperature ≤ 8 °C → proceed (李小龙 agrees)"


def _fonts() -> list[Any]:
    dejavu = pytest.mark.skipif(system_font() is None, reason="this system has no DejaVu Sans")
    return [pytest.param("bundled", id="vera"), pytest.param("system", id="dejavu",
                                                               marks=dejavu)]


def _font(which: str) -> PdfFont:
    font = bundled_font() if which == "bundled" else system_font()
    assert font is not None
    return font


def read_back(shown: str) -> str:
    """The original text from what :func:`drawable` shows (every ``<U+XXXX>`` is an escape)."""
    return re.sub(r"<U\+([0-9A-F]{4,6})>", lambda m: chr(int(m.group(1), 16)), shown)


def _pdf_text(pdf: Path) -> str:
    out = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return " ".join(out.split())


def _pdf_fonts(pdf: Path) -> list[str]:
    out = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    return out.splitlines()[2:]


def _only_embedded(pdf: Path, font: PdfFont) -> None:
    """Every piece of text in the PDF is set in the embedded font (no built-in Helvetica)."""
    rows = _pdf_fonts(pdf)
    assert rows
    for row in rows:
        name = row.split()[0].split("+")[-1]  # a subset's name: ABCDEF+PostScriptName
        assert name.startswith(font.label.replace(" ", "")) and " yes " in row, row


@pytest.fixture
def unicode_bundle(db: Path, tmp_path: Path) -> tuple[Path, str, str]:
    """A demo product whose deviation is opened, dispositioned and closed by people whose
    printed names are Polish, Greek and Chinese, with arrows and signs in the texts."""
    svc, _clock = open_service(db)
    try:
        admin = svc.ledger.unlock("admin", demo_password("admin"))
        people: dict[str, Unlocked] = {}
        for user, (name, role) in NAMES.items():
            key = generate()
            svc.ledger.enrol(admin, user=user, name=name, roles=[role],
                             password=f"{user}-password-2026", key=key)
            people[user] = Unlocked(user, key)
        coi = str(svc.products(limit=1)[0]["coi"])
        opened = svc.record("deviation_open", coi, actor=people["zoe"],
                            fields={"kind": "other", "description": DESCRIPTION})
        index = str(opened.entry.index)
        svc.record("deviation_disposition", coi, actor=people["lukasz"],
                   fields={"deviation": index, "disposition": "proceed", "rationale": RATIONALE})
        svc.record("deviation_close", coi, actor=people["li"],
                   fields={"deviation": index, "summary": "閉じた — done ✓"})
    finally:
        svc.ledger.engine.dispose()
    out = tmp_path / "bundle.jsonl"
    r = runner.invoke(app, ["export", "--coi", coi, "-q", "-o", str(out), "--db", str(db)])
    assert r.exit_code == 0, r.output
    key = runner.invoke(app, ["log-key", "--db", str(db)]).stdout.strip()
    return out, coi, key


@pytest.mark.req("COPIES")
@pytest.mark.xdist_group("tui")
@pytest.mark.skipif(not POPPLER, reason="needs poppler-utils (pdftotext, pdffonts)")
@pytest.mark.parametrize("which", _fonts())
def test_names_and_reasons_outside_latin1_reach_the_pdf(
        unicode_bundle: tuple[Path, str, str], tmp_path: Path, which: str) -> None:
    path, coi, key = unicode_bundle
    font = _font(which)
    pdf = tmp_path / "report.pdf"
    assert write_report_pdf(path, pdf, key, font=font)
    text = _pdf_text(pdf)
    assert f"Product {coi}" in text
    # the legend, once, naming the font
    assert text.count("is shown as <U+XXXX>") == 1 and f"set in {font.label}" in text
    # each name and reason as the font draws it: its own characters, escapes for the others
    for name, _role in NAMES.values():
        assert drawable(name, font) in text
    assert f"{drawable('Łukasz Wąs', font)} (lukasz) - reviewed" in text
    assert f"{drawable('Zoë Ωmega', font)} (zoe) - authored" in text
    assert "<U+674E><U+5C0F><U+9F99> (li) - reviewed" in text  # CJK: in neither font
    for part in DESCRIPTION.split(";") + RATIONALE.split(":"):
        assert drawable(part.strip(), font) in text, part
    # what both fonts draw is never escaped; what neither draws always is
    assert "Ł" in text and "Ω" in text and "≥" in text and "Zoë" in text
    assert "<U+0141>" not in text and "<U+03A9>" not in text
    if which == "system":
        assert "Łukasz Wąs" in text and "→" in text and "Δt" in text
    else:
        assert "W<U+0105>s" in text and "<U+2192>" in text and "<U+0394>t" in text
    # markup in ledger text is text, and a literal "<U+" cannot pass for an escape
    assert "<b>not bold</b> & <U+003C>U+0041>" in text
    _only_embedded(pdf, font)


@pytest.mark.skipif(not POPPLER, reason="needs poppler-utils (pdftotext, pdffonts)")
@pytest.mark.parametrize("which", _fonts())
def test_the_validation_pdf_embeds_the_font_and_escapes_too(tmp_path: Path, which: str
                                                            ) -> None:
    font = _font(which)
    report = {
        "result": "PASSED", "summary": "All requirements met → ready ≥ today",
        "system": {"executor": "Łukasz Wąs 李", "host": "lab\x07one"},
        "installation": [{"name": "fonts", "status": "passed", "detail": "Ωmega <i>&"}],
        "requirements": [{"id": "R1", "clause": "§11.50", "source": "21 CFR 11",
                          "statement": "Signed records show the printed name",
                          "outcome": "passed",
                          "tests": [{"node": "t::x", "outcome": "passed", "detail": "Zoë"}]}],
        "deviations": ["Δ in 李 report"],
    }
    pdf = tmp_path / "validation.pdf"
    write_validation_pdf(report, pdf, font)
    text = _pdf_text(pdf)
    assert text.count("is shown as <U+XXXX>") == 1
    assert drawable("Łukasz Wąs", font) + " <U+674E>" in text
    assert "lab<U+0007>one" in text and "Ωmega <i>&" in text and "Zoë" in text
    assert drawable("All requirements met → ready ≥ today", font) in text
    _only_embedded(pdf, font)


def _one_paragraph_pdf(markup: str, font: PdfFont) -> bytes:
    buf = io.BytesIO()
    style = ParagraphStyle("t", fontName=font.family, fontSize=10, leading=12)
    SimpleDocTemplate(buf).build([Paragraph(markup, style)])
    return buf.getvalue()


@pytest.mark.parametrize("which", _fonts())
@settings(max_examples=150)
@given(value=st.text())
@example(value="\ud800 lone surrogate, \x00\x1b[31m\u202e\u00a0\u00ad <<U+0041> \U0001f600 e\u0301")
def test_any_text_becomes_a_paragraph_the_font_draws_in_full(which: str, value: str) -> None:
    font = _font(which)
    markup = pdf_text(value, font)
    shown = unescape(markup)
    assert all(ch.isprintable() and ord(ch) in font.chars for ch in shown)
    assert read_back(shown) == value  # nothing dropped, and every escape is unambiguous
    assert _one_paragraph_pdf(markup, font).startswith(b"%PDF-")
