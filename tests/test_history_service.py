"""QC history, exceptional release and final states through the service, the CLI's `coi show`,
the audit copy and `coi verify`: a real site (template copy), real keys, real SQLite."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.export.report import render
from coi.service.errors import Refused
from coi.service.ledger import Unlocked
from tests.chain_site import MIN, ChainSite, H, PWalk, copy_site, new_walk, walk

runner = CliRunner()
PASSING = {"sterility": "no_growth", "endotoxin": "0.5", "mycoplasma": "not_detected",
           "car_expression": "42.0", "vector_copy_number": "1.8"}


@dataclass
class Story:
    site: ChainSite
    w: PWalk
    fail: int
    retest: int
    deviation: int
    request: int
    release: int
    destroyed: int


def _rec(site: ChainSite, step: str, coi: str, who: str | Unlocked, *,
         witness: str | None = None, item: str | None = None, **fields: str) -> Any:
    site.advance(10 * MIN)
    actor = site.people[who] if isinstance(who, str) else who
    return site.svc.record(step, coi, actor=actor, item=item, fields=fields,
                           witness=site.people[witness] if witness else None)


def _oos_release(site: ChainSite, w: PWalk, *, reason: str, rationale: str, physician: str,
                 justification: str) -> tuple[int, int, int, int, int]:
    """Passing QC but one failed viability result, its retest, QA's "proceed", the physician's
    request and QA's release naming it: (fail, retest, deviation, request, release)."""
    walk(site, w, until="qc_result")
    site.advance(H)
    for test, value in PASSING.items():
        _rec(site, "qc_result", w.coi, "quinn", test=test, result="pass", value=value)
    fail = _rec(site, "qc_result", w.coi, "quinn", test="viability", result="fail", value="55")
    [dev] = fail.auto_deviations
    retest = _rec(site, "qc_result", w.coi, "quinn", test="viability", result="pass",
                  value="81", retest_of=str(fail.entry.index), retest_reason=reason)
    _rec(site, "deviation_disposition", w.coi, "grace", deviation=str(dev),
         disposition="proceed", rationale=rationale)
    site.svc.ledger.enrol(site.people["admin"], user="pia", name=physician,
                          roles=["physician"], password="pia-password-1234")
    pia = site.svc.ledger.unlock("pia", "pia-password-1234")
    request = _rec(site, "exceptional_release_request", w.coi, pia, justification=justification)
    release = _rec(site, "qa_release", w.coi, "grace", certificate_id="COA0099",
                   physician_request=str(request.entry.index))
    return fail.entry.index, retest.entry.index, dev, request.entry.index, release.entry.index


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    base = tmp_path_factory.getbasetemp()
    site = copy_site(base / "chain-template", tmp_path_factory.mktemp("history"))
    w = new_walk(site, bags=3)
    indexes = _oos_release(site, w, reason="OOS investigation: sample handling",
                           rationale="Investigation complete; benefit outweighs risk",
                           physician="Dr Pia Physician",
                           justification="No alternative therapy for this patient")
    destroyed = _rec(site, "destruction", w.coi, "maya", witness="mo", item="F00003",
                     grounds="Bag cracked in the dry shipper check", method="autoclave")
    return Story(site, w, *indexes, destroyed.entry.index)


@pytest.mark.req("RELEASE-QA")
def test_show_keeps_the_failure_and_the_exceptional_release(story: Story) -> None:
    view = story.site.svc.show(story.w.coi)
    viability = [q for q in view["qc_history"] if q["test"] == "viability"]
    assert [(q["index"], q["result"]) for q in viability] == [(story.fail, "fail"),
                                                             (story.retest, "pass")]
    assert viability[1]["retest_of"] == story.fail
    [x] = view["exceptional_releases"]
    assert (x["release"], x["request"]) == (story.release, story.request)
    assert x["requested_by"][0]["name"] == "Dr Pia Physician"
    [qa] = x["oos_dispositions"]
    assert (qa["deviation"], qa["disposition"]) == (story.deviation, "proceed")
    assert [s["name"] for s in qa["by"]] == ["Grace QA"]
    assert qa["rationale"] == "Investigation complete; benefit outweighs risk"
    story.site.svc.ledger.engine.dispose()
    res = runner.invoke(app, ["show", story.w.coi, "--db", story.site.db])
    assert res.exit_code == 0, res.output
    assert f"QC #{story.fail}: viability FAIL 55 %" in res.stdout
    assert f"(retest of {story.fail}: OOS investigation: sample handling)" in res.stdout
    assert f"EXCEPTIONAL RELEASE at entry {story.release}" in res.stdout
    [line] = [ln for ln in res.stdout.splitlines() if "EXCEPTIONAL RELEASE" in ln]
    assert "Dr Pia Physician (pia, authored): No alternative therapy for this patient" in line
    # QA's dispositions of the OOS deviations are on the same line: what, who, why
    assert (f"QA's dispositions: OOS deviation #{story.deviation} proceed at entry {qa['at']} by "
            "Grace QA (grace, reviewed): Investigation complete; benefit outweighs risk") in line


@pytest.mark.req("COPIES")
def test_the_audit_copy_shows_every_qc_result_and_the_physicians_request(
        story: Story, tmp_path: Path) -> None:
    site = story.site
    site.svc.ledger.engine.dispose()
    bundle = tmp_path / "coi.jsonl"
    res = runner.invoke(app, ["export", "--coi", story.w.coi, "-o", str(bundle), "-q",
                              "--db", site.db, "--log-key", str(site.log_key)])
    assert res.exit_code == 0, res.output
    html, ok = render(bundle, site.svc.ledger.log_verifier_key())
    assert ok
    assert "QC results (every result; none is ever replaced)" in html
    assert f'<a href="#e{story.fail}">{story.fail}</a></td><td>viability</td><td class="bad">' \
           "fail</td>" in html
    assert f'<a href="#e{story.fail}">entry {story.fail}</a>' in html
    assert f"Exceptional release (entry <a href=\"#e{story.release}\">" in html
    assert "Dr Pia Physician" in html and "No alternative therapy for this patient" in html
    assert f"OOS deviation {story.deviation}, QA disposition" in html


@pytest.mark.req("TRACKING", "TWO-PERSON")
def test_destruction_ends_the_bag_with_a_witness_and_verify_replays_it(story: Story) -> None:
    site, coi = story.site, story.w.coi
    product = site.svc.chain().product(coi)
    assert product is not None
    assert product.items["F00003"].status == "destroyed"
    entry = site.entry(story.destroyed)
    assert entry["data"]["grounds"] == "Bag cracked in the dry shipper check"
    assert len(entry["statement"]["signers"]) == 2
    size = site.entry_count()
    with pytest.raises(Refused) as exc:
        _rec(site, "destruction", coi, "maya", item="F00002", grounds="x", method="other")
    assert "witness" in exc.value.reason
    assert exc.value.recorded_index == size
    assert site.svc.chain().product(coi).items["F00002"].status == "released"  # type: ignore
    with pytest.raises(Refused) as exc:
        _rec(site, "disposal", coi, "maya", item="F00003", grounds="again")
    assert "F00003 is already 'destroyed'" in exc.value.reason
    site.svc.verify()


def _pdf_of(site: ChainSite, coi: str, tmp_path: Path) -> str:
    site.svc.ledger.engine.dispose()
    bundle = tmp_path / "coi.jsonl"
    res = runner.invoke(app, ["export", "--coi", coi, "-o", str(bundle), "-q",
                              "--db", site.db, "--log-key", str(site.log_key)])
    assert res.exit_code == 0, res.output
    pdf = tmp_path / "report.pdf"
    res = runner.invoke(app, ["report", str(bundle), "-o", str(pdf), "--trust",
                              site.svc.ledger.log_verifier_key()])
    assert res.exit_code == 0, res.output
    return _pdf_text(pdf)


def _pdf_text(pdf: Path) -> str:
    done = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=120)
    return done.stdout


@pytest.mark.req("COPIES")
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_the_pdf_copy_shows_the_failure_the_retest_and_the_exceptional_release(
        story: Story, tmp_path: Path) -> None:
    text = _pdf_of(story.site, story.w.coi, tmp_path)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert "QC results (every result; none is ever replaced)" in lines
    # the failure stays, and the retest names it and says why it was repeated
    assert any(line.startswith(f"{story.fail} viability fail 55 % Quinn QC (quinn) - authored")
               for line in lines), text
    assert any(line.startswith(f"{story.retest} viability pass 81 % entry {story.fail} OOS "
                               "investigation: sample handling Quinn QC") for line in lines), text
    flat = " ".join(text.split())
    assert f"Exceptional release (entry {story.release})" in flat
    assert f"Released entry {story.release}, " in flat and "Grace QA (grace) - released" in flat
    assert f"Requested by the treating physician (entry {story.request})" in flat
    assert "Dr Pia Physician (pia) - authored" in flat
    assert "No alternative therapy for this patient" in flat
    assert f"OOS deviation {story.deviation}, QA disposition" in flat
    assert "Grace QA (grace) - reviewed Disposition: proceed Rationale: Investigation complete; " \
           "benefit outweighs risk" in flat


def test_show_escapes_qa_dispositions_from_the_ledger() -> None:
    from coi.cli.readable import _dispositions
    hostile = [{"deviation": 7, "disposition": "proceed\x1b[2J", "at": 9,
                "by": [{"name": "Eve\u202eQA", "user": "eve", "meaning": "reviewed"}],
                "rationale": "ok\rFORGED\x07"},
               {"deviation": 8, "disposition": None, "at": None, "by": [], "rationale": None}]
    line = _dispositions(hostile)
    assert not any(ord(c) < 32 or c == "\u202e" for c in line), line
    assert line.startswith("OOS deviation #7 proceed")
    assert "OOS deviation #8 none recorded" in line
    assert _dispositions([]) == "none recorded"


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_the_pdf_qc_and_release_sections_show_ledger_text_as_written(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Text that looks like reportlab markup is printed as written, never interpreted."""
    base = tmp_path_factory.getbasetemp()
    site = copy_site(base / "chain-template", tmp_path_factory.mktemp("hostile"))
    w = new_walk(site, bags=2)
    _oos_release(site, w, reason="<b>re-run</b> & <font size=40>x</font>",
                 rationale="ok <br/> &amp; Łódź", physician="Dr <i>Ana</i> & Søn",
                 justification="<para>no alternative</para> & urgent")
    flat = " ".join(_pdf_of(site, w.coi, tmp_path).split())
    sections = flat[flat.index("QC results (every result"):flat.index("Key events (who")]
    for written in ("<b>re-run</b> & <font size=40>x</font>", "ok <br/> &amp; Łódź",
                    "Dr <i>Ana</i> & Søn (pia) - authored",
                    "<para>no alternative</para> & urgent"):
        assert written in sections, written
