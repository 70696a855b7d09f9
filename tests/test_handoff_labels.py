"""A partner's signed labels are verified where the bag arrives: three real ledgers (collection
centre, manufacturer, treatment centre), each product moved by hand-off files.

The collection centre prints the collection bag's label signed (its nurse's key); the
manufacturer's receipt checks it against the key the hand-off file brought (verified against
the centre's pinned log key) and records who issued each label in its ``handoff.received``. The
manufacturer prints the final bags' labels signed; the treatment centre's bedside check verifies
them the same way, and the collection bag's label still verifies there (transitively, through
the manufacturer's record). A forged label (a fresh key, named by another id or by the real
one), an altered character, and a plain scan of a label printed signed are each refused with
their own message, recorded, and change nothing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain import payload
from coi.domain.state import Label, ProductState
from coi.ledger.entry import b64
from coi.ledger.keys import generate
from coi.service import labels as L
from coi.service.demo import PLAN, STEP_NAMES, Site, Walk, step
from coi.service.errors import Refused
from coi.service.handoff_receive import receive_handoff
from coi.service.handoff_state import HANDOFF_RECEIVED
from coi.service.label_codes import labels_of
from coi.service.label_signing import LABEL_ISSUERS, label_key_id, sign_label
from tests.test_handoff import CLINIC, H, Org, build, pin, pw, send
from tests.test_handoff_chain import FACTORY_FULL

HOSPITAL = ("hospital.example/a9995", "A9995",
            (("admin", "Ada Admin", ()), ("nina", "Nina Nurse", ("treatment",)),
             ("noah", "Noah Nurse", ("treatment",))))
runner = CliRunner()


@dataclass
class Chain:
    clinic: Org
    factory: Org
    hospital: Org
    coi: str
    collection_label: str  # the signed scan of C00001's label (alice at the clinic)
    final_label: str  # the signed scan of F00001's label (maya at the factory)
    reprinted: str  # F00002's label reprinted signed at the factory (mo), code F01002
    superseded: str  # the label of F00002 it replaced (maya), voided
    walk: Walk
    t0: int
    to_hospital: Path  # the factory's hand-off file to the hospital


def _at(org: Org, w: Walk, t0: int, n: int) -> None:
    org.clock.set(t0 + PLAN[n][1])
    step(Site(svc=org.svc, people=org.people), w, n, org.clock.now_ms())


def _label(org: Org, who: str, coi: str, item: str, out: Path) -> str:
    """Issue, print (signed) and apply ``item``'s label at ``org``; the text a scanner reads."""
    lid, _ = L.issue_and_print(org.svc, org.people[who], coi, item, "png", "4x2", None, False,
                               out / f"{item}.png", signed=True)
    text = "]Q1" + sign_label(org.people[who], coi, item)  # Ed25519: what the file carries
    L.apply(org.svc, org.people[who], coi, lid, text)
    return text


def shipped(root: Path, factory_db: str | None = None) -> Chain:
    """Enrol and collect at the clinic, make at the factory, ship to the hospital (the file
    written, not yet received there)."""
    clinic = build(str(root / "clinic.db"), root / "clinic.key", CLINIC)
    factory = build(factory_db or str(root / "factory.db"), root / "factory.key", FACTORY_FULL)
    hospital = build(str(root / "hospital.db"), root / "hospital.key", HOSPITAL)
    pin(clinic, factory, "acme-factory", "manufacturing")
    pin(factory, clinic, "city-clinic", "collection")
    pin(factory, hospital, "city-hospital", "treatment")
    pin(hospital, factory, "acme-factory", "manufacturing")
    pin(hospital, clinic, "city-clinic", "collection")  # the CoI carries the clinic's FIN
    clinic.clock.set(clinic.clock.now_ms() + H)
    coi, _ = clinic.svc.enrol(actor=clinic.people["alice"], patient={"patient_id": "MRN000001"},
                              treatment_site="A9995-HEMATOLOGY", manufacturing_slot="SLOT-1")
    w = Walk(coi=coi, seq=1, din=f"A999826{1:06d}", bags=2, patient_id="MRN000001",
             label_bags=False)
    t0 = clinic.clock.now_ms()
    _at(clinic, w, t0, 0)
    collection_label = _label(clinic, "alice", coi, "C00001", root)
    for n in (1, 2):
        _at(clinic, w, t0, n)
    clinic.clock.set(t0 + PLAN[3][1])
    clinic.svc.record("courier_pickup", coi, actor=clinic.people["colin"],
                      fields={"shipper_id": "SHP0001", "logger_id": "LOG0001",
                              "receiver": "ACME-FACTORY"})
    h1 = send(clinic, coi, "acme-factory", root / "to-factory.jsonl")
    factory.clock.set(clinic.clock.now_ms() + 60_000)
    receive_handoff(factory.svc, factory.people["maya"], h1)
    # The physical receipt: the bag's signed label is verified before the receipt is recorded.
    L.check_scan(factory.svc, collection_label, coi, "C00001", station="receipt", by="maya")
    cryo = STEP_NAMES.index("cryopreservation")
    for n in range(STEP_NAMES.index("receipt_at_manufacturing"), cryo + 1):
        _at(factory, w, t0, n)
    final_label = _label(factory, "maya", coi, "F00001", root)
    superseded = _label(factory, "maya", coi, "F00002", root)
    mo = factory.people["mo"]  # F00002's label smudged: reprinted signed by mo (code F01002)
    new, _ = L.reprint(factory.svc, mo, coi, f"L-{coi}-F00002-3", "smudged", "png", "4x2", None,
                       False, root / "F01002.png", signed=True)
    reprinted = "]Q1" + sign_label(mo, coi, "F01002")
    L.apply(factory.svc, mo, coi, new, reprinted)
    for n in range(cryo + 1, STEP_NAMES.index("shipment")):
        _at(factory, w, t0, n)
    factory.clock.set(t0 + PLAN[STEP_NAMES.index("shipment")][1])
    factory.svc.record("shipment", coi, actor=factory.people["colin"],
                       fields={"shipper_id": "DRY0001", "logger_id": "LGR0001",
                               "receiver": "CITY-HOSPITAL"})
    h2 = send(factory, coi, "city-hospital", root / "to-hospital.jsonl")
    hospital.clock.set(factory.clock.now_ms() + 60_000)
    return Chain(clinic, factory, hospital, coi, collection_label, final_label, reprinted,
                 superseded, w, t0, h2)


def received(c: Chain) -> None:
    """The hospital receives the hand-off file, checks the bag's label."""
    receive_handoff(c.hospital.svc, c.hospital.people["nina"], c.to_hospital)
    L.check_scan(c.hospital.svc, c.final_label, c.coi, "F00001", station="receipt", by="nina")


def thawed(c: Chain) -> None:
    """The hospital takes the product in, stores and thaws it: the bedside check is next."""
    for n in range(STEP_NAMES.index("receipt_at_treatment"), STEP_NAMES.index("thaw") + 1):
        _at(c.hospital, c.walk, c.t0, n)


def three(root: Path, factory_db: str | None = None) -> Chain:
    c = shipped(root, factory_db)
    received(c)
    thawed(c)
    return c


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return three(tmp_path_factory.mktemp("partner-labels"))


def _issuers(org: Org) -> dict[str, Any]:
    rows = [r for r in org.ledger.store.rows() if r.type == HANDOFF_RECEIVED]
    return dict(json.loads(rows[-1].statement)["data"][LABEL_ISSUERS])


def _forge(coi: str, item: str, key_id: bytes) -> str:
    return "]Q1" + payload.sign(coi, item, key_id, generate())


def _refused(org: Org, coi: str, raw: str, item: str | None, words: str) -> None:
    """Scanning ``raw`` at ``org`` is refused with ``words``: the refusal recorded, nothing
    else written, the product unchanged."""
    before, product = org.count(), org.svc.show(coi)["state"]
    with pytest.raises(Refused, match=words) as e:
        L.check_scan(org.svc, raw, coi, item, station="bedside", by="nina")
    assert e.value.recorded_index == before and org.count() == before + 1
    assert org.ledger.store.row(before).type == "system.scan_refused"  # type: ignore[union-attr]
    assert org.svc.show(coi)["state"] == product


@pytest.mark.req("DEVICE-CHECKS")
def test_the_receiver_records_who_issued_each_label(chain: Chain) -> None:
    alice, maya = chain.clinic.people["alice"], chain.factory.people["maya"]
    at_factory = _issuers(chain.factory)
    assert at_factory == {f"L-{chain.coi}-C00001-1": {
        "key": b64(alice.public_key), "origin": CLINIC[0], "signed": True, "user": "alice"}}
    at_hospital = _issuers(chain.hospital)
    assert at_hospital[f"L-{chain.coi}-C00001-1"] == at_factory[f"L-{chain.coi}-C00001-1"]
    assert at_hospital[f"L-{chain.coi}-F00001-2"] == {
        "key": b64(maya.public_key), "origin": FACTORY_FULL[0], "signed": True, "user": "maya"}
    assert at_hospital[f"L-{chain.coi}-F00002-4"] == {
        "key": b64(chain.factory.people["mo"].public_key), "origin": FACTORY_FULL[0],
        "signed": True, "user": "mo"}  # the reprint: its own issuer
    for org in (chain.clinic, chain.factory, chain.hospital):
        org.svc.verify()  # the new field is part of what the receiving person signed


@pytest.mark.req("DEVICE-CHECKS")
def test_genuine_partner_labels_pass_at_the_bedside_forgeries_do_not(chain: Chain) -> None:
    hospital, coi = chain.hospital, chain.coi
    scan = L.check_scan(hospital.svc, chain.final_label, coi, "F00001", station="bedside",
                        by="nina")
    assert L.trust_problem(hospital.svc, scan) is None
    # transitive: the clinic's label, as the factory recorded it, verifies at the hospital
    assert L.trust_problem(hospital.svc, L.check_scan(hospital.svc, chain.collection_label,
                                                      coi)) is None
    maya = label_key_id(chain.factory.people["maya"].public_key).hex().upper()
    lid = f"L-{coi}-F00001-2"
    cases = [
        (_forge(coi, "F00001", bytes.fromhex("DEADBEEF")),
         f"signed with key DEADBEEF, but label {lid} was issued at partner acme-factory by "
         f"maya with key {maya}"),
        (_forge(coi, "F00001", bytes.fromhex(maya)),
         f"signature does not verify with key {maya} of maya at partner acme-factory: the "
         "label was altered or forged"),
        ("]Q1" + payload.encode(coi, "F00001"),
         f"label {lid} was printed signed by partner acme-factory, but this scan carries no "
         "signature"),
        (_forge(coi, "C00001", label_key_id(chain.clinic.people["alice"].public_key)),
         "signature does not verify with key .* of alice at partner city-clinic"),
    ]
    for raw, words in cases:
        _refused(hospital, coi, raw, None, words)
    body = chain.final_label[3:]
    at = payload.SIGNED_LENGTH - 10  # a character of the signature
    altered = body[:at] + ("A" if body[at] != "A" else "B") + body[at + 1:]
    _refused(hospital, coi, "]Q1" + altered, "F00001", "altered or forged|check character")


@pytest.mark.req("LABEL-CONTROL")
def test_a_label_reprinted_at_the_partner_verifies_the_one_it_replaced_is_refused(
        chain: Chain) -> None:
    hospital, coi = chain.hospital, chain.coi
    scan = L.check_scan(hospital.svc, chain.reprinted, coi, "F00002", station="bedside",
                        by="nina")
    assert L.trust_problem(hospital.svc, scan) is None
    rows = {r["label"]: r for r in L.reconciliation(hospital.svc, coi)}
    assert [rows[f"L-{coi}-F00002-{n}"]["code"] for n in (3, 4)] == ["F00002", "F01002"]
    assert rows[f"L-{coi}-F00002-4"]["printed"]  # at the factory: not "never printed" here
    _refused(hospital, coi, chain.superseded, "F00002",
             f"L-{coi}-F00002-3 was voided and superseded by L-{coi}-F00002-4")
    _refused(hospital, coi, "]Q1" + payload.encode(coi, "F01002"), "F00002",
             f"label L-{coi}-F00002-4 was printed signed by partner acme-factory")


def test_the_receipt_at_the_factory_refuses_a_forged_collection_label(chain: Chain) -> None:
    factory, coi = chain.factory, chain.coi
    alice = label_key_id(chain.clinic.people["alice"].public_key)
    _refused(factory, coi, _forge(coi, "C00001", alice), "C00001",
             "does not verify with key .* of alice at partner city-clinic")
    _refused(factory, coi, "]Q1" + payload.encode(coi, "C00001"), "C00001",
             "printed signed by partner city-clinic, but this scan carries no signature")


def test_labels_check_at_the_cli_verifies_a_partner_label(chain: Chain, tmp_path: Path) -> None:
    hospital = chain.hospital
    hospital.ledger.engine.dispose()
    pwf = tmp_path / "nina.pw"
    pwf.write_text(pw("nina") + "\n")
    common = ["--db", hospital.db, "--log-key", str(hospital.key), "--as", "nina",
              "--password-file", str(pwf), "--coi", chain.coi]
    ok = runner.invoke(app, ["labels", "check", "--scan", chain.final_label, *common])
    assert ok.exit_code == 0, ok.output
    assert re.search(r'"signature": "verified with the key of [a-z]+ at partner acme-factory, '
                     r'who issued the label', ok.stdout), ok.stdout
    bad = runner.invoke(app, ["labels", "check", "--scan",
                              "]Q1" + payload.encode(chain.coi, "F00001"), *common])
    assert bad.exit_code == 1 and "printed signed by partner acme-factory" in bad.stderr


_CHANGE = st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ=+-*/ ]&%")


@pytest.mark.req("DEVICE-CHECKS")
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), fix_check=st.booleans())
def test_any_one_character_change_of_a_partner_label_is_refused(
        chain: Chain, data: st.DataObject, fix_check: bool) -> None:
    body = chain.final_label[3:]
    i = data.draw(st.integers(0, len(body) - 1), label="position")
    ch = data.draw(_CHANGE.filter(lambda c: c != body[i]), label="replacement")
    changed = body[:i] + ch + body[i + 1:]
    if fix_check and i < len(body) - 1 and changed[:-1].isalnum() and changed[:-1].isupper():
        changed = changed[:-1] + payload.mod37_36(changed[:-1])  # a forger fixes the check too
    with pytest.raises(Refused) as exc:
        L.check_scan(chain.hospital.svc, "]Q1" + changed, chain.coi, "F00001")
    assert exc.value.recorded_index is not None


@pytest.mark.postgres
def test_partner_labels_verify_at_a_manufacturer_on_postgresql(pg_url: str, tmp_path: Path
                                                              ) -> None:
    assert os.environ.get("COI_TEST_POSTGRES_URL")
    c = three(tmp_path, pg_url)
    assert L.trust_problem(c.hospital.svc, L.check_scan(c.hospital.svc, c.final_label, c.coi,
                                                        "F00001")) is None
    _refused(c.factory, c.coi, "]Q1" + payload.encode(c.coi, "C00001"), "C00001",
             "printed signed by partner city-clinic")
    c.factory.svc.verify()
    c.factory.ledger.engine.dispose()


def test_labels_a_hand_off_brought_keep_their_issue_order_past_nine() -> None:
    """All start at the same handoff.received entry, and arrive in the order of their ids as
    text (``-10`` before ``-9``): the print generation a scanned code names is still right."""
    coi = "CHA999826000001"
    product = ProductState(coi=coi, state="shipped", enrolled_index=7)
    for n in sorted(("9", "10", "11")):
        product.labels[f"L-{coi}-F00001-{n}"] = Label(f"L-{coi}-F00001-{n}", "F00001",
                                                      "applied" if n == "11" else "voided", [7])
    assert [lab.id[-2:] for lab in labels_of(product, "F00001")] == ["-9", "10", "11"]


@pytest.mark.req("DEVICE-CHECKS")
def test_a_label_keyed_at_the_cli_is_checked_as_a_station_checks_it(chain: Chain,
                                                                   tmp_path: Path) -> None:
    """`coi record` takes a bag's label keyed by hand (scanner broken: witness and reason); the
    label is checked as a station checks a scan, before the step: a forged signature or a
    plain copy of a label the partner printed signed is refused and recorded, the step is not
    attempted, the product unchanged."""
    hospital, coi = chain.hospital, chain.coi
    hospital.ledger.engine.dispose()
    for who in ("nina", "noah"):
        (tmp_path / f"{who}.pw").write_text(pw(who) + "\n")
    maya = label_key_id(chain.factory.people["maya"].public_key)
    forged = _forge(coi, "F00001", maya)[3:]  # keyed: the payload without the AIM prefix
    plain = payload.encode(coi, "F00001")
    for keyed, words in ((forged, "does not verify with key .* of maya at partner acme-factory"),
                         (plain, "printed signed by partner acme-factory")):
        before, state = hospital.count(), hospital.svc.show(coi)["state"]
        hospital.ledger.engine.dispose()
        r = runner.invoke(app, [
            "record", "bedside_verification", "--coi", coi, "--item", "F00001", "--as", "nina",
            "--password-file", str(tmp_path / "nina.pw"), "--witness", "noah",
            "--witness-password-file", str(tmp_path / "noah.pw"), "--keyed-reason",
            "scanner broken", "--field", f"scanned_bag={keyed}", "--db", hospital.db,
            "--log-key", str(hospital.key)])
        assert r.exit_code == 1, r.output
        assert re.search(words, r.stderr), r.stderr
        assert hospital.count() == before + 1
        assert hospital.ledger.store.row(before).type == "system.scan_refused"  # type: ignore[union-attr]
        assert hospital.svc.show(coi)["state"] == state
