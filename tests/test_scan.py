"""Scan parsing: scanner noise (AIM prefixes, suffixes, case), recognition, and total refusal."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given, settings
from hypothesis import strategies as st

from coi.domain import isbt, payload
from coi.domain.errors import ScanError
from coi.domain.isbt import CoiId, Din, ProductCode
from coi.domain.scan import (
    MAX_SCAN_LENGTH,
    CoiIdScan,
    CompoundScan,
    DinScan,
    LabelScan,
    ProductCodeScan,
    parse_scan,
)

COI = CoiId("A9999", "25", "000001")
DIN = Din("A9999", "25", "000123")
PC = ProductCode("S1234", "1", "00")
PLAIN = payload.encode(COI.text, "F00001")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SIGNED = payload.sign(COI.text, "C00002", bytes.fromhex("0A1B2C3D"), KEY)


def test_plain_label() -> None:
    scan = parse_scan(PLAIN)
    assert isinstance(scan, LabelScan)
    assert scan.kind == "label"
    assert scan.label == payload.LabelPayload(COI.text, "F00001")


def test_signed_label_parses_and_verifies() -> None:
    scan = parse_scan("]Q1" + SIGNED + "\r\n")
    assert isinstance(scan, LabelScan)
    assert scan.label.signed and scan.label.key_id == bytes.fromhex("0A1B2C3D")
    assert scan.symbology == "]Q1"
    payload.verify_signed(scan.label, KEY.public_key())


def test_din() -> None:
    scan = parse_scan(DIN.barcode())
    assert isinstance(scan, DinScan)
    assert (scan.din, scan.flags, scan.flag_kind) == (DIN, DIN.check_flags, "check")
    assert parse_scan(f"={DIN.text}02").to_json()["flag_kind"] == "container"


def test_coi_id() -> None:
    scan = parse_scan(COI.barcode())
    assert isinstance(scan, CoiIdScan) and scan.coi_id == COI


def test_product_code() -> None:
    scan = parse_scan(PC.barcode())
    assert isinstance(scan, ProductCodeScan) and scan.product_code == PC


def test_compound() -> None:
    scan = parse_scan("]d2" + isbt.compound([COI, DIN, PC]))
    assert isinstance(scan, CompoundScan)
    assert scan.structures == (COI, DIN, PC)
    assert scan.source == "compound"


@pytest.mark.parametrize("sep", ["", "\x1d"])
def test_concatenation(sep: str) -> None:
    scan = parse_scan("]C4" + DIN.barcode() + sep + PC.barcode())
    assert isinstance(scan, CompoundScan)
    assert scan.structures == (DIN, PC)
    assert scan.source == "concatenation"
    assert scan.symbology == "]C4"


def test_gs_kept_in_compound() -> None:
    scan = parse_scan(f"]d1=+02000{COI.barcode()}\x1d{DIN.barcode()}")
    assert isinstance(scan, CompoundScan) and scan.structures == (COI, DIN)


def test_three_structures_without_header_refused() -> None:
    with pytest.raises(ScanError, match="without a compound message header"):
        parse_scan(DIN.barcode() + PC.barcode() + COI.barcode())


@pytest.mark.parametrize("aim", ["]Q1", "]d1", "]d2", "]C0", "]C1", "]C4", "]E0", "]q1"])
def test_aim_prefixes_stripped(aim: str) -> None:
    scan = parse_scan(aim + PLAIN)
    assert isinstance(scan, LabelScan) and scan.symbology == aim


@pytest.mark.parametrize("suffix", ["", "\r", "\n", "\r\n", "\t", "  "])
def test_one_suffix_stripped(suffix: str) -> None:
    assert parse_scan(PLAIN + suffix) == parse_scan(PLAIN)


def test_only_one_suffix_stripped() -> None:
    with pytest.raises(ScanError, match="control character"):
        parse_scan(PLAIN + "\r\n\r\n")


@pytest.mark.parametrize(
    "raw", [PLAIN.lower(), SIGNED.lower(), DIN.barcode().lower(), COI.barcode().lower()]
)
def test_case_insensitive(raw: str) -> None:
    assert parse_scan(raw) == parse_scan(raw.upper())


def test_caps_lock_mixed_case() -> None:
    raw = "".join(c.lower() if i % 2 else c for i, c in enumerate(PLAIN))
    assert parse_scan(raw) == parse_scan(PLAIN)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("\x1b" + PLAIN, "control character ESC at character 1"),
        (PLAIN[:10] + "\x00" + PLAIN[10:], "control character U\\+0000 at character 11"),
        (PLAIN[:10] + "\t" + PLAIN[10:], "control character Tab"),
        ("\x1d" + PLAIN, "group separator"),
        (PLAIN + "\x1d", "group separator|26 characters"),
        ("=A99992500012365é", "keyboard layout"),
        ("]" + DIN.barcode(), "symbology identifier"),
        ("]Q", "symbology identifier"),
        ("", "Nothing was scanned"),
        ("\r\n", "Nothing was scanned"),
        ("]Q1", "Nothing was scanned"),
        ("X" * (MAX_SCAN_LENGTH + 1), "more than any code coi reads"),
        ("HELLO", "not a code coi reads"),
        ("&(12345", "an ISBT 128 code coi does not read"),
        ("CHA999925000001", "typed without its data identifier"),
        ("=>0123456789", "does not read"),
    ],
)
def test_refusals_name_the_problem(raw: str, match: str) -> None:
    with pytest.raises(ScanError, match=match):
        parse_scan(raw)


@pytest.mark.req("DEVICE-CHECKS")
def test_tampered_check_characters_refused() -> None:
    bad_label = PLAIN[:-1] + ("A" if PLAIN[-1] != "A" else "B")
    with pytest.raises(ScanError, match="check character"):
        parse_scan(bad_label)
    bad_signed = SIGNED[:-1] + ("A" if SIGNED[-1] != "A" else "B")
    with pytest.raises(ScanError, match="check character"):
        parse_scan(bad_signed)
    bad_din = DIN.barcode()[:-2] + f"{(int(DIN.check_flags) - 59) % 37 + 60:02d}"
    with pytest.raises(ScanError, match="fails its check"):
        parse_scan(bad_din)


def test_reasons_are_sentences() -> None:
    for raw in ["", "HELLO", "\x1bX", PLAIN[:-1], "=A9999250001236", "&/CH", "=+99"]:
        with pytest.raises(ScanError) as info:
            parse_scan(raw)
        reason = info.value.reason
        assert reason[0].isupper() or reason.startswith("coi"), reason
        assert reason.endswith("."), reason
        assert str(info.value) == reason


@pytest.mark.parametrize(
    "raw",
    [
        PLAIN,
        SIGNED,
        DIN.barcode(),
        COI.barcode(),
        PC.barcode(),
        isbt.compound([COI, DIN, PC]),
        DIN.barcode() + PC.barcode(),
    ],
)
def test_to_json_is_json(raw: str) -> None:
    data = parse_scan(raw).to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["kind"] == parse_scan(raw).kind


SCAN_ALPHABET = st.sampled_from(
    list("=<+&/]\x1d\r\n\t\x1b COIS1ACDFHQdWw0123456789*-é") + ["COI1", "COS1", "CHA9999", "]Q1"]
)


@settings(max_examples=10_000)
@given(st.text())
@example("")
@example("\x00")
@example("]")
@example("=+99000")
def test_fuzz_only_scan_error_escapes(raw: str) -> None:
    try:
        parse_scan(raw)
    except ScanError as exc:
        assert exc.reason


@settings(max_examples=3_000)
@given(st.lists(SCAN_ALPHABET, max_size=60).map("".join))
def test_fuzz_structured_noise_only_scan_error_escapes(raw: str) -> None:
    try:
        parse_scan(raw)
    except ScanError as exc:
        assert exc.reason


@given(st.data())
def test_fuzz_mutated_valid_scans(data: st.DataObject) -> None:
    good = data.draw(
        st.sampled_from(
            [PLAIN, SIGNED, DIN.barcode(), COI.barcode(), PC.barcode(), isbt.compound([COI, PC])]
        )
    )
    pos = data.draw(st.integers(0, len(good)))
    junk = data.draw(st.text(max_size=3))
    cut = data.draw(st.integers(0, 2))
    raw = good[:pos] + junk + good[pos + cut :]
    try:
        parse_scan(raw)
    except ScanError:
        pass


def test_non_string_refused() -> None:
    with pytest.raises(ScanError):
        parse_scan(b"COI1")  # type: ignore[arg-type]
