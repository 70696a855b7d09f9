"""``coi report BUNDLE -o report.pdf``: the audit copy an auditor files, checked as a reader
would see it — rendered to an image with ``pdftoppm`` and read back with ``pdftotext``.

The bundle is a real export of a demo product that had a temperature excursion: its deviation
was opened automatically, given a disposition by QA and closed. The PDF must show every entry
with the local date-time and zone, every signature with printed name and meaning, the recorded
values by title and unit (timestamps as date-times, never epoch milliseconds), and the
deviation with its disposition; a damaged bundle gives a PDF that says verification failed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from tests.tui_support import open_service

pytestmark = [pytest.mark.xdist_group("tui"),
              pytest.mark.skipif(shutil.which("pdftoppm") is None
                                 or shutil.which("pdftotext") is None,
                                 reason="needs poppler-utils (pdftoppm, pdftotext)")]
runner = CliRunner()


def _product_with_a_disposition(db: Path) -> str:
    svc, _clock = open_service(db)
    try:
        for row in svc.products(limit=100):
            state = svc.show(row["coi"])["state"] or {}
            if any(d["disposition"] for d in state.get("deviations", {}).values()):
                return str(row["coi"])
    finally:
        svc.ledger.engine.dispose()
    raise AssertionError("the demo has no deviation with a disposition")


def _text(pdf: Path) -> str:
    done = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=120)
    return done.stdout


@pytest.fixture
def bundle(db: Path, tmp_path: Path) -> tuple[Path, str, str]:
    coi = _product_with_a_disposition(db)
    out = tmp_path / "bundle.jsonl"
    r = runner.invoke(app, ["export", "--coi", coi, "-q", "-o", str(out), "--db", str(db)])
    assert r.exit_code == 0, r.output
    key = runner.invoke(app, ["log-key", "--db", str(db)]).stdout.strip()
    return out, coi, key


@pytest.mark.req("COPIES")
def test_the_pdf_copy_reads_as_an_auditor_needs(bundle: tuple[Path, str, str],
                                                tmp_path: Path) -> None:
    path, coi, key = bundle
    pdf = tmp_path / "report.pdf"
    r = runner.invoke(app, ["report", str(path), "-o", str(pdf), "--trust", key])
    assert r.exit_code == 0, r.output
    assert "human-readable copy (PDF) written to" in r.stdout
    assert pdf.read_bytes().startswith(b"%PDF-")

    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True, timeout=120)
    png = tmp_path / "page-1.png"
    assert png.exists() and png.stat().st_size > 10_000  # a real page, not a blank one

    text = _text(pdf)
    flat = " ".join(text.split())
    assert "Chain-of-identity audit copy" in flat
    assert "Verified:" in flat and "against the trusted site key" in flat
    assert f"Product {coi}" in flat
    # local date-time with the zone and its offset
    assert re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} CES?T\s+\(UTC\+0[12]:00,\s+"
                     r"Europe/Paris\)", text)
    # signatures with printed names and meanings; a witness named as such
    assert "Alice Apheresis (alice) - authored" in flat
    assert "Maya Manufacturing (maya) - authored" in flat
    assert "Mo Manufacturing (mo) - witnessed (witness)" in flat
    # values by title and unit; a timestamp field as a date-time, never epoch milliseconds
    assert "Collected volume: 250 mL" in flat
    assert re.search(r"Collection started: 20\d\d-\d\d-\d\d \d\d:\d\d", flat)
    assert not re.search(r"\b1[6-9]\d{11}\b", flat)
    # the deviation with its disposition and closure, signed by QA
    assert "Deviations and their disposition" in flat
    assert "temperature_excursion" in flat
    assert "Disposition: proceed" in flat and "Grace QA (grace) - reviewed" in flat
    assert "Closing summary:" in flat
    assert "Key events" in flat


def test_a_damaged_bundle_gives_a_pdf_that_says_so(bundle: tuple[Path, str, str],
                                                   tmp_path: Path) -> None:
    path, _coi, key = bundle
    damaged = tmp_path / "damaged.jsonl"
    raw = path.read_bytes()
    damaged.write_bytes(raw.replace(b"Maya", b"Mara", 1) if b"Maya" in raw else raw[:-20])
    pdf = tmp_path / "bad.pdf"
    r = runner.invoke(app, ["report", str(damaged), "-o", str(pdf), "--trust", key])
    assert r.exit_code == 1
    assert r.stderr.startswith("coi: verification FAILED; the report at")
    flat = " ".join(_text(pdf).split())
    assert "Verification FAILED" in flat and "Nothing in this bundle can be relied on" in flat
    assert "Product" not in flat


def test_an_existing_pdf_is_kept_without_force(bundle: tuple[Path, str, str],
                                               tmp_path: Path) -> None:
    path, _coi, key = bundle
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"keep me")
    r = runner.invoke(app, ["report", str(path), "-o", str(pdf), "--trust", key])
    assert r.exit_code == 2 and "--force" in r.stderr
    assert pdf.read_bytes() == b"keep me"
    r = runner.invoke(app, ["report", str(path), "-o", str(pdf), "--trust", key, "--force"])
    assert r.exit_code == 0, r.output
    assert pdf.read_bytes().startswith(b"%PDF-")
