"""coi's label payload: layout, MOD 37-36 check character, signed variant and tampering."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from stdnum.iso7064 import mod_37_36

from coi.domain import payload
from coi.domain.errors import ScanError
from coi.domain.isbt import CoiId
from coi.domain.payload import LabelPayload

COI = "CHA999925000001"
KEY_ID = bytes.fromhex("0A1B2C3D")
# A fixed key so the golden signed payload below is reproducible (Ed25519 is deterministic).
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))

ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
COIS = st.builds(
    CoiId,
    st.sampled_from([f"A999{d}" for d in range(10)]),
    st.integers(0, 99).map(lambda y: f"{y:02d}"),
    st.text(alphabet=ALNUM, min_size=6, max_size=6),
).map(lambda c: c.text)
ITEMS = st.builds(lambda k, n: f"{k}{n:05d}", st.sampled_from("CFDW"), st.integers(0, 99_999))


def test_plain_golden_vector() -> None:
    text = payload.encode(COI, "F00001")
    assert text == "COI1CHA999925000001F00001V"
    assert len(text) == payload.PLAIN_LENGTH == 26
    assert mod_37_36.is_valid(text)
    assert payload.decode(text) == LabelPayload(COI, "F00001")


@given(st.text(alphabet=ALNUM, max_size=60))
def test_mod37_36_agrees_with_stdnum(s: str) -> None:
    assert payload.mod37_36(s) == mod_37_36.calc_check_digit(s)


@given(COIS, ITEMS)
def test_plain_round_trip(coi: str, item: str) -> None:
    text = payload.encode(coi, item)
    assert len(text) == 26
    assert text.isalnum() and text.isupper()
    label = payload.decode(text)
    assert label == LabelPayload(coi, item)
    assert label.text() == text
    assert payload.decode(text.lower()) == label


@given(COIS, ITEMS, st.binary(min_size=4, max_size=4))
def test_signed_round_trip(coi: str, item: str, key_id: bytes) -> None:
    text = payload.sign(coi, item, key_id, PRIVATE)
    assert len(text) == payload.SIGNED_LENGTH == 137
    assert text.isalnum() and text.isupper()
    label = payload.decode(text)
    assert (label.coi, label.item, label.signed, label.key_id) == (coi, item, True, key_id)
    assert label.text() == text
    payload.verify_signed(text, PRIVATE.public_key())
    payload.verify_signed(label, PRIVATE.public_key())


def test_signed_layout() -> None:
    text = payload.sign(COI, "C00042", KEY_ID, PRIVATE)
    head = f"COS1{COI}C000420A1B2C3D"
    assert text.startswith(head)
    sig = base64.b32decode(text[33:136] + "=")
    PRIVATE.public_key().verify(sig, b"coi-label/v1\n" + head.encode())
    assert text[136] == mod_37_36.calc_check_digit(text[:136])


def test_signed_fails_with_another_key() -> None:
    text = payload.sign(COI, "F00001", KEY_ID, PRIVATE)
    with pytest.raises(ScanError, match="does not verify with key 0A1B2C3D"):
        payload.verify_signed(text, OTHER.public_key())


@pytest.mark.parametrize("pos", [8, 11, 18, 20, 24, 25, 32])
def test_signed_fails_when_a_signed_character_changes(pos: int) -> None:
    text = payload.sign(COI, "F00001", KEY_ID, PRIVATE)
    # Change one covered character to another valid one and repair the check character, as a
    # forger would: the format stays valid, only the signature catches it.
    ch = text[pos]
    new = "1" if ch != "1" else "2"
    body = text[:pos] + new + text[pos + 1 : 136]
    forged = body + payload.mod37_36(body)
    with pytest.raises(ScanError, match="does not verify"):
        payload.verify_signed(forged, PRIVATE.public_key())


@given(st.data())
def test_any_single_character_change_is_caught(data: st.DataObject) -> None:
    text = payload.sign(COI, "W00007", KEY_ID, PRIVATE)
    pos = data.draw(st.integers(0, len(text) - 1))
    new = data.draw(st.sampled_from([c for c in ALNUM if c != text[pos]]))
    tampered = text[:pos] + new + text[pos + 1 :]
    with pytest.raises(ScanError):
        payload.verify_signed(tampered, PRIVATE.public_key())


def test_verify_refuses_unsigned_payload() -> None:
    with pytest.raises(ScanError, match="not signed"):
        payload.verify_signed(payload.encode(COI, "F00001"), PRIVATE.public_key())


def test_non_canonical_signature_text_refused() -> None:
    text = payload.sign(COI, "F00001", KEY_ID, PRIVATE)
    # The last base32 character carries 2 unused bits; setting them makes another spelling of
    # the same signature bytes, which coi never writes.
    last = text[135]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    spelled = alphabet[alphabet.index(last) | 0b00111]
    if spelled == last:
        spelled = alphabet[alphabet.index(last) & ~0b00111]
    body = text[:135] + spelled
    with pytest.raises(ScanError, match="one way coi writes it"):
        payload.decode(body + payload.mod37_36(body))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("COI1CHA999925000001F00001", "26 characters; this one has 25"),
        ("COI1CHA999925000001F00001VV", "26 characters; this one has 27"),
        ("COS1CHA999925000001F00001V", "signed coi label code has 137"),
        ("COI2CHA999925000001F00001V", "version 'COI2'"),
        ("XYZ1CHA999925000001F00001V", "start with COI1 or COS1"),
        ("COI1CHA999925000001F00001W", "check character does not match"),
        ("COI1CHA999925000001F0000-V", "holds '-' at character 25"),
        ("COI1CHA99992500000éF00001V", "keyboard layout"),
    ],
)
def test_decode_reasons(text: str, match: str) -> None:
    with pytest.raises(ScanError, match=match):
        payload.decode(text)


def _with_check(body: str) -> str:
    return body + payload.mod37_36(body)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("COI1CHA999925000001X00001", "starts with 'X'"),
        ("COI1CHA999925000001FA0001", "five digits"),
        ("COI1CHO999925000001F00001", "chain of identity is not valid"),
        ("COI1XXA999925000001F00001", "chain of identity is not valid"),
    ],
)
def test_decode_field_reasons(body: str, match: str) -> None:
    with pytest.raises(ScanError, match=match):
        payload.decode(_with_check(body))


def test_decode_refuses_bad_key_id() -> None:
    text = payload.sign(COI, "F00001", KEY_ID, PRIVATE)
    with pytest.raises(ScanError, match="key id"):
        payload.decode(_with_check(text[:25] + "ZZZZZZZZ" + text[33:136]))


def test_decode_refuses_non_base32_signature() -> None:
    text = payload.sign(COI, "F00001", KEY_ID, PRIVATE)
    with pytest.raises(ScanError, match="base32"):
        payload.decode(_with_check(text[:33] + "0" + text[34:136]))


@pytest.mark.parametrize(
    ("coi", "item", "match"),
    [
        ("CHA99992500000", "F00001", "15 characters"),
        (COI, "Q00001", "starts with 'Q'"),
        (COI, "F0001", "five digits"),
        (COI.lower(), "F00001", "chain of identity is not valid"),
    ],
)
def test_encode_refuses_bad_fields(coi: str, item: str, match: str) -> None:
    with pytest.raises(ScanError, match=match):
        payload.encode(coi, item)
    with pytest.raises(ScanError, match=match):
        payload.sign(coi, item, KEY_ID, PRIVATE)


def test_sign_refuses_bad_key_id_length() -> None:
    with pytest.raises(ScanError, match="4 bytes"):
        payload.sign(COI, "F00001", b"\x01\x02\x03", PRIVATE)


def test_item_kinds() -> None:
    kinds = {k: LabelPayload(COI, f"{k}00001").item_kind for k in "CFDW"}
    assert kinds == {
        "C": "collection bag",
        "F": "final product bag",
        "D": "shipping document",
        "W": "patient wristband",
    }
    assert LabelPayload(COI, "F00001").coi_id == CoiId("A9999", "25", "000001")


def test_signed_golden_vector() -> None:
    # docs/labels.md, section 6: Ed25519 is deterministic, so the signed payload is fixed.
    expected = (
        "COS1CHA999925000001F000010A1B2C3D"
        "VXGA2SX4XJ54UMKYWPHDSFTYJARTI6CQNMA4NS4JOE3SV53ECL4KOFNOJLXUILZFE2J26IGNT6R5FMTPXVPDKQH"
        "SWWPOOA26GHNZ6CQ"
        "T"
    )
    assert payload.sign(COI, "F00001", KEY_ID, PRIVATE) == expected
    payload.verify_signed(expected, PRIVATE.public_key())
