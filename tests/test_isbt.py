"""ISBT 128 formats and the MOD 37-2 check character: public vectors, round trips, tampering."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.iso7064 import mod_37_2

from coi.domain import isbt
from coi.domain.errors import ScanError
from coi.domain.isbt import CoiId, Din, IsbtError, ProductCode

# Public vectors (domain.md): the 13-character DIN, K and the check flag value.
VECTORS = [
    ("G123417654321", "A", "70"),
    ("G123498654321", "H", "77"),
    ("A999818123456", "N", "83"),
    ("A999820123456", "E", "74"),
    ("A999921123456", "3", "63"),
]

TEST_FINS = st.sampled_from([f"A999{d}" for d in range(10)])
YEARS = st.integers(0, 99).map(lambda y: f"{y:02d}")
SEQUENCES = st.integers(0, 999_999).map(lambda n: f"{n:06d}")
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.mark.parametrize(("din", "k", "flags"), VECTORS)
def test_mod37_2_public_vectors(din: str, k: str, flags: str) -> None:
    assert isbt.mod37_2(din) == k
    assert mod_37_2.calc_check_digit(din) == k


@pytest.mark.parametrize(("text", "k", "flags"), VECTORS)
def test_din_check_flags_public_vectors(text: str, k: str, flags: str) -> None:
    din = Din(text[:5], text[5:7], text[7:])
    assert din.text == text
    assert din.check == k
    assert din.barcode() == f"={text}{flags}"
    assert isbt.parse_din(f"={text}{flags}") == din


@given(st.text(alphabet=ALNUM + "*", max_size=40))
def test_mod37_2_agrees_with_stdnum(s: str) -> None:
    assert isbt.mod37_2(s) == mod_37_2.calc_check_digit(s)


def test_mod37_2_refuses_characters_outside_its_alphabet() -> None:
    with pytest.raises(IsbtError, match="outside 0-9 and A-Z"):
        isbt.mod37_2("a9999")


def test_isbt_error_is_a_scan_error() -> None:
    assert issubclass(IsbtError, ScanError)


@pytest.mark.parametrize("fin", [f"A999{d}" for d in range(10)])
def test_test_fins(fin: str) -> None:
    assert isbt.is_test_fin(fin)


@pytest.mark.parametrize("fin", ["A9989", "B9999", "A999", "A99990", "a9999", "W0000", "A999٣"])
def test_not_test_fins(fin: str) -> None:
    assert not isbt.is_test_fin(fin)


@pytest.mark.parametrize("fin", ["O9999", "09999", "A999X", "A99", "a9999", "A 999"])
def test_bad_fin_refused(fin: str) -> None:
    with pytest.raises(IsbtError, match="facility identification number"):
        Din(fin, "25", "000001")


@given(TEST_FINS, YEARS, SEQUENCES)
def test_din_round_trip(fin: str, year: str, seq: str) -> None:
    din = Din(fin, year, seq)
    assert len(din.text) == 13
    assert isbt.parse_din(din.barcode()) == din
    assert isbt.parse_din_barcode(din.barcode()) == (din, din.check_flags)
    assert 60 <= int(din.check_flags) <= 96


@pytest.mark.parametrize("flags", ["00", "01", "04", "15", "19"])
def test_din_container_flags_accepted(flags: str) -> None:
    din = Din("A9999", "25", "000123")
    assert isbt.parse_din_barcode(f"={din.text}{flags}") == (din, flags)
    assert din.barcode(flags) == f"={din.text}{flags}"


@pytest.mark.parametrize("flags", ["05", "14", "20", "59", "97", "99", "AB"])
def test_din_unknown_flags_refused(flags: str) -> None:
    with pytest.raises(IsbtError, match="flag characters"):
        isbt.parse_din(f"=A999925000123{flags}")


def test_din_wrong_check_flags_refused() -> None:
    din = Din("A9999", "21", "123456")
    assert din.check_flags == "63"
    with pytest.raises(IsbtError, match="fails its check"):
        isbt.parse_din("=A99992112345664")
    with pytest.raises(IsbtError, match="fails its check"):
        din.barcode("64")


@pytest.mark.req("DEVICE-CHECKS")
@given(TEST_FINS, YEARS, SEQUENCES, st.data())
def test_din_one_changed_digit_is_caught(
    fin: str, year: str, seq: str, data: st.DataObject
) -> None:
    din = Din(fin, year, seq)
    content = din.barcode()
    pos = data.draw(st.integers(5, 13))  # a year or sequence digit
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != content[pos]]))
    with pytest.raises(IsbtError):
        isbt.parse_din(content[:pos] + new + content[pos + 1 :])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("A99992112345663", "starts with '='"),
        ("=A9999211234566", "16 characters"),
        ("=A9999211234X663", "is not a DIN"),
        ("=<S12341A0", "starts with '='"),
    ],
)
def test_din_parse_reasons(content: str, match: str) -> None:
    with pytest.raises(IsbtError, match=match):
        isbt.parse_din(content)


def test_din_eye_readable() -> None:
    din = Din("A9999", "21", "123456")
    assert isbt.format_din_eye_readable(din) == "A9999 21 123456 3"


def test_coi_id_layout() -> None:
    coi = CoiId("A9999", "25", "00000A")
    assert coi.text == "CHA99992500000A"
    assert len(coi.text) == 15
    assert coi.check == isbt.mod37_2(coi.text) == mod_37_2.calc_check_digit(coi.text)
    assert coi.barcode() == "&/CHA99992500000A"
    assert coi.printed() == f"CHA99992500000A {coi.check}"
    assert isbt.parse_coi_id(coi.barcode()) == coi


@given(TEST_FINS, YEARS, st.text(alphabet=ALNUM, min_size=6, max_size=6))
def test_coi_id_round_trip(fin: str, year: str, serial: str) -> None:
    coi = CoiId(fin, year, serial)
    assert isbt.parse_coi_id(coi.barcode()) == coi
    assert isbt.coi_id_from_text(coi.text) == coi


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("CHA999925000001", "starts with '&/'"),
        ("&/CHA99992500001", "17 characters"),
        ("&/XXA999925000001", "is not a Chain of Identity"),
        ("&/CHA9999250000-1", "is not a Chain of Identity"),
    ],
)
def test_coi_id_parse_reasons(content: str, match: str) -> None:
    with pytest.raises(IsbtError, match=match):
        isbt.parse_coi_id(content)


def test_coi_id_refuses_lowercase_serial() -> None:
    with pytest.raises(IsbtError, match="upper-case"):
        CoiId("A9999", "25", "abc123")


def test_assign_coi_id_base36() -> None:
    assert isbt.assign_coi_id("A9999", 2025, 0).serial6 == "000000"
    assert isbt.assign_coi_id("A9999", 2025, 35).serial6 == "00000Z"
    assert isbt.assign_coi_id("A9999", 2025, 36).serial6 == "000010"
    assert isbt.assign_coi_id("A9999", 25, 36**6 - 1).serial6 == "ZZZZZZ"
    assert isbt.assign_coi_id("A9999", "25", 1) == CoiId("A9999", "25", "000001")
    assert isbt.assign_coi_id("A9999", 2025, 1).year == "25"


@pytest.mark.parametrize("n", [-1, 36**6, 10**12])
def test_assign_coi_id_refuses_overflow(n: int) -> None:
    with pytest.raises(IsbtError, match="counter"):
        isbt.assign_coi_id("A9999", 2025, n)


@given(st.integers(0, 36**6 - 1), st.integers(0, 36**6 - 1))
def test_assign_coi_id_is_injective(a: int, b: int) -> None:
    ida = isbt.assign_coi_id("A9999", 2025, a)
    idb = isbt.assign_coi_id("A9999", 2025, b)
    assert (ida == idb) == (a == b)
    assert int(ida.serial6, 36) == a


def test_product_code() -> None:
    pc = ProductCode("S1234", "1", "00")
    assert pc.barcode() == "=<S1234100"
    assert pc.is_cellular_therapy and pc.is_autologous
    assert isbt.parse_product_code("=<S1234100") == pc


def test_product_code_division_second_letter_is_lower_case() -> None:
    assert isbt.parse_product_code("=<S12341AB").division == "Ab"
    assert ProductCode("S1234", "1", "Ab").barcode() == "=<S12341Ab"


@given(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    st.integers(0, 9999),
    st.sampled_from(ALNUM),
    st.sampled_from(["00", "A0", "Ab", "Zz"]),
)
def test_product_code_round_trip(letter: str, n: int, ctype: str, division: str) -> None:
    pc = ProductCode(f"{letter}{n:04d}", ctype, division)
    assert isbt.parse_product_code(pc.barcode()) == pc
    assert isbt.parse_product_code(pc.barcode().upper()) == pc


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("=<S123410", "10 characters"),
        ("=<51234100", "product description code"),
        ("=<S1234-00", "collection type"),
        ("=<S123410A", "division"),
        ("=S1234100", "starts with '=<'"),
    ],
)
def test_product_code_parse_reasons(content: str, match: str) -> None:
    with pytest.raises(IsbtError, match=match):
        isbt.parse_product_code(content)


def test_compound_layout_and_round_trip() -> None:
    coi = CoiId("A9999", "25", "000001")
    din = Din("A9999", "25", "000123")
    pc = ProductCode("S1234", "1", "00")
    message = isbt.compound([coi, din, pc])
    assert message == "=+03000" + coi.barcode() + din.barcode() + pc.barcode()
    assert isbt.parse_compound(message) == [coi, din, pc]
    assert isbt.compound([coi.barcode(), din]) == "=+02000" + coi.barcode() + din.barcode()


@given(
    st.lists(
        st.one_of(
            st.builds(Din, TEST_FINS, YEARS, SEQUENCES),
            st.builds(CoiId, TEST_FINS, YEARS, st.text(alphabet=ALNUM, min_size=6, max_size=6)),
            st.builds(ProductCode, st.just("S1234"), st.sampled_from("0123"), st.just("00")),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_compound_round_trip(structures: list[isbt.Structure]) -> None:
    assert isbt.parse_compound(isbt.compound(structures)) == structures


def test_compound_accepts_gs_between_structures() -> None:
    din = Din("A9999", "25", "000123")
    pc = ProductCode("S1234", "1", "00")
    assert isbt.parse_compound(f"=+02000{din.barcode()}\x1d{pc.barcode()}") == [din, pc]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("=+0100", "starts '=\\+', two digits"),
        ("=+02000=A99992500012365", "says it holds 2"),
        ("=+00000", "says it holds 0"),
        ("=+01000=A9999250001", "cut short"),
        ("=+01000=>0123", "does not read"),
        ("=+01000=+01000", "cannot hold another compound"),
        ("=+01000\x1d=A99992500012365", "group separator"),
        ("=+02000=A99992500012365\x1d\x1d=<S1234100", "group separator"),
    ],
)
def test_compound_parse_reasons(content: str, match: str) -> None:
    with pytest.raises(IsbtError, match=match):
        isbt.parse_compound(content)


def test_compound_refuses_bad_parts() -> None:
    with pytest.raises(IsbtError):
        isbt.compound([])
    with pytest.raises(IsbtError):
        isbt.compound(["=A99992500012366"])


@pytest.mark.parametrize("first", ["coi.domain.isbt", "coi.domain.payload", "coi.domain.scan"])
def test_domain_modules_import_in_any_order_and_stay_pure(first: str) -> None:
    code = (
        f"import {first}, sys\n"
        "import coi.domain.isbt, coi.domain.payload, coi.domain.scan\n"
        "bad = {'sqlalchemy', 'sqlmodel', 'textual', 'typer', 'rich', 'qrcode', 'PIL'}\n"
        "assert not bad & set(sys.modules), bad & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
