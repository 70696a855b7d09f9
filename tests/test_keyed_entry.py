"""Scanned means scanned: scan-only fields record how they were entered; keyed by hand they need
a witness and a reason; every checked identifier keyed by hand has its check character verified.
Domain rules with real replay; the service and the CLI on a real site."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain import isbt, payload
from coi.domain.check import check
from coi.domain.errors import ScanError
from coi.domain.facts import Attempt
from coi.domain.keyed import verify_keyed
from coi.domain.replay import replay
from coi.service.demo import demo_password
from coi.service.errors import Refused
from tests.chain_site import ChainSite, D, copy_site, new_walk, walk
from tests.test_state import COI, PROCESS, Driver, driver_at, step, user_for

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
runner = CliRunner()


def _bedside(d: Driver, *, entry: dict[str, str] | None, reason: str | None,
             witness: bool = True) -> Any:
    product = d.chain.product(COI)
    assert product is not None
    bag = next(i.id for i in product.items.values() if i.status == "thawed")
    fields = {"scanned_coi": COI, "scanned_bag": bag,
              "wristband_commitment": product.patient_commitment or ""}
    attempt = Attempt("bedside_verification", COI, bag, fields, user_for("treatment"),
                      user_for("treatment", 2) if witness else None, d.now + 60_000,
                      entry or {}, reason)
    return attempt, check(PROCESS, d.chain, attempt)


# ------------------------------------------------------------------------------- the rule


@pytest.mark.req("DEVICE-CHECKS")
def test_scanned_fields_record_how_they_were_entered() -> None:
    d = driver_at("thawed")
    methods = {"scanned_coi": "scanner", "scanned_bag": "pasted",
               "wristband_commitment": "typed"}
    attempt, decision = _bedside(d, entry=methods, reason=None)
    assert decision.allowed, decision.reasons
    assert decision.data["entry"] == methods and "keyed_reason" not in decision.data
    d.append(attempt, decision)
    assert replay(PROCESS, d.facts).to_json() == d.chain.to_json()


@pytest.mark.req("DEVICE-CHECKS", "TWO-PERSON")
def test_keyed_by_hand_needs_a_witness_and_a_reason() -> None:
    d = driver_at("thawed")
    before = d.chain.to_json()
    _, decision = _bedside(d, entry=None, reason=None)
    assert decision.reasons == (
        "scanned_coi, scanned_bag, wristband_commitment keyed by hand needs a reason "
        "(--keyed-reason, e.g. 'scanner broken'), or scan it at a station",)
    _, decision = _bedside(d, entry={"scanned_coi": "scanner", "scanned_bag": "scanner"},
                           reason="Scanner battery flat")
    assert decision.allowed
    assert decision.data["entry"]["wristband_commitment"] == "keyed"
    assert decision.data["keyed_reason"] == "Scanner battery flat"
    _, decision = _bedside(d, entry={"scanned_coi": "scanner", "scanned_bag": "scanner",
                                     "wristband_commitment": "scanner"}, reason="why not")
    assert decision.reasons == ("a keyed-entry reason is for a scan-only field keyed by hand; "
                                "leave it out",)
    _, decision = _bedside(d, entry={"scanned_coi": "telepathy"}, reason="x")
    assert any("entered by 'telepathy'" in r for r in decision.reasons)
    assert d.chain.to_json() == before
    # paperwork at receipt: its step has no witness of its own, a keyed one needs one
    s = driver_at("shipped")
    attempt = Attempt("receipt_at_treatment", COI, None,
                      {"logger": "in_range", "paperwork": "D00001"}, user_for("treatment"),
                      None, s.now + 60_000, {}, "Scanner broken")
    decision = check(PROCESS, s.chain, attempt)
    assert decision.reasons[0].startswith("paperwork must be scanned; keyed by hand it needs a "
                                          "witness")
    assert step("receipt_at_treatment").fields["paperwork"].scan_only


# ------------------------------------------------------------------- check characters


def test_the_issues_wrong_check_character_is_refused() -> None:
    good = payload.encode(COI, "D00001")
    bad = good[:-1] + ("X" if good[-1] != "X" else "Y")
    assert verify_keyed("document", good, COI) == "D00001"
    with pytest.raises(ScanError, match="check character does not match"):
        verify_keyed("document", bad, COI)
    with pytest.raises(ScanError, match="not a shipping document"):
        verify_keyed("document", payload.encode(COI, "F00001"), COI)
    with pytest.raises(ScanError, match="is for CHA9999269Z8Y7X"):
        verify_keyed("bag", payload.encode("CHA9999269Z8Y7X", "F00001"), COI)
    assert verify_keyed("din", "A9999 26 000001 8", COI) == "A999926000001"
    assert verify_keyed("din", isbt.Din("A9999", "26", "000001").barcode(), COI) == \
        "A999926000001"
    with pytest.raises(ScanError, match="with its check character"):
        verify_keyed("din", "A999926000001", COI)
    with pytest.raises(ScanError, match="carry no check value"):
        verify_keyed("din", "=A99992600000100", COI)
    k = isbt.mod37_2(COI)
    assert verify_keyed("coi", f"{COI} {k}", COI) == COI
    with pytest.raises(ScanError, match="with its check character"):
        verify_keyed("coi", COI, COI)


def _changed(text: str, at: int, new: str) -> str:
    return text[:at] + new + text[at + 1:]


@pytest.mark.req("FIELD-CHECKS")
@given(seq=st.integers(0, 999_999), at=st.integers(0, 13), new=st.sampled_from(ALPHABET))
def test_any_single_change_to_a_keyed_din_is_refused(seq: int, at: int, new: str) -> None:
    din = isbt.Din("A9999", "26", f"{seq:06d}")
    keyed = din.text + din.check
    if keyed[at] == new:
        return
    changed = _changed(keyed, at, new)
    try:
        got = verify_keyed("din", changed, COI)
    except ScanError:
        return
    raise AssertionError(f"{changed!r} was accepted as {got!r}")


@pytest.mark.req("FIELD-CHECKS")
@given(serial=st.text(ALPHABET, min_size=6, max_size=6), item=st.integers(1, 99_999),
       kind=st.sampled_from("CFD"), at=st.integers(0, 25), new=st.sampled_from(ALPHABET))
def test_any_single_change_to_a_keyed_label_code_is_refused(serial: str, item: int, kind: str,
                                                            at: int, new: str) -> None:
    coi = f"CHA999926{serial}"
    code = payload.encode(coi, f"{kind}{item:05d}")
    if code[at] == new:
        return
    check = "document" if kind == "D" else "bag"
    with pytest.raises(ScanError):
        verify_keyed(check, _changed(code, at, new), coi)


# --------------------------------------------------------------------- service and CLI


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> ChainSite:
    s = copy_site(tmp_path_factory.getbasetemp() / "chain-template", tmp_path / "site")
    s.at(time.time_ns() // 1_000_000 - 30 * D)
    return s


def _pw(tmp_path: Path, user: str) -> str:
    p = tmp_path / f"{user}.pw"
    p.write_text(demo_password(user) + "\n")
    return str(p)


@pytest.mark.req("DEVICE-CHECKS", "AUDIT-REFUSALS")
def test_keyed_paperwork_at_the_command_line(site: ChainSite, tmp_path: Path) -> None:
    w = new_walk(site)
    walk(site, w, until="receipt_at_treatment")
    good = payload.encode(w.coi, "D00001")
    bad = good[:-1] + ("X" if good[-1] != "X" else "Y")
    base = ["record", "receipt_at_treatment", "--coi", w.coi, "--as", "nina",
            "--password-file", _pw(tmp_path, "nina"), "--field", "logger=in_range",
            "--db", site.db]
    site.svc.ledger.engine.dispose()
    size = site.entry_count()
    res = runner.invoke(app, [*base, "--field", f"paperwork={bad}"])
    assert res.exit_code == 1
    assert "check character does not match" in res.output
    assert site.entry_count() == size + 1 and site.last_entry()["type"] == "system.refusal"
    assert site.state_row(w.coi)[0] == "shipped"  # type: ignore[index]
    res = runner.invoke(app, [*base, "--field", f"paperwork={good}"])
    assert res.exit_code == 1 and "needs a witness" in res.output
    res = runner.invoke(app, [*base, "--field", f"paperwork={good}", "--witness", "noah",
                              "--witness-password-file", _pw(tmp_path, "noah"),
                              "--keyed-reason", "Scanner at goods-in is broken"])
    assert res.exit_code == 0, res.output
    entry = site.last_entry()
    assert entry["data"]["paperwork"] == "D00001"
    assert entry["data"]["entry"] == {"paperwork": "keyed"}
    res = runner.invoke(app, ["show", w.coi, "--db", site.db])
    assert "KEYED BY HAND, not scanned: paperwork (reason: Scanner at goods-in is broken)" in \
        res.stdout
    site.svc.verify()


@pytest.mark.req("DEVICE-CHECKS")
def test_a_typed_wristband_at_the_command_line_is_keyed(site: ChainSite, tmp_path: Path) -> None:
    w = new_walk(site)
    walk(site, w, until="bedside_verification")
    site.svc.ledger.engine.dispose()
    res = runner.invoke(app, ["record", "bedside_verification", "--coi", w.coi, "--as", "nina",
                              "--password-file", _pw(tmp_path, "nina"), "--item", "F00001",
                              "--witness", "noah", "--witness-password-file",
                              _pw(tmp_path, "noah"), "--field", f"scanned_coi={w.coi}",
                              "--field", "scanned_bag=F00001", "--field",
                              f"wristband={w.patient_id}", "--db", site.db])
    assert res.exit_code == 1, res.output
    assert "is not a Chain of Identity Identifier with its check character" in res.output
    with pytest.raises(Refused, match="keyed by hand needs a reason"):
        site.svc.record("bedside_verification", w.coi, actor=site.people["nina"],
                        witness=site.people["noah"], item="F00001",
                        fields={"scanned_coi": f"{w.coi} {isbt.mod37_2(w.coi)}",
                                "scanned_bag": payload.encode(w.coi, "F00001"),
                                "wristband": w.patient_id})
