"""The audit copy and FHIR from real process data: a demo site, one product walked to formulation
with a temperature excursion (deviation opened, disposed and closed by QA) and a correction."""

from __future__ import annotations

import base64
import html as htmllib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.export.report import format_time, render
from coi.export.verifier import verify_bundle
from coi.service.demo import PLAN, MovableClock, Walk, create_site, enrol, step

T0 = 1_772_352_000_000  # 2026-03-01T08:00:00Z
H = 3_600_000
REASON = "Volume transcribed from the wrong line of the batch record"


@dataclass
class Real:
    db: str
    log_key: str
    trust: str
    coi: str
    formulation: int
    correction: int
    deviation: int
    disposition: int
    close: int
    bundle: Path
    html: str


def _plan(name: str) -> int:
    return next(n for n, p in enumerate(PLAN) if p[0] == name)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Real:
    d = tmp_path_factory.mktemp("real")
    db, key = str(d / "site.db"), str(d / "site.db.logkey")
    clock = MovableClock(T0)
    site = create_site(db, key, clock=clock)
    w = Walk(seq=1, bags=2, excursion=True)
    enrol(site, w)
    deviation = formulation = -1
    for n in range(_plan("formulation") + 1):
        clock.set(T0 + PLAN[n][1])
        rec = step(site, w, n, clock.now_ms())
        if PLAN[n][0] == "receipt_at_manufacturing":
            assert len(rec.auto_deviations) == 1  # logger = excursion opens one
            deviation = rec.auto_deviations[0]
            clock.set(clock.now_ms() + H)
            disp = site.svc.record("deviation_disposition", w.coi, actor=site.people["grace"],
                                   fields={"deviation": str(deviation), "disposition": "proceed",
                                           "rationale": "Within the validated stability data"})
            clock.set(clock.now_ms() + H)
            close = site.svc.record("deviation_close", w.coi, actor=site.people["grace"],
                                    fields={"deviation": str(deviation),
                                            "summary": "Closed after review of the logger"})
        if PLAN[n][0] == "formulation":
            formulation = rec.entry.index
    clock.set(clock.now_ms() + H)
    corr = site.svc.record("correction", w.coi, actor=site.people["maya"],
                           fields={"corrects": str(formulation), "reason": REASON,
                                   "volume_ml": "72"})
    site.svc.ledger.engine.dispose()
    bundle = d / "coi.jsonl"
    r = CliRunner().invoke(app, ["export", "--coi", w.coi, "-o", str(bundle), "-q", "--db", db,
                                 "--log-key", key])
    assert r.exit_code == 0, r.output
    trust = site.svc.ledger.log_verifier_key()
    text, ok = render(bundle, trust)
    assert ok
    return Real(db=db, log_key=key, trust=trust, coi=w.coi, formulation=formulation,
                correction=corr.entry.index, deviation=deviation,
                disposition=disp.entry.index, close=close.entry.index, bundle=bundle, html=text)


def _entries(bundle: Path) -> dict[int, dict[str, object]]:
    out = {}
    for line in bundle.read_bytes().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "entry":
            out[rec["index"]] = json.loads(base64.b64decode(rec["statement"]))
    return out


def _row(html: str, index: int) -> str:
    m = re.search(rf'<tr[^>]*><td><a id="e{index}"></a>{index}</td>(.*?)</tr>', html, re.S)
    assert m, f"no row for entry {index}"
    return m.group(1)


@pytest.mark.req("COPIES")
def test_the_real_bundle_verifies_with_the_site_key(real: Real) -> None:
    r = verify_bundle(real.bundle, real.trust)
    assert r.subjects == 1 and r.in_scope >= _plan("formulation") + 5


@pytest.mark.req("AUDIT-CORRECTIONS")
def test_correction_is_shown_beside_the_original_which_stays_visible(real: Real) -> None:
    original = _row(real.html, real.formulation)
    # The original value is still what the formulation row records ...
    assert "<code>70</code>" in original
    # ... and beside it: the correction, by whom, when, the change and the reason.
    assert f'Corrected by <a href="#e{real.correction}">entry {real.correction}</a>' in original
    assert "Maya Manufacturing" in original
    assert "<code>70</code> &rarr; <code>72</code>" in original
    assert htmllib.escape(REASON) in original
    assert "original ones, unchanged" in original
    corr = _row(real.html, real.correction)
    assert f'Corrects <a href="#e{real.formulation}">entry {real.formulation}</a>' in corr
    assert "Reason for the correction" in corr  # the process's field titles are used


@pytest.mark.req("DEVIATIONS")
def test_deviation_with_its_disposition_and_closure(real: Real) -> None:
    m = re.search(r"<h3>Deviations and their disposition</h3><table>(.*?)</table>", real.html,
                  re.S)
    assert m
    dev = m.group(1)
    assert f"<td>{real.deviation}: temperature_excursion</td>" in dev
    assert f'entry {real.disposition}</a>' in dev and f'entry {real.close}</a>' in dev
    assert "Disposition: <code>proceed</code>" in dev
    assert "Within the validated stability data" in dev
    assert "Closed after review of the logger" in dev
    assert dev.count("Grace QA (grace) &mdash; <b>") == 2  # QA signed both
    assert "has no disposition" not in real.html


@pytest.mark.req("SIG-MANIFEST")
def test_every_signer_with_printed_name_time_zone_meaning_and_witness(real: Real) -> None:
    entries = _entries(real.bundle)
    witnessed = 0
    for index, st in entries.items():
        row = _row(real.html, index)
        when = htmllib.escape(format_time(int(st["time"]), str(st["tz"])))  # type: ignore[call-overload]
        assert re.search(r"\(UTC[+-]\d\d:\d\d, Europe/Paris\)", when)
        for n, s in enumerate(st["signers"]):  # type: ignore[arg-type]
            role = "" if n == 0 else " (witness)" if s["meaning"] == "witnessed" else \
                " (co-signer)"
            expect = (f"{htmllib.escape(s['name'])} ({s['user']}) &mdash; <b>{s['meaning']}</b>"
                      f"{role}, signed {when}")
            assert expect in row, (index, expect)
            witnessed += s["meaning"] == "witnessed"
    assert witnessed >= 1  # the labelling, witnessed by amir
    assert "Amir Apheresis (amir) &mdash; <b>witnessed</b> (witness)" in real.html


def test_fhir_from_the_real_product(real: Real, tmp_path: Path) -> None:
    from fhir.resources.bundle import Bundle

    out = tmp_path / "fhir.json"
    r = CliRunner().invoke(app, ["export", "--fhir", "--coi", real.coi, "-o", str(out), "--db",
                                 real.db, "--log-key", real.log_key])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    Bundle.model_validate(doc)
    res = [e["resource"] for e in doc["entry"]]
    products = [x for x in res if x["resourceType"] == "BiologicallyDerivedProduct"]
    provs = {x["id"]: x for x in res if x["resourceType"] == "Provenance"}
    items = sorted(i["value"] for p in products for i in p["identifier"] if "/" in i["value"])
    assert items == [f"{real.coi}/C00001"]  # formulation: no final bags yet
    assert products[0]["biologicalSourceEvent"]["value"].startswith("A9999")
    entries = _entries(real.bundle)
    steps = sorted(i for i, st in entries.items() if str(st["type"]).startswith("step."))
    assert sorted(int(k.split("-")[1]) for k in provs) == steps
    labelling = next(p for p in provs.values()
                     if p["activity"]["coding"][0]["code"] == "step.labelling")
    assert [a["who"]["display"] for a in labelling["agent"]] == ["Alice Apheresis",
                                                                 "Amir Apheresis"]
    assert labelling["agent"][1]["type"]["coding"][0]["code"] == "WIT"
    assert all(len(p["signature"]) == len(p["agent"]) for p in provs.values())
