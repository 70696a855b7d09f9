"""`coi verify-chain` checks that what a receiver took in is what the sender's entries imply.

Three real ledgers (tests/test_handoff_labels.py): the clinic collects and labels the bag, the
factory receives it, makes the product, labels the final bags and ships to the hospital. The
hospital's ``handoff.received`` holds, signed by the receiving person, the product's ``state``
and ``label_issuers``; its own replay trusts them. verify-chain derives both again from the
sender's file, with the function the receiver used, and compares them key by key. A receiving
operator who records another state or another issuer key (appended here straight through the
ledger service, past ``receive_handoff``) is caught, the field and the key named.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain.loader import load_process
from coi.export.bundle import Scope, export_bundle
from coi.export.chain_carried import check_carried, differences
from coi.export.chain_check import in_scope_entries
from coi.ledger.entry import b64
from coi.ledger.keys import generate, public_bytes
from coi.service.handoff_receive import receive_handoff
from coi.service.handoff_state import HANDOFF_RECEIVED
from coi.service.ledger import Party
from tests.test_handoff import (
    CLINIC,
    FACTORY,
    Org,
    _template,
    copy_org,
    pin,
    pw,
    send,
    ship,
)
from tests.test_handoff_chain import FACTORY_FULL
from tests.test_handoff_labels import HOSPITAL, Chain, shipped

runner = CliRunner()


def _bundle(org: Org, coi: str, out: Path) -> Path:
    export_bundle(org.ledger.store, out, scope=Scope("coi", coi=coi),
                  checkpoint=org.ledger.checkpoint(), log_key=org.ledger.log_key(),
                  created_ms=org.clock.now_ms())
    return out


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> tuple[Chain, list[Path], dict[str, Any]]:
    """The product shipped to the hospital (not received there), the clinic's and factory's
    files, and the data of the receipt the hospital's software writes for it."""
    root = tmp_path_factory.mktemp("carried")
    c = shipped(root)
    files = [root / "to-factory.jsonl", _bundle(c.factory, c.coi, root / "factory.jsonl"),
             c.to_hospital]
    genuine = copy_org(c.hospital, root / "genuine")
    receive_handoff(genuine.svc, genuine.people["nina"], c.to_hospital)
    kind, data = genuine.last()
    assert kind == HANDOFF_RECEIVED
    return c, files, data


def _verify(c: Chain, files: list[Path], hospital: Org, out: Path) -> tuple[int, str]:
    keys = [a for o in (c.clinic, c.factory, hospital)
            for a in ("--trust", o.ledger.log_verifier_key())]
    res = runner.invoke(app, ["verify-chain", "--coi", c.coi, *keys, *map(str, files),
                              str(_bundle(hospital, c.coi, out))])
    return res.exit_code, res.output


def _crafted(sent: tuple[Chain, list[Path], dict[str, Any]], tmp_path: Path,
             data: dict[str, Any]) -> tuple[int, str]:
    """The hospital records ``data`` as its receipt, signed by its receiving nurse, past
    ``receive_handoff``; then verify-chain over the three organisations' files."""
    c, files, _ = sent
    hospital = copy_org(c.hospital, tmp_path / "h")
    hospital.ledger.append(HANDOFF_RECEIVED, c.coi, data,
                           [Party(hospital.people["nina"], "authored")], internal=True)
    return _verify(c, files, hospital, tmp_path / "hospital.jsonl")


def _problems(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("PROBLEM: ")]


@pytest.mark.req("TRACKING")
def test_the_genuine_chain_says_what_each_receiver_took_in_matches(
        sent: tuple[Chain, list[Path], dict[str, Any]], tmp_path: Path) -> None:
    """Clinic to factory to hospital as coi records it: each receipt's state and label issuers
    (the clinic's label record copied through the factory's receipt) derive again from its
    sender's file, and verify-chain says so, one line per receipt."""
    c, files, _ = sent
    hospital = copy_org(c.hospital, tmp_path / "h")
    receive_handoff(hospital.svc, hospital.people["nina"], c.to_hospital)
    code, out = _verify(c, files, hospital, tmp_path / "hospital.jsonl")
    assert code == 0, out
    lines = [ln for ln in out.splitlines() if ln.startswith("carried OK: ")]
    assert len(lines) == 2, out  # the factory's receipt from the clinic, the hospital's
    at_factory = next(ln for ln in lines if f"at {FACTORY_FULL[0]} entry" in ln)
    assert f"of the shipment at {CLINIC[0]} entry " in at_factory
    assert "the carried state and the label issuers match the sender's entries" in at_factory
    assert "1 item(s), 1 window(s) running, 1 label(s), 1 issuer(s)" in at_factory
    at_hospital = next(ln for ln in lines if f"at {HOSPITAL[0]} entry" in ln)
    assert "the carried state and the label issuers match" in at_hospital
    assert "OK: " in out.splitlines()[-1]


@pytest.mark.req("TAMPER-DETECTION")
def test_a_receipt_with_another_item_status_is_named(
        sent: tuple[Chain, list[Path], dict[str, Any]], tmp_path: Path) -> None:
    """The hospital's receiving nurse signs a receipt whose bag status is not the one the
    factory's entries left: its own ledger verifies, the chain does not, the field named."""
    _c, _files, genuine = sent
    data = copy.deepcopy(genuine)
    was = data["state"]["items"]["F00001"]["status"]
    data["state"]["items"]["F00001"]["status"] = "quarantined"
    code, out = _crafted(sent, tmp_path, data)
    assert code == 1, out
    (problem,) = _problems(out)
    assert f"the receipt at {HOSPITAL[0]} entry " in problem
    assert f"of the shipment at {FACTORY_FULL[0]} entry " in problem
    assert (f"state.items.F00001.status is 'quarantined' at the receiver, {was!r} by the "
            "sender's entries") in problem
    assert "does not hold (1 problem(s))" in out


@pytest.mark.req("TAMPER-DETECTION")
def test_a_receipt_with_a_forgers_label_key_is_named(
        sent: tuple[Chain, list[Path], dict[str, Any]], tmp_path: Path) -> None:
    """The receiving operator swaps the issuer key of F00001's label for one of its own: its
    scans would then take a forged label. verify-chain names the label and the key."""
    _c, _files, genuine = sent
    data = copy.deepcopy(genuine)
    (label,) = [lid for lid, lb in data["state"]["labels"].items() if lb["item"] == "F00001"]
    forger = b64(public_bytes(generate()))
    data["label_issuers"][label]["key"] = forger
    code, out = _crafted(sent, tmp_path, data)
    assert code == 1, out
    (problem,) = _problems(out)
    assert f"label_issuers.{label}.key is {forger!r} at the receiver" in problem
    # a label left out of the record (scans of it would then be checked less) is named too
    data = copy.deepcopy(genuine)
    del data["label_issuers"][label]
    code, out = _crafted(sent, tmp_path / "2", data)
    assert code == 1 and f"label_issuers.{label} is missing at the receiver" in out, out


def test_an_item_the_sender_never_shipped_is_named(
        sent: tuple[Chain, list[Path], dict[str, Any]], tmp_path: Path) -> None:
    _c, _files, genuine = sent
    data = copy.deepcopy(genuine)
    data["state"]["items"]["F00009"] = {"kind": "final", "status": "shipped"}
    code, out = _crafted(sent, tmp_path, data)
    assert code == 1, out
    (problem,) = _problems(out)
    assert ("state.items.F00009 is {'kind': 'final', 'status': 'shipped'} at the receiver, but "
            "the sender's entries have no such key") in problem


def test_a_window_taken_in_with_a_later_start_is_named(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Two ledgers: the fresh-product window started at the clinic's collection runs into the
    factory's receipt. A factory that takes it in an hour later than the clinic signed (so a late
    receipt would pass its own deadline check) is caught before any step checks the window."""
    root = tmp_path_factory.mktemp("carried-window")
    clinic = copy_org(_template(root, "clinic", CLINIC), tmp_path / "c")
    factory = copy_org(_template(root, "factory", FACTORY), tmp_path / "f")
    pin(clinic, factory, "acme-factory", "manufacturing")
    pin(factory, clinic, "city-clinic", "collection")
    coi = ship(clinic, 1)
    h1 = send(clinic, coi, "acme-factory", tmp_path / "h1.jsonl")
    genuine = copy_org(factory, tmp_path / "genuine")
    genuine.clock.set(clinic.clock.now_ms() + 60_000)
    receive_handoff(genuine.svc, genuine.people["maya"], h1)
    _kind, data = genuine.last()
    window = data["state"]["windows"]["fresh_product"]
    signed = window["start_ms"]
    window["start_ms"] += 3_600_000
    window["deadline_ms"] += 3_600_000
    factory.clock.set(clinic.clock.now_ms() + 60_000)
    factory.ledger.append(HANDOFF_RECEIVED, coi, data, [Party(factory.people["maya"], "authored")],
                          internal=True)
    keys = [a for o in (clinic, factory) for a in ("--trust", o.ledger.log_verifier_key())]
    res = runner.invoke(app, ["verify-chain", "--coi", coi, *keys, str(h1),
                              str(_bundle(factory, coi, tmp_path / "f.jsonl"))])
    assert res.exit_code == 1, res.output
    (problem,) = _problems(res.output)
    assert f"the receipt at {FACTORY[0]} entry " in problem
    assert (f"state.windows.fresh_product.start_ms is {signed + 3_600_000} at the receiver, "
            f"{signed} by the sender's entries") in problem
    assert "state.windows.fresh_product.deadline_ms is " in problem


def test_a_receipt_written_before_the_fields_existed_is_said_not_checked(
        sent: tuple[Chain, list[Path], dict[str, Any]], tmp_path: Path) -> None:
    _c, _files, genuine = sent
    data = {k: v for k, v in genuine.items() if k != "label_issuers"}
    code, out = _crafted(sent, tmp_path, data)
    assert code == 0, out
    line = next(ln for ln in out.splitlines() if f"at {HOSPITAL[0]} entry" in ln
                and ln.startswith("carried OK: "))
    assert "the carried state matches the sender's entries" in line
    assert "label_issuers not checked: the receipt was written before it existed" in line
    data = {k: v for k, v in genuine.items() if k not in ("state", "label_issuers")}
    code, out = _crafted(sent, tmp_path / "2", data)
    assert code == 0, out
    assert "state and label_issuers not checked: the receipt was written before they existed" \
        in out


# ------------------------------------------------------------------- the comparison, any JSON
_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(alphabet="abcXYZ019-", min_size=1, max_size=6), inner, max_size=4), max_leaves=12)


@given(_json)
def test_a_value_differs_from_nothing_in_itself(v: Any) -> None:
    assert differences("state", v, json.loads(json.dumps(v))) == []


@given(st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=3), _json, min_size=1),
       st.data())
def test_a_changed_value_is_named_by_its_path(obj: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(obj)))
    changed = dict(obj)
    changed[key] = ["tampered", obj[key]]  # never equal to what it was
    (found,) = differences("state", changed, obj)
    assert found.startswith(f"state.{key} is ")
    assert differences("state", obj, obj) == []
    assert differences("x", True, 1) and differences("x", 1, 1.0) and differences("x", [1], [True])


def test_a_receipt_whose_receiver_process_is_unknown_is_a_problem(
        sent: tuple[Chain, list[Path], dict[str, Any]], tmp_path: Path) -> None:
    """Without the receiver's process definition the derivation cannot be made: not a silent
    pass."""
    c, files, _ = sent
    entries = {i: s for i, (_h, s) in in_scope_entries(files[2].read_bytes().splitlines(
        keepends=True)).items()}
    receipt = next(s for s in entries.values() if s.type == HANDOFF_RECEIVED)  # the factory's
    shipment = receipt.data["shipment"]["index"]
    clinic = {i: s for i, (_h, s) in in_scope_entries(files[0].read_bytes().splitlines(
        keepends=True)).items()}
    out = check_carried(clinic, CLINIC[0], shipment, FACTORY[0], receipt.index, receipt,
                        "its genesis names no process definition")
    assert out.line is None and out.problem is not None
    assert "not checked: the receiver's process definition cannot be had (its genesis" \
        in out.problem
    out = check_carried(clinic, CLINIC[0], shipment, FACTORY[0], receipt.index, receipt,
                        load_process())
    assert out.problem is None and out.line is not None and "match the sender's" in out.line


def test_two_files_of_one_organisation_that_disagree_are_reported_as_a_fork(
        sent: tuple[Chain, list[Path], dict[str, Any]], tmp_path: Path) -> None:
    """The factory's log forks: two copies under the same key each sign another entry at the
    same index. Each of their bundles verifies alone; given together, verify-chain reports the
    fork (signed evidence), never keeps one silently."""
    c, files, _data = sent
    one, two = copy_org(c.factory, tmp_path / "one"), copy_org(c.factory, tmp_path / "two")
    for org, text in ((one, "kept at -80 C"), (two, "thawed by mistake")):
        maya = org.svc.ledger.unlock("maya", pw("maya"))
        org.svc.ledger.append("note.comment", c.coi, {"note": text}, [Party(maya, "authored")])
    a, b = _bundle(one, c.coi, tmp_path / "a.jsonl"), _bundle(two, c.coi, tmp_path / "b.jsonl")
    keys = [x for o in (c.clinic, c.factory) for x in ("--trust", o.ledger.log_verifier_key())]
    res = runner.invoke(app, ["verify-chain", "--coi", c.coi, *keys, str(files[0]), str(a),
                              str(b)])
    assert res.exit_code == 1, res.output
    assert "signed two histories" in res.output and "a fork of its log" in res.output
