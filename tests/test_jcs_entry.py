"""Canonical statement bytes (RFC 8785 under coi's profile) and what an entry signature binds.

Golden vectors: cyberphone/json-canonicalization ``testdata`` (the RFC 8785 author's test data)
and RFC 8785 Appendix B (number serialisation samples). They are checked against the
``rfc8785`` package that ``coi.ledger.jcs`` builds on, and against ``jcs`` itself wherever the
value is inside coi's profile (elsewhere ``jcs`` must refuse it, and say why).
"""

from __future__ import annotations

import base64
import json
import math
import struct
import unicodedata
from dataclasses import replace
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from coi.ledger import jcs
from coi.ledger.entry import (
    GENESIS_PREV,
    PAYLOAD_TYPE,
    SignedEntry,
    SignerRef,
    Statement,
    StoredEntry,
    b64,
    check_entry,
    envelope_bytes,
    pae,
    read_statement,
    sign,
)
from coi.ledger.errors import ProfileError, VerificationError
from coi.ledger.keys import generate, public_bytes
from coi.ledger.merkle import leaf_hash

# -- golden vectors --------------------------------------------------------------------------

# (name, input JSON text, expected canonical UTF-8 text, inside coi's profile?)
CYBERPHONE = [
    ("arrays", '[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]',
     '[56,{"1":[],"10":null,"d":true}]', True),
    ("structures",
     '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n'
     '  "a": { },\n  "111": [ { } ],\n  "A": { }\n}',
     '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}', False),
    ("french",
     '{\n  "peach": "This sorting order",\n  "p\u00e9ch\u00e9": "is wrong according to French",'
     '\n  "p\u00eache": "but canonicalization MUST",\n  "sin":   "ingnore locale"\n}\n',
     '{"peach":"This sorting order","p\u00e9ch\u00e9":"is wrong according to French",'
     '"p\u00eache":"but canonicalization MUST","sin":"ingnore locale"}', False),
    ("weird",
     r'{"\u20ac": "Euro Sign", "1": "One", "\u0080": "Control\u007f", "\ud83d\ude02": "Smiley",'
     r' "\u00f6": "Latin Small Letter O With Diaeresis",'
     r' "\ufb33": "Hebrew Letter Dalet With Dagesh", "</script>": "Browser Challenge"}',
     '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
     '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
     '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}', False),
    ("values",
     r"""{"numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],
         "escaping": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
         "literals": [null, true, false]}""",
     '{"escaping":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/","literals":[null,true,false],'
     '"numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}', False),
    ("unicode", r'{"Unnormalized Unicode":"\u1e0d\u0307"}',
     '{"Unnormalized Unicode":"\u1e0d\u0307"}', True),
    ("simpleString", '"this is a test string 1235"', '"this is a test string 1235"', True),
]

# cyberphone README sample, with its published UTF-8 hex
README_INPUT = r"""{
  "numbers": [1E30,4.50,6,2e-3,0.000000000000000000000000001],
  "escaping": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "other":  [null, true, false]
}"""
README_HEX = """
7b 22 65 73 63 61 70 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30 30 66 5c 6e 41 27 42 5c 22 5c 5c
5c 5c 5c 22 2f 22 2c 22 6e 75 6d 62 65 72 73 22 3a 5b 31 65 2b 33 30 2c 34 2e 35 2c 36 2c 30 2e
30 30 32 2c 31 65 2d 32 37 5d 2c 22 6f 74 68 65 72 22 3a 5b 6e 75 6c 6c 2c 74 72 75 65 2c 66 61
6c 73 65 5d 7d"""

# RFC 8785 Appendix B: IEEE 754 bit patterns and their JSON text (None: must be refused)
APPENDIX_B = [
    ("0000000000000000", "0"), ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"), ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"), ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("7fffffffffffffff", None), ("7ff0000000000000", None),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"), ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("name", "text", "expected", "in_profile"), CYBERPHONE,
                         ids=[c[0] for c in CYBERPHONE])
def test_cyberphone_vectors(name: str, text: str, expected: str, in_profile: bool) -> None:
    value = json.loads(text)
    want = expected.encode("utf-8")
    assert rfc8785.dumps(value) == want
    if in_profile:
        assert jcs.encode(value) == want
        assert jcs.decode(want) == value
    else:
        with pytest.raises(ProfileError):
            jcs.encode(value)
        with pytest.raises(ProfileError):
            jcs.decode(want)


def test_cyberphone_readme_hex() -> None:
    assert rfc8785.dumps(json.loads(README_INPUT)) == bytes.fromhex(README_HEX)
    with pytest.raises(ProfileError, match="floats"):
        jcs.encode(json.loads(README_INPUT))


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B, ids=[b for b, _ in APPENDIX_B])
def test_rfc8785_appendix_b_numbers(bits: str, expected: str | None) -> None:
    (f,) = struct.unpack(">d", bytes.fromhex(bits))
    if expected is None:
        assert math.isnan(f) or math.isinf(f)
        with pytest.raises(rfc8785.FloatDomainError):
            rfc8785.dumps(f)
    else:
        assert rfc8785.dumps(f) == expected.encode()
    with pytest.raises(ProfileError, match="float"):  # coi's profile has no floats at all
        jcs.encode({"x": f})


def test_rfc8785_key_order_is_by_utf16_code_units() -> None:
    """RFC 8785 §3.2.3: sorted on UTF-16 code units (U+1F600 sorts before U+FB33)."""
    value = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    out = rfc8785.dumps(value).decode()
    order = list(json.loads(out))
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


# -- the profile -----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "why"), [
    (1.0, "float"), ({"a": [1, 0.5]}, r"\$\.a\[1\].*float"), (float("nan"), "float"),
    (2**53, "outside"), (-(2**53), "outside"), ({"n": 10**30}, "outside"),
    ("e\u0301", "NFC"), ({"k": "\u212b"}, "NFC"),
    ("a\x00b", "U\\+0000"), ("\x1f", "U\\+001F"), ("\x7f", "U\\+007F"), ("\x85", "U\\+0085"),
    ("\r", "U\\+000D"), ("\ud800", "surrogate"),
    ({"\u00e9": 1}, "ASCII"), ({"": 1}, "ASCII"), ({"a\nb": 1}, "ASCII"), ({1: 1}, "not a string"),
    (b"bytes", "bytes"), ({1, 2}, "set"), (object(), "object"),
], ids=lambda v: type(v).__name__ if type(v) is object else repr(v)[:30])
def test_profile_refuses(value: Any, why: str) -> None:
    with pytest.raises(ProfileError, match=why):
        jcs.encode(value)


@pytest.mark.parametrize("value", [
    2**53 - 1, -(2**53 - 1), 0, True, False, None, "tab\tand\nnewline", "\u00e9t\u00e9 \u20ac",
    "\U0001f600", [], {}, {"nested": {"list": [1, "two", None, [True]]}},
])
def test_profile_accepts(value: Any) -> None:
    data = jcs.encode(value)
    assert data == rfc8785.dumps(value)
    assert jcs.decode(data) == value


def test_normalise_brings_strings_to_nfc_and_tuples_to_lists() -> None:
    raw = {"name": "Ame\u0301lie", "t": ("x", "e\u0301")}
    with pytest.raises(ProfileError):
        jcs.encode(raw)
    assert jcs.normalise(raw) == {"name": "Am\u00e9lie", "t": ["x", "\u00e9"]}
    assert jcs.decode(jcs.encode(jcs.normalise(raw))) == {"name": "Am\u00e9lie",
                                                          "t": ["x", "\u00e9"]}


def test_depth_cap() -> None:
    ok: Any = 1
    for _ in range(jcs.MAX_DEPTH):
        ok = [ok]
    jcs.encode(ok)
    with pytest.raises(ProfileError, match="deeper"):
        jcs.encode([ok])


def test_size_cap() -> None:
    fits = "x" * (jcs.MAX_BYTES - 2)  # two quotes
    assert len(jcs.encode(fits)) == jcs.MAX_BYTES
    with pytest.raises(ProfileError, match="cap"):
        jcs.encode(fits + "x")
    with pytest.raises(ProfileError, match="cap"):
        jcs.decode(b'"' + b"x" * jcs.MAX_BYTES + b'"')


@pytest.mark.parametrize("data", [
    b'{"a": 1}', b'{"b":1,"a":2}', b'{"a":1} ', b'\n{"a":1}', b'{"a":1}\n', b'"\\u0061"',
    b'"\\/"', b'"\\u00E9"', b'"\\u00e9"', b"-0", b"01", b"1e2", b"1.0", b"1E+2", b"NaN",
    b"Infinity", b'{"a":1,"a":1}', b'{"a":1,"a":2}', b"\xef\xbb\xbf{}", b'"\xff"', b"[1,]",
    b"", b"{", b'"e\xcc\x81"', b'"\\ud800"', b"[true,false",
], ids=lambda d: repr(d)[:24])
def test_decode_refuses_non_canonical_or_non_profile_bytes(data: bytes) -> None:
    with pytest.raises(ProfileError):
        jcs.decode(data)


def test_decode_names_duplicate_keys() -> None:
    with pytest.raises(ProfileError, match="duplicate object key 'a'"):
        jcs.decode(b'{"a":1,"a":1}')


_text = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=20).map(
    lambda s: unicodedata.normalize("NFC", s))
_key = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=8)
profile_values = st.recursive(
    st.none() | st.booleans() | st.integers(-jcs.MAX_INT, jcs.MAX_INT) | _text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_key, inner, max_size=5),
    max_leaves=25,
)


def _typed(v: Any) -> Any:
    """The value with each scalar's type attached, so True and 1 are told apart."""
    if isinstance(v, dict):
        return {k: _typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_typed(x) for x in v]
    return (type(v).__name__, v)


@given(profile_values)
def test_round_trip(value: Any) -> None:
    data = jcs.encode(value)
    back = jcs.decode(data)
    assert _typed(back) == _typed(value)
    assert jcs.encode(back) == data
    assert data == rfc8785.dumps(value)


@given(st.dictionaries(_key, profile_values, min_size=2, max_size=6))
def test_key_order_does_not_change_the_bytes(value: dict[str, Any]) -> None:
    shuffled = dict(reversed(list(value.items())))
    assert jcs.encode(shuffled) == jcs.encode(value)
    loose = json.dumps(value, ensure_ascii=False).encode()
    if loose != jcs.encode(value):
        with pytest.raises(ProfileError):
            jcs.decode(loose)


# -- what a signature binds ------------------------------------------------------------------

ORIGIN = "coi.test/jcs"
ALICE, BOB, MALLORY = generate(bytes([1]) * 32), generate(bytes([2]) * 32), generate(
    bytes([3]) * 32)


def _statement(index: int = 5, prev: bytes = b"\x11" * 32, *, log: str = ORIGIN,
               data: dict[str, Any] | None = None) -> Statement:
    return Statement(
        log=log, index=index, prev=prev, time_ms=1_790_000_000_000, tz="Europe/Paris",
        type="test.note", subject="CHA99992600001A",
        signers=(SignerRef("alice", public_bytes(ALICE), "Alice Apheresis", "authored"),
                 SignerRef("bob", public_bytes(BOB), "Bob Builder", "witnessed")),
        data=data if data is not None else {"n": 1, "text": "note"})


def _row(body: bytes, sigs: bytes, st_: Statement) -> StoredEntry:
    """A row whose columns agree with ``st_`` and whose entry hash is right for these bytes."""
    return StoredEntry(index=st_.index, prev_hash=st_.prev.hex(),
                       entry_hash=leaf_hash(envelope_bytes(body, sigs)).hex(),
                       time_ms=st_.time_ms, type=st_.type, subject=st_.subject,
                       signer=st_.author.user, statement=body, signatures=sigs)


def _stored(e: SignedEntry) -> StoredEntry:
    return _row(e.statement_bytes, e.signatures_bytes, e.statement)


def test_signed_entry_checks_out() -> None:
    e = sign(_statement(), [ALICE, BOB])
    c = check_entry(_stored(e), ORIGIN)
    assert c.entry_hash == e.entry_hash and c.statement == e.statement


def test_envelope_is_the_rfc8785_dsse_envelope() -> None:
    e = sign(_statement(), [ALICE, BOB])
    envelope = {"payload": b64(e.statement_bytes), "payloadType": PAYLOAD_TYPE,
                "signatures": json.loads(e.signatures_bytes)}
    assert envelope_bytes(e.statement_bytes, e.signatures_bytes) == jcs.encode(envelope)
    assert e.entry_hash == leaf_hash(jcs.encode(envelope))


def test_pae_is_dsse_v1() -> None:
    # DSSE protocol document's example
    assert pae(b"hello world", "http://example.com/HelloWorld") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")
    assert pae(b"{}").startswith(f"DSSEv1 {len(PAYLOAD_TYPE)} {PAYLOAD_TYPE} 2 ".encode())


SIGNER0 = _statement().signers[0]
CHANGES: dict[str, Any] = {
    "log": {"log": "coi.test/other"},
    "index": {"index": 6},
    "prev": {"prev": b"\x12" + b"\x11" * 31},
    "time": {"time_ms": 1_790_000_000_001},
    "tz": {"tz": "UTC"},
    "type": {"type": "test.other"},
    "subject": {"subject": "CHA99992600002A"},
    "signer.user": {"signers": (replace(SIGNER0, user="mallory"),
                                _statement().signers[1])},
    "signer.name": {"signers": (replace(SIGNER0, name="Alice Other"), _statement().signers[1])},
    "signer.meaning": {"signers": (replace(SIGNER0, meaning="approved"),
                                   _statement().signers[1])},
    "signer.order": {"signers": tuple(reversed(_statement().signers))},
    "witness.meaning": {"signers": (SIGNER0, replace(_statement().signers[1],
                                                     meaning="verified"))},
    "data.value": {"data": {"n": 2, "text": "note"}},
    "data.added": {"data": {"n": 1, "text": "note", "x": None}},
}


@pytest.mark.req("SIG-LINK")
@pytest.mark.parametrize("field", list(CHANGES))
def test_signatures_bind_every_field(field: str) -> None:
    """Change one field (columns and entry hash kept consistent): the signatures fail."""
    e = sign(_statement(), [ALICE, BOB])
    changed = replace(e.statement, **CHANGES[field])
    row = _row(changed.encode(), e.signatures_bytes, changed)
    with pytest.raises(VerificationError, match="signature") as info:
        check_entry(row, changed.log)
    assert info.value.index == changed.index


def test_signer_key_swapped_is_caught() -> None:
    e = sign(_statement(), [ALICE, BOB])
    changed = replace(e.statement, signers=(replace(SIGNER0, key=public_bytes(MALLORY)),
                                            e.statement.signers[1]))
    with pytest.raises(VerificationError, match="signature 0"):
        check_entry(_row(changed.encode(), e.signatures_bytes, changed), ORIGIN)
    # even with the key id made to match, the signature does not verify with that key
    sigs = json.loads(e.signatures_bytes)
    from coi.ledger.keys import key_id

    sigs[0]["keyid"] = key_id(public_bytes(MALLORY))
    with pytest.raises(VerificationError, match="does not verify"):
        check_entry(_row(changed.encode(), jcs.encode(sigs), changed), ORIGIN)


@pytest.mark.req("SIG-LINK")
def test_signature_moved_to_another_entry() -> None:
    a = sign(_statement(index=5), [ALICE, BOB])
    b = sign(_statement(index=6, prev=a.entry_hash, data={"n": 2, "text": "other"}),
             [ALICE, BOB])
    with pytest.raises(VerificationError, match="signature 0") as info:
        check_entry(_row(b.statement_bytes, a.signatures_bytes, b.statement), ORIGIN)
    assert info.value.index == 6
    # the same statement content at another position needs another index: not signed
    moved = replace(a.statement, index=9)
    with pytest.raises(VerificationError, match="signature"):
        check_entry(_row(moved.encode(), a.signatures_bytes, moved), ORIGIN)


def test_witness_signature_cannot_be_dropped_or_duplicated() -> None:
    e = sign(_statement(), [ALICE, BOB])
    sigs = json.loads(e.signatures_bytes)
    for bad in ([sigs[0]], [sigs[0], sigs[0]], [sigs[1], sigs[0]], sigs + [sigs[1]]):
        with pytest.raises(VerificationError):
            check_entry(_row(e.statement_bytes, jcs.encode(bad), e.statement), ORIGIN)


@pytest.mark.req("SIG-LINK")
def test_signature_moved_to_another_ledger() -> None:
    """An entry signed for one log is refused by another, even with its log field rewritten."""
    e = sign(_statement(log="coi.test/one"), [ALICE, BOB])
    with pytest.raises(VerificationError, match="belongs to log 'coi.test/one'"):
        check_entry(_stored(e), "coi.test/two")
    moved = replace(e.statement, log="coi.test/two")
    with pytest.raises(VerificationError, match="signature"):
        check_entry(_row(moved.encode(), e.signatures_bytes, moved), "coi.test/two")


@pytest.mark.parametrize("column", ["index", "prev_hash", "entry_hash", "time_ms", "type",
                                    "subject", "signer"])
def test_columns_must_agree_with_the_statement(column: str) -> None:
    e = sign(_statement(), [ALICE, BOB])
    row = _stored(e)
    other = {"index": 7, "prev_hash": "22" * 32, "entry_hash": "33" * 32, "time_ms": 1,
             "type": "test.x", "subject": "X", "signer": "bob"}[column]
    with pytest.raises(VerificationError):
        check_entry(row._replace(**{column: other}), ORIGIN)


def test_genesis_prev_is_zero() -> None:
    assert GENESIS_PREV == bytes(32)


@pytest.mark.parametrize("bad", [
    lambda s: s.replace(b'"v":1', b'"v":2'),
    lambda s: s.replace(b'"tz":"Europe/Paris",', b""),
    lambda s: s[:-1] + b',"z":1}',
    lambda s: s.replace(b'"index":5', b'"index":-5'),
    lambda s: s.replace(b'"type":"test.note"', b'"type":"Test Note"'),
    lambda s: s.replace(b'"prev":"11', b'"prev":"AA'),
])
def test_malformed_statements_are_refused_before_signatures(bad: Any) -> None:
    e = sign(_statement(), [ALICE, BOB])
    body = bad(e.statement_bytes)
    assert body != e.statement_bytes
    with pytest.raises(VerificationError, match="statement") as info:
        check_entry(_stored(e)._replace(statement=body), ORIGIN)
    assert info.value.index == 5


def test_base64_signatures_must_be_canonical() -> None:
    e = sign(_statement(), [ALICE, BOB])
    sigs = json.loads(e.signatures_bytes)
    raw = base64.b64decode(sigs[0]["sig"])
    sigs[0]["sig"] = base64.urlsafe_b64encode(raw).decode()
    if sigs[0]["sig"] != b64(raw):
        with pytest.raises(VerificationError, match="signature 0"):
            check_entry(_row(e.statement_bytes, jcs.encode(sigs), e.statement), ORIGIN)


# -- one reader: jcs.decode agrees with an independent reference ------------------------------

def _reference_profile(v: Any, depth: int = 0) -> bool:
    """docs/ledger-format.md section 2, written apart from ``jcs``: the whole value is level 1
    if it is an array or object, and none is deeper than 16 levels."""
    if isinstance(v, bool) or v is None:
        return True
    if isinstance(v, int):
        return abs(v) <= 2**53 - 1
    if isinstance(v, str):
        return (unicodedata.is_normalized("NFC", v)
                and not any(ord(c) < 0x20 and c not in "\t\n" or 0x7F <= ord(c) <= 0x9F
                            or 0xD800 <= ord(c) <= 0xDFFF for c in v))
    if isinstance(v, list):
        return depth < 16 and all(_reference_profile(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return depth < 16 and all(
            k and all(0x20 <= ord(c) <= 0x7E for c in k) and _reference_profile(x, depth + 1)
            for k, x in v.items())
    return False


def _reference_decode(data: bytes) -> Any:
    """Strict UTF-8, JSON without duplicate keys or floats, inside the profile, and equal to
    its RFC 8785 encoding by the ``rfc8785`` package; None for anything else."""
    def pairs(ps: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in ps}) != len(ps):
            raise ValueError("duplicate")
        return dict(ps)

    def refuse(_t: str) -> Any:
        raise ValueError("float or constant")

    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_float=refuse,
                           parse_constant=refuse)
    except (ValueError, RecursionError):
        return None
    if len(data) > 16 * 1024 or not _reference_profile(value):
        return None
    try:
        return value if rfc8785.dumps(value) == data else None
    except Exception:  # the reference encoder refuses it: not canonical
        return None


def _jcs_or_none(data: bytes) -> Any:
    try:
        return jcs.decode(data)
    except ProfileError:
        return None


def _mutations(data: bytes, seed: int) -> list[bytes]:
    """A few edits of ``data``: a byte replaced, one removed, one doubled, a JSON-ish insert."""
    n = seed % max(1, len(data))
    pieces = [b" ", b",", b'"', b"\\", b"{}", b"[]", b'"a":1,', b"\\u0000", b"0", b"-",
              b"1.5", b"\xc3\xa9", b"e\xcc\x81", b"\x7f", b"\\ud800"]
    piece = pieces[seed % len(pieces)]
    return [data[:n] + bytes([seed % 256]) + data[n + 1:], data[:n] + data[n + 1:],
            data[:n] + data[n:n + 1] * 2 + data[n + 1:], data[:n] + piece + data[n:]]


@given(profile_values, st.integers(0, 2**32))
def test_decode_agrees_with_the_reference(value: Any, seed: int) -> None:
    """The one reader (``jcs.decode``) accepts exactly what the reference accepts, with the
    same value, for canonical bytes and for mutations of them."""
    data = jcs.encode(value)
    assert _typed(_jcs_or_none(data)) == _typed(_reference_decode(data)) == _typed(value)
    for m in _mutations(data, seed):
        assert _typed(_jcs_or_none(m)) == _typed(_reference_decode(m)), m


@given(st.dictionaries(_key, profile_values, max_size=6), _text, st.integers(0, 2**60))
def test_statement_reader_agrees_with_the_reference(data: dict[str, Any], subject: str,
                                                    n: int) -> None:
    """Whole statements, and statements with one byte changed: ``read_statement`` accepts only
    bytes the reference decoder accepts, and gives the statement they hold."""
    base = _statement(data=data)
    s = replace(base, time_ms=min(n, jcs.MAX_INT))
    body = sign(s, [ALICE, BOB]).statement_bytes
    assert read_statement(body) == s
    for m in _mutations(body, n) + [body.replace(b'"subject":"CHA99992600001A"',
                                                 jcs.encode({"s": subject})[5:-1], 1)]:
        ref = _reference_decode(m)
        try:
            got: Any = read_statement(m)
        except ProfileError:
            got = None
        if got is not None:
            assert ref is not None and got == Statement.from_json(ref)


def test_decode_refuses_duplicates_found_only_by_the_comparison() -> None:
    """A repeated key is refused (the last value wins in the parse, and the value's encoding is
    then shorter than the bytes) and named."""
    for data in (b'{"a":1,"a":1}', b'{"a":{"b":1,"b":1}}', b'[{"a":[],"a":[]}]'):
        with pytest.raises(ProfileError, match="duplicate object key"):
            jcs.decode(data)


def test_decode_depth_counts_the_outermost_array_as_level_one() -> None:
    sixteen = b"[" * 16 + b"]" * 16
    assert jcs.decode(sixteen) is not None
    with pytest.raises(ProfileError, match="deeper than 16"):
        jcs.decode(b"[" * 17 + b"]" * 17)  # even empty at the 17th level
    deep: Any = []
    for _ in range(16):
        deep = [deep]
    with pytest.raises(ProfileError, match="deeper than 16"):
        jcs.encode(deep)


# -- the statement's own rules: every identifier matched whole -------------------------------

def _statement_outcome(body: bytes, sigs: bytes, st_: Statement) -> Any:
    """What ``check_entry`` says of a row with this statement's bytes (signatures and hash
    computed over them, so that only the statement's own checks can refuse it)."""
    try:
        c = check_entry(_row(body, sigs, st_), ORIGIN)
        return c.entry_hash, _typed(c.statement.data), c.statement
    except VerificationError as err:
        return err.index, str(err)


def _deep(levels: int) -> Any:
    v: Any = 1
    for _ in range(levels):
        v = {"d": v}
    return v


def _statement_variants() -> list[tuple[bytes, bytes, Statement]]:
    """Statements in the usual form, at its edges and just outside it, each signed."""
    base = _statement()
    values = [
        base,
        replace(base, data={}), replace(base, data={"a": {"b": 1}, "index": 2}),
        replace(base, data={"x": "},\"index\":5,\"log\":\"z\"", "y": [1, [2, {}]]}),
        replace(base, data={"text": "Zo\u00eb"}), replace(base, data={"t": "a\\b", "u": "\t"}),
        replace(base, data={"n": jcs.MAX_INT, "m": -jcs.MAX_INT, "b": True, "z": None}),
        replace(base, data=_deep(jcs.MAX_DEPTH - 2)), replace(base, data=_deep(jcs.MAX_DEPTH - 1)),
        replace(base, data={"s": "[" * 14}), replace(base, data={"s": "{" * 20}),
        replace(base, subject="CHA99992600001A \u00e9"), replace(base, subject='a"b'),
        replace(base, subject=""), replace(base, tz="", log=ORIGIN),
        replace(base, index=0), replace(base, index=jcs.MAX_INT),
        replace(base, time_ms=0), replace(base, time_ms=jcs.MAX_INT),
        replace(base, signers=base.signers[:1]),
        replace(base, signers=(replace(SIGNER0, name="Ch\u00e2telet ]\"], x"),)),
        replace(base, log="coi.test/other"), replace(base, type="test.note_2.x"),
    ]
    out = []
    for s in values:
        keys = {"alice": ALICE, "bob": BOB}
        e = sign(s, [keys[r.user] for r in s.signers])
        out.append((e.statement_bytes, e.signatures_bytes, e.statement))
    body, sigs, s = out[0]
    data = b'"data":{"n":1,"text":"note"}'
    raw = [body.replace(old, new) for old, news in STATEMENT_EDITS.items() for new in news]
    raw += [
        body.replace(data, data + b',"z":1'), body.replace(data, data + b"}"),
        body.replace(data, data[:-1]), body.replace(data, b'"data":{"n":1} '),
        body.replace(b'"signers":[{', b'"signers":[[{', 1).replace(b'}],"subject"',
                                                                 b'}]],"subject"'),
        body.replace(b'"signers":[{', b'"signers":{"a":[{', 1).replace(b'}],"subject"',
                                                                      b'}]},"subject"'),
        body[:-1] + b',"z":1}', body + b" ", b" " + body, body.replace(b"{", b"{ ", 1),
        *(body.replace(data[7:], b'{"a":' * k + b'{"n":1}' + b"}" * k)
          for k in (jcs.MAX_DEPTH - 2, jcs.MAX_DEPTH - 1, jcs.MAX_DEPTH)),
        *(body.replace(data[7:], b'{"a":' + b"[" * k + b"1" + b"]" * k + b"}") for k in (14, 15)),
    ]
    sig2 = [(r, sigs, s) for r in raw if r != body]
    sig_dup = out[0][2].signers[0]
    dup = replace(base, signers=(sig_dup, replace(sig_dup, meaning="witnessed")))
    e = sign(dup, [ALICE, ALICE])
    return [*out, *sig2, (e.statement_bytes, e.signatures_bytes, e.statement)]



STATEMENT_EDITS: dict[bytes, list[bytes]] = {
    b'"v":1': [b'"v":2', b'"v":true'],
    b'"index":5': [b'"index":05', b'"index":-5', b'"index":9007199254740992', b'"index":5.0',
                   b'"index":"5"'],
    b'"time":': [b'"time": '],
    b'"n":1': [b'"n":1.0', b'"n":1e0', b'"n":01', b'"n":9007199254740992'],
    b'"n":1,': [b'"n":1,"n":1,', b'"":1,"n":1,'],
    b'"data":{"n":1,"text":"note"}': [b'"data":[1]'],
    b'"type":"test.note"': [b'"type":"Test.note"', b'"type":"test..note"',
                            b'"type":"test.note."', b'"type":"test.note\\n"',
                            b'"type":"test.note\\u0000"'],
    b'"prev":"11': [b'"prev":"AA', b'"prev":"1'],
    b'"tz":"Europe/Paris"': [b'"tz":"Europe/Par\\u0069s"', b'"tz":"Europe\\/Paris"',
                             b'"tz":"Europe/Paris\x7f"', b'"tz":"Europe/Paris\\n"',
                             b'"tz":"Mars/Olympus"', b'"tz":"europe/paris"', b'"tz":""'],
    b'"subject":"CHA99992600001A"': [b'"subject":"\xff"', b'"subject":"CHA\\n"',
                                     b'"subject":""', b'"subject":"Zo\xc3\xab"',
                                     b'"subject":"' + b"x" * 129 + b'"'],
    b'"signers":[': [b'"signers":[ '],
    b'},{"key"': [b'}, {"key"'],
    b'"meaning":"witnessed"': [b'"meaning":"watched"', b'"meaning":["witnessed"]',
                               b'"meaning":"witnessed","x":[{}]'],
    b'"user":"bob"': [b'"user":"Bob"', b'"user":"bob\\n"', b'"user":"bob\\u0000"'],
    b'"name":"Bob Builder"': [b'"name":"Bob\\nBuilder"', b'"name":" Bob"', b'"name":""',
                              b'"name":"Bob\\u0085"'],
}


def test_every_statement_edit_is_refused_naming_the_entry() -> None:
    """Each edit leaves the statement's rules (its signatures recomputed over the edited bytes
    where they parse, so that only the statement's own checks can refuse it)."""
    body, sigs, s = _statement_variants()[0]
    for old, news in STATEMENT_EDITS.items():
        assert old in body, old
        for new in news:
            edited = body.replace(old, new)
            out = _statement_outcome(edited, sigs, s)
            assert out[0] == s.index and "statement" in out[1], (new, out)


@pytest.mark.parametrize(("field", "value", "why"), [
    ("type", "step.qa_release\n", "type"), ("type", "step.qa_release\t", "type"),
    ("subject", "CHA99992600001A\n", "subject"), ("subject", "Zo\u00eb", "subject"),
    ("subject", "", "subject"), ("subject", "x" * 129, "subject"),
    ("tz", "Europe/Paris\n", "tz"), ("tz", "Mars/Olympus", "tz"),
])
def test_signed_statement_with_a_bad_field_is_refused(field: str, value: str, why: str) -> None:
    """Properly signed, yet outside the statement's rules: refused, naming the entry."""
    s = replace(_statement(), **{field: value})
    e = sign(s, [ALICE, BOB])
    with pytest.raises(VerificationError, match=f"statement.*{why}") as info:
        check_entry(_stored(e), ORIGIN)
    assert info.value.index == s.index


@pytest.mark.parametrize(("user", "name"), [
    ("bob\n", "Bob Builder"), ("bob\t", "Bob Builder"), ("Bob", "Bob Builder"),
    ("bob", "Bob\nBuilder"), ("bob", "Bob Builder "), ("bob", "x" * 129), ("bob", "\t"),
])
def test_signed_statement_with_a_bad_signer_is_refused(user: str, name: str) -> None:
    s = _statement()
    s = replace(s, signers=(s.signers[0], replace(s.signers[1], user=user, name=name)))
    e = sign(s, [ALICE, BOB])
    with pytest.raises(VerificationError, match=r"statement: statement\.signers\[1\]"):
        check_entry(_stored(e), ORIGIN)


def test_statement_variants_check_out_or_are_refused_cleanly() -> None:
    """Statements at the edges of the rules, signed: each one checks out as written or is
    refused with a VerificationError naming it (never another exception)."""
    ok = 0
    for body, sigs, s in _statement_variants():
        out = _statement_outcome(body, sigs, s)
        if len(out) == 3:
            assert out[2] == read_statement(body)
            ok += 1
        else:
            assert out[0] == s.index
    assert ok >= 15
