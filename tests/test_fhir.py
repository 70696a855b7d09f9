"""FHIR R5: products and provenance from signed statements, validated with fhir.resources."""

from __future__ import annotations

from typing import Any

from fhir.resources.biologicallyderivedproduct import BiologicallyDerivedProduct
from fhir.resources.bundle import Bundle
from fhir.resources.provenance import Provenance

from coi.domain.loader import load_process
from coi.export.fhir import COI_SYSTEM, ISBT128, fhir_bundle
from coi.ledger.entry import SignerRef, Statement

COI = "CHA99992612345X"
ALICE = SignerRef("alice", bytes([1]) * 32, "Alice Apheresis", "authored")
BOB_W = SignerRef("bob", bytes([2]) * 32, "Bob Builder", "witnessed")
BOB = SignerRef("bob", bytes([2]) * 32, "Bob Builder", "authored")
CAROL = SignerRef("carol", bytes([3]) * 32, "Carol QA", "released")


def _st(index: int, type_: str, data: dict[str, Any], *signers: SignerRef) -> Statement:
    return Statement(log="coi.test/a9999", index=index, prev=bytes(32),
                     time_ms=1_767_225_600_000 + index * 60_000, tz="Europe/Paris", type=type_,
                     subject=COI, signers=signers, data=data)


def _chain() -> list[Statement]:
    return [
        _st(10, "step.enrolment", {"patient_commitment": "x", "treatment_site": "T1",
                                   "manufacturing_slot": "S"}, ALICE),
        _st(11, "step.apheresis_collection", {"din": "A999926123456", "volume_ml": 200}, ALICE),
        _st(12, "step.labelling", {"labels_applied": 1}, ALICE, BOB_W),
        _st(13, "custody.transfer", {"location": "dock", "item": "C00001"}, ALICE, BOB_W),
        _st(14, "note.comment", {"text": "not a step"}, ALICE),
        _st(15, "step.cryopreservation", {"bag_count": 2, "volume_ml_per_bag": "50"}, BOB,
            BOB_W.__class__("carol", bytes([3]) * 32, "Carol QA", "witnessed")),
        _st(16, "step.qa_release", {"certificate_id": "COA1"}, CAROL),
    ]


def test_bundle_validates_with_products_parents_and_provenance() -> None:
    sigs = {s.index: ["c2ln"] * len(s.signers) for s in _chain()}
    bundle = fhir_bundle(_chain(), load_process(), origin="coi.test/a9999", signatures=sigs)
    Bundle.model_validate(bundle)
    resources = [e["resource"] for e in bundle["entry"]]
    products = [r for r in resources if r["resourceType"] == "BiologicallyDerivedProduct"]
    provs = [r for r in resources if r["resourceType"] == "Provenance"]
    for r in products:
        BiologicallyDerivedProduct.model_validate(r)
    for r in provs:
        Provenance.model_validate(r)
    items = sorted(i["value"] for p in products for i in p["identifier"] if "/" in i["value"])
    assert items == [f"{COI}/C00001", f"{COI}/F00001", f"{COI}/F00002"]
    assert all({"system": COI_SYSTEM, "value": COI} in p["identifier"] for p in products)
    collection = next(p for p in products if p["identifier"][1]["value"].endswith("C00001"))
    assert collection["biologicalSourceEvent"] == {"system": ISBT128, "value": "A999926123456"}
    url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is collection)
    finals = [p for p in products if p is not collection]
    assert all(p["parent"] == [{"reference": url}] for p in finals)
    assert all(p["productStatus"]["display"] == "released" for p in finals)
    # One Provenance per step or hand-off (not for the free note), witnesses as agents.
    assert [p["id"] for p in provs] == ["entry-10", "entry-11", "entry-12", "entry-13",
                                       "entry-15", "entry-16"]
    labelling = next(p for p in provs if p["id"] == "entry-12")
    assert [a["who"]["display"] for a in labelling["agent"]] == ["Alice Apheresis",
                                                                 "Bob Builder"]
    assert labelling["agent"][1]["type"]["coding"][0]["code"] == "WIT"
    # local time of the site (Europe/Paris) with its offset: the same instant as 00:12 UTC
    assert labelling["recorded"] == "2026-01-01T01:12:00.000+01:00"
    assert len(labelling["signature"]) == 2
    handoff = next(p for p in provs if p["id"] == "entry-13")
    assert handoff["target"] == [{"reference": url}]
    enrol = next(p for p in provs if p["id"] == "entry-10")
    assert enrol["target"][0]["identifier"]["value"] == COI


def test_cli_fhir_export(tmp_path: Any, sqlite_ledger: Any) -> None:
    import json

    from typer.testing import CliRunner

    from coi.cli.main import app

    sqlite_ledger.svc.engine.dispose()
    out = tmp_path / "f.json"
    r = CliRunner().invoke(app, ["export", "--fhir", "--all", "-o", str(out), "--db",
                                 sqlite_ledger.db, "--log-key", str(sqlite_ledger.log_key)])
    assert r.exit_code == 0, r.output
    Bundle.model_validate(json.loads(out.read_text()))


def test_qc_history_exceptional_release_and_destruction_in_fhir() -> None:
    """A failed QC result stays on the products and in its Provenance; the retest and the
    exceptional release name what they rest on; a destroyed bag is unavailable."""
    pia = SignerRef("pia", bytes([4]) * 32, "Dr Pia Physician", "authored")
    chain = [*_chain()[:-1],
             _st(20, "step.qc_result", {"test": "viability", "result": "fail", "value": "50",
                                        "unit": "%"}, BOB),
             _st(21, "step.qc_result", {"test": "viability", "result": "pass", "value": "80",
                                        "unit": "%", "retest_of": 20,
                                        "retest_reason": "OOS investigation"}, BOB),
             _st(22, "step.exceptional_release_request", {"justification": "no other"}, pia),
             _st(23, "step.qa_release", {"certificate_id": "COA1", "physician_request": 22},
                 CAROL),
             _st(24, "step.destruction", {"grounds": "cracked", "method": "autoclave",
                                          "item": "F00002"}, BOB, BOB_W)]
    bundle = fhir_bundle(chain, load_process(), origin="coi.test/a9999")
    Bundle.model_validate(bundle)
    resources = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    finals = [r for r in resources.values() if r["resourceType"] == "BiologicallyDerivedProduct"
              and r["identifier"][1]["value"].split("/")[1].startswith("F")]
    for p in finals:
        shown = [x["valueString"] for x in p["property"]]
        assert shown == ["entry 20: viability: fail, 50 %",
                         "entry 21: viability: pass, 80 % (retest of entry 20: OOS "
                         "investigation)"]
    assert sorted(p["productStatus"]["display"] for p in finals) == ["destroyed", "released"]
    assert {p["productStatus"]["code"] for p in finals} == {"available", "unavailable"}
    assert "viability: fail" in resources["entry-20"]["activity"]["text"]
    assert resources["entry-21"]["entity"][0]["role"] == "revision"
    assert resources["entry-23"]["entity"][0]["role"] == "source"
    assert resources["entry-23"]["entity"][0]["what"]["display"] == "entry 22"
