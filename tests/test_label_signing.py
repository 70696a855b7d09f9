"""Signed labels (COS1) end to end: printed with the issuer's registered key, decoded back from
the file with zxing-cpp, and verified on every scan against the ledger's key registry. Forgeries
(unknown key id, a key not valid when the label was issued, a bad signature, another person's
key, a signed label scanned without its signature) are each refused with their own message and
the refusal recorded. One real demo site per module; FIN A9999 only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import zxingcpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain import payload
from coi.domain.scan import LabelScan
from coi.ledger.keys import generate, public_bytes
from coi.service import demo
from coi.service import labels as L
from coi.service.errors import ConfigError, Refused
from coi.service.label_signing import label_key_id
from coi.service.scans import read_scan
from tests.test_labels import decode, png_image, scanned

START_MS = 1_780_000_000_000
_SEQ = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("signed") / "coi.db"


@pytest.fixture(scope="module")
def site(db_path: Path) -> demo.Site:
    return demo.create_site(str(db_path), clock=demo.MovableClock(START_MS))


def collected(site: demo.Site) -> demo.Walk:
    clock = site.svc.clock
    assert isinstance(clock, demo.MovableClock)
    w = demo.Walk(seq=next(_SEQ), bags=2)
    clock.set(clock.now_ms() + demo.D)
    demo.enrol(site, w)
    demo.step(site, w, 0, clock.now_ms())
    return w


def refusals(site: demo.Site) -> list[int]:
    return [r.index for r in site.svc.ledger.store.rows() if r.type == "system.scan_refused"]


def signed_label(site: demo.Site, tmp_path: Path, who: str = "alice") -> tuple[demo.Walk, str,
                                                                              str]:
    """A collected product with a signed 4x2 label on C00001: (walk, label id, scanned text)."""
    w = collected(site)
    out = tmp_path / f"{w.coi}.png"
    lid, _ = L.issue_and_print(site.svc, site.people[who], w.coi, "C00001", "png", "4x2", None,
                               False, out, signed=True)
    (qr,) = decode(png_image(out.read_bytes()), zxingcpp.BarcodeFormat.QRCode)
    return w, lid, scanned(qr)


@pytest.fixture(scope="module")
def one_signed(site: demo.Site, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[demo.Walk, str, str]:
    return signed_label(site, tmp_path_factory.mktemp("one"))


@pytest.mark.req("LABEL-CONTROL")
def test_a_signed_label_is_printed_with_the_issuers_key_and_verifies(
        site: demo.Site, tmp_path: Path) -> None:
    w, lid, text = signed_label(site, tmp_path)
    assert text.startswith("]Q1COS1") and len(text) == 3 + payload.SIGNED_LENGTH
    decoded = payload.decode(text[3:])
    alice = site.people["alice"]
    assert decoded.key_id == label_key_id(alice.public_key)
    payload.verify_signed(decoded, alice.key.public_key())  # what a partner does offline
    scan = L.check_scan(site.svc, text + "\r", w.coi, "C00001")
    assert isinstance(scan, LabelScan) and L.label_of(site.svc, scan) == lid
    assert L.trust_problem(site.svc, scan) is None
    L.apply(site.svc, alice, w.coi, lid, text)
    assert L.reconciliation(site.svc, w.coi)[0]["outcome"] == "applied"
    # Without its signature the same label is refused: a forger cannot fall back to COI1.
    before = len(refusals(site))
    with pytest.raises(Refused, match="printed signed, but this scan carries no signature"):
        L.check_scan(site.svc, payload.encode(w.coi, "C00001"), w.coi)
    assert len(refusals(site)) == before + 1


def test_signed_needs_the_4x2_label_and_nothing_is_recorded(site: demo.Site,
                                                            tmp_path: Path) -> None:
    w = collected(site)
    size = site.svc.ledger.store.count_rows()
    with pytest.raises(ConfigError, match="fits only the 4x2"):
        L.issue_and_print(site.svc, site.people["alice"], w.coi, "C00001", "png", "2x1", None,
                          False, tmp_path / "x.png", signed=True)
    assert site.svc.ledger.store.count_rows() == size and not list(tmp_path.iterdir())


def _forge(w: demo.Walk, key_id: bytes, seed: bytes | None = None) -> str:
    return "]Q1" + payload.sign(w.coi, "C00001", key_id, generate(seed))


@pytest.mark.req("DEVICE-CHECKS")
def test_forged_labels_are_refused_each_with_its_own_message(site: demo.Site,
                                                             tmp_path: Path) -> None:
    w, lid, _text = signed_label(site, tmp_path)
    alice = site.people["alice"]
    alice_id = label_key_id(alice.public_key).hex().upper()
    cases = [
        # a fresh key, named DEADBEEF: the registry has no such key
        (_forge(w, bytes.fromhex("DEADBEEF")), "DEADBEEF, which is not in this site's key "
                                               "registry"),
        # a fresh key claiming to be alice's: the signature does not verify
        (_forge(w, label_key_id(alice.public_key)),
         f"signature does not verify with key {alice_id} \\(alice\\)"),
        # maya's real key, valid, but it did not issue this label
        ("]Q1" + payload.sign(w.coi, "C00001", label_key_id(site.people["maya"].public_key),
                              site.people["maya"].key), f"{lid} was issued by alice"),
    ]
    for raw, words in cases:
        before = len(refusals(site))
        with pytest.raises(Refused, match=words) as exc:
            L.check_scan(site.svc, raw, w.coi, station="s-forge", by="alice")
        assert exc.value.recorded_index == refusals(site)[-1] and len(refusals(site)) == before + 1
        with pytest.raises(Refused, match=words):
            L.apply(site.svc, alice, w.coi, lid, raw)
    assert L.reconciliation(site.svc, w.coi)[0]["outcome"] == "outstanding"


@pytest.mark.req("DEVICE-CHECKS")
def test_a_key_revoked_before_the_label_was_issued_signs_nothing(site: demo.Site,
                                                                 tmp_path: Path) -> None:
    ledger = site.svc.ledger
    admin = site.people["admin"]
    ledger.enrol(admin, user="rex", name="Rex Revoked", roles=["apheresis"],
                 password="rex-password-1")
    rex = ledger.unlock("rex", "rex-password-1")
    revoked_at = ledger.revoke(admin, user="rex", reason="laptop stolen").index
    w, lid, _text = signed_label(site, tmp_path)  # issued by alice after the revocation
    stolen = "]Q1" + payload.sign(w.coi, "C00001", label_key_id(rex.public_key), rex.key)
    with pytest.raises(Refused, match=f"of rex, revoked at entry {revoked_at} \\(laptop "
                                      "stolen\\), before label") as exc:
        L.check_scan(site.svc, stolen, w.coi)
    assert exc.value.recorded_index is not None
    # Labels a key signed before it was revoked still verify.
    assert public_bytes(rex.key) != site.people["alice"].public_key


def test_a_signed_reprint_is_signed_and_the_old_label_refused(site: demo.Site,
                                                             tmp_path: Path) -> None:
    w, old, text = signed_label(site, tmp_path)
    new, path = L.reprint(site.svc, site.people["amir"], w.coi, old, "smudged", "png", "4x2",
                          None, False, tmp_path / "new.png", signed=True)
    (qr,) = decode(png_image(path.read_bytes()), zxingcpp.BarcodeFormat.QRCode)
    again = scanned(qr)
    assert payload.decode(again[3:]).key_id == label_key_id(site.people["amir"].public_key)
    scan = L.check_scan(site.svc, again, w.coi, "C00001")
    assert L.label_of(site.svc, scan) == new  # type: ignore[arg-type]
    with pytest.raises(Refused, match="superseded"):
        L.check_scan(site.svc, text, w.coi)


_CHANGE = st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ=+-*/ ]&%")


@pytest.mark.req("DEVICE-CHECKS")
@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), fix_check=st.booleans())
def test_any_change_to_any_character_is_refused(site: demo.Site,
                                                one_signed: tuple[demo.Walk, str, str],
                                                data: st.DataObject, fix_check: bool) -> None:
    w, _lid, text = one_signed
    body = text[3:]
    i = data.draw(st.integers(0, len(body) - 1), label="position")
    ch = data.draw(_CHANGE.filter(lambda c: c != body[i]), label="replacement")
    changed = body[:i] + ch + body[i + 1:]
    if fix_check and i < len(body) - 1 and changed[:-1].isalnum() and changed[:-1].isupper():
        changed = changed[:-1] + payload.mod37_36(changed[:-1])  # a forger fixes the check too
    with pytest.raises(Refused) as exc:
        L.check_scan(site.svc, "]Q1" + changed, w.coi, "C00001")
    assert exc.value.recorded_index is not None


runner = CliRunner()


def test_cli_prints_signed_labels_and_labels_check_refuses_a_forgery(
        site: demo.Site, db_path: Path, tmp_path: Path) -> None:
    w = collected(site)
    db = str(db_path)
    pw = tmp_path / "alice.pw"
    pw.write_text(demo.demo_password("alice") + "\n")
    common = ["--db", db, "--as", "alice", "--password-file", str(pw)]
    out = tmp_path / "l.png"
    r = runner.invoke(app, ["label", w.coi, "-f", "png", "-o", str(out), "--size", "4x2",
                            "--signed", *common])
    assert r.exit_code == 0, r.stderr
    (qr,) = decode(png_image(out.read_bytes()), zxingcpp.BarcodeFormat.QRCode)
    ok = runner.invoke(app, ["labels", "check", "--scan", scanned(qr), "--coi", w.coi, *common])
    assert ok.exit_code == 0 and '"accepted": true' in ok.stdout
    assert '"signature": "verified with the key that issued the label"' in ok.stdout
    forged = _forge(w, bytes.fromhex("DEADBEEF"))
    bad = runner.invoke(app, ["labels", "check", "--scan", forged, "--coi", w.coi, *common])
    assert bad.exit_code == 1
    assert "not in this site's key registry" in bad.stderr and "entry" in bad.stderr
    small = runner.invoke(app, ["label", w.coi, "-f", "png", "-o", str(tmp_path / "s.png"),
                                "--signed", "--item", "C00002", *common])
    assert small.exit_code != 0 and "4x2" in small.stderr


@pytest.mark.req("LABEL-CONTROL")
def test_a_scan_station_refuses_a_voided_label_signed_or_plain(site: demo.Site,
                                                              tmp_path: Path) -> None:
    """The stations' check (``trust_problem``) refuses a voided label as ``coi labels check``
    does: its signature is genuine, but the label was taken off the bag; once reprinted, the
    message names the label that superseded it, and the reprint itself is accepted."""
    w, lid, text = signed_label(site, tmp_path)
    alice = site.people["alice"]
    scan = L.check_scan(site.svc, text, w.coi, "C00001")
    assert L.trust_problem(site.svc, scan) is None
    L.void(site.svc, alice, w.coi, lid, "smudged in the cold room")
    problem = L.trust_problem(site.svc, scan)
    assert problem is not None and f"label {lid} was voided" in problem
    plain = payload.encode(w.coi, "C00001")
    assert L.trust_problem(site.svc, read_scan(plain)) is not None  # signed: no plain copy
    new_id, _ = L.reprint(site.svc, alice, w.coi, lid, "smudged", "png", "4x2", None, False,
                          tmp_path / "re.png", signed=True)
    problem = L.trust_problem(site.svc, scan)
    assert problem is not None and f"superseded by {new_id}" in problem
    (qr,) = decode(png_image((tmp_path / "re.png").read_bytes()), zxingcpp.BarcodeFormat.QRCode)
    assert L.trust_problem(site.svc, L.check_scan(site.svc, scanned(qr), w.coi)) is None
