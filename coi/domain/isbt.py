"""ISBT 128 identifiers coi reads and writes: formats and the check algorithm, nothing else.

This module owns the ISBT 128 data structures the tracker needs to identify a patient's material:

- the keyboard check character K (ISO/IEC 7064 MOD 37-2), :func:`mod37_2`;
- the Facility Identification Number (FIN) format, :func:`is_test_fin` (A9990-A9999 are
  reserved for validation and are the only FINs used in tests and demos);
- the Donation Identification Number, data structure 001 (:class:`Din`, :func:`parse_din`);
- the Chain of Identity Identifier, data structure 040 (:class:`CoiId`, :func:`parse_coi_id`,
  :func:`assign_coi_id`);
- the product code, data structure 003 (:class:`ProductCode`, :func:`parse_product_code`);
- the compound message, data structure 023 (:func:`compound`, :func:`parse_compound`).

It implements formats and the published check algorithm only: no ICCBBA tables (product
description codes, facility registry) and no text of the standard are shipped. Every parse and
every constructor raises :class:`IsbtError`, a :class:`coi.domain.errors.ScanError`, whose
``reason`` is a sentence a person at a scan station understands.

All parse functions take *barcode content*: the characters a scanner delivers, already stripped
of AIM prefixes and Enter suffixes and upper-cased (see :func:`coi.domain.scan.parse_scan`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from coi.domain.errors import ScanError

__all__ = [
    "COI_ID_ID",
    "COMPOUND_ID",
    "DIN_ID",
    "PRODUCT_CODE_ID",
    "CoiId",
    "Din",
    "IsbtError",
    "ProductCode",
    "Structure",
    "assign_coi_id",
    "coi_id_from_text",
    "compound",
    "din_flag_kind",
    "format_din_eye_readable",
    "is_test_fin",
    "mod37_2",
    "parse_coi_id",
    "parse_compound",
    "parse_din",
    "parse_din_barcode",
    "parse_product_code",
    "parse_structure",
    "split_structures",
]


class IsbtError(ScanError):
    """ISBT 128 content that does not follow its format or fails its check character."""


# Data identifiers (the first characters of each data structure's barcode content).
DIN_ID: Final = "="
PRODUCT_CODE_ID: Final = "=<"
COMPOUND_ID: Final = "=+"
COI_ID_ID: Final = "&/"

GS: Final = "\x1d"

_MOD37_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
_MOD37_VALUE: Final = {c: i for i, c in enumerate(_MOD37_ALPHABET)}
_BASE36: Final = _MOD37_ALPHABET[:36]

# A FIN: a letter other than O or a digit other than 0, then four digits.
_FIN: Final = "[A-NP-Z1-9][0-9]{4}"
_FIN_RE: Final = re.compile(_FIN)
_DIN_RE: Final = re.compile(f"({_FIN})([0-9]{{2}})([0-9]{{6}})")
_COI_TEXT_RE: Final = re.compile(f"CH({_FIN})([0-9]{{2}})([0-9A-Z]{{6}})")
_SERIAL_RE: Final = re.compile("[0-9A-Z]{6}")
_PRODUCT_CODE_RE: Final = re.compile("[A-Z][0-9]{4}")
_COLLECTION_TYPE_RE: Final = re.compile("[0-9A-Z]")
# Divisions: "00", a letter then 0, or a letter then a lower-case letter ("Ab"). Scans arrive
# upper-cased, so the second letter is accepted in either case and stored in lower case.
_DIVISION_RE: Final = re.compile("00|[A-Z]0|[A-Z][A-Za-z]")

DIN_TEXT_LENGTH: Final = 13
DIN_CONTENT_LENGTH: Final = 16  # "=" + 13 + 2 flag characters
COI_TEXT_LENGTH: Final = 15
COI_CONTENT_LENGTH: Final = 17  # "&/" + 15
PRODUCT_CODE_CONTENT_LENGTH: Final = 10  # "=<" + 5 + 1 + 2
COI_SERIAL_LIMIT: Final = 36**6

_CONTAINER_FLAGS: Final = frozenset({"01", "02", "03", "04", "15", "16", "17", "18", "19"})


def mod37_2(s: str) -> str:
    """Return the ISO/IEC 7064 MOD 37-2 check character K of ``s``.

    Values: 0-9 are 0-9, A-Z are 10-35, ``*`` is 36. For each character left to right
    ``acc = ((acc + value) * 2) % 37``; then ``K = alphabet[(38 - acc) % 37]``.
    """
    acc = 0
    try:
        for ch in s:
            acc = ((acc + _MOD37_VALUE[ch]) * 2) % 37
    except KeyError:
        raise IsbtError(
            f"The text {s!r} holds a character outside 0-9 and A-Z, so it has no ISBT 128 "
            "check character; check what was typed or scanned."
        ) from None
    return _MOD37_ALPHABET[(38 - acc) % 37]


def _check_value(k: str) -> int:
    return _MOD37_VALUE[k]


def is_test_fin(fin: str) -> bool:
    """True for the FINs ISBT 128 reserves for validation, A9990-A9999."""
    return len(fin) == 5 and fin.startswith("A999") and fin[4].isdigit() and fin[4].isascii()


def _check_fin(fin: str) -> None:
    if not _FIN_RE.fullmatch(fin):
        raise IsbtError(
            f"{fin!r} is not a facility identification number (FIN): a FIN is a letter other "
            "than O or a digit other than 0, then four digits, e.g. A9999."
        )


def _check_year(year: str) -> None:
    if len(year) != 2 or not year.isdigit() or not year.isascii():
        raise IsbtError(f"The year {year!r} must be two digits, e.g. 25 for 2025.")


# Donation Identification Number, data structure 001 -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Din:
    """A Donation Identification Number: FIN (5) + year (2) + sequence number (6)."""

    fin: str
    year: str
    sequence: str

    def __post_init__(self) -> None:
        _check_fin(self.fin)
        _check_year(self.year)
        if len(self.sequence) != 6 or not self.sequence.isdigit() or not self.sequence.isascii():
            raise IsbtError(
                f"The DIN sequence number {self.sequence!r} must be six digits, e.g. 000123."
            )

    @property
    def text(self) -> str:
        """The 13-character DIN, without data identifier or flags."""
        return f"{self.fin}{self.year}{self.sequence}"

    @property
    def check(self) -> str:
        """The keyboard check character K of the DIN."""
        return mod37_2(self.text)

    @property
    def check_flags(self) -> str:
        """The two flag digits that carry K: 60 + the check value of K."""
        return f"{60 + _check_value(self.check):02d}"

    def barcode(self, flags: str | None = None) -> str:
        """Barcode content: ``=`` + DIN + 2 flag characters (default: the check flags)."""
        if flags is None:
            flags = self.check_flags
        else:
            _check_din_flags(self, flags)
        return f"{DIN_ID}{self.text}{flags}"


def din_flag_kind(flags: str) -> str:
    """Name what two DIN flag characters carry: ``check``, ``container`` or ``none``.

    Raises :class:`IsbtError` for flag values coi does not read.
    """
    if flags == "00":
        return "none"
    if flags in _CONTAINER_FLAGS:
        return "container"
    if len(flags) == 2 and flags.isdigit() and flags.isascii() and 60 <= int(flags) <= 96:
        return "check"
    raise IsbtError(
        f"The DIN flag characters {flags!r} are not ones coi reads (00, 01-04, 15-19, or a "
        "check value 60-96); scan the DIN barcode again or enter the DIN by hand."
    )


def _check_din_flags(din: Din, flags: str) -> str:
    kind = din_flag_kind(flags)
    if kind == "check" and flags != din.check_flags:
        raise IsbtError(
            f"The DIN {din.text} fails its check: the flags say {flags} but the DIN gives "
            f"{din.check_flags}. The barcode was misread or altered; scan it again, and if it "
            "keeps failing, quarantine the item and report the label."
        )
    return kind


def parse_din_barcode(content: str) -> tuple[Din, str]:
    """Parse DIN barcode content (``=`` + 13 + 2 flags); return the DIN and its flags.

    Check flags (60-96) are verified against K; container flags (01-04, 15-19) and ``00``
    are accepted as they are.
    """
    if not content.startswith(DIN_ID) or content.startswith((PRODUCT_CODE_ID, COMPOUND_ID)):
        raise IsbtError("This is not a DIN barcode: DIN barcode content starts with '='.")
    if len(content) != DIN_CONTENT_LENGTH:
        raise IsbtError(
            f"A DIN barcode holds {DIN_CONTENT_LENGTH} characters ('=', the 13-character DIN "
            f"and 2 flags); this one holds {len(content)}. Scan the DIN barcode again."
        )
    m = _DIN_RE.fullmatch(content, 1, 14)
    if m is None:
        raise IsbtError(
            f"{content[1:14]!r} is not a DIN: a DIN is a FIN (e.g. A9999), a two-digit year and "
            "a six-digit sequence number. Scan the DIN barcode again."
        )
    din = Din(m.group(1), m.group(2), m.group(3))
    flags = content[14:16]
    _check_din_flags(din, flags)
    return din, flags


def parse_din(content: str) -> Din:
    """Parse DIN barcode content (``=`` + 13 + 2 flags), verifying check flags."""
    return parse_din_barcode(content)[0]


def format_din_eye_readable(din: Din) -> str:
    """The DIN as printed under its barcode, grouped, with K beside it: ``A9999 25 000123 K``."""
    return f"{din.fin} {din.year} {din.sequence} {din.check}"


# Chain of Identity Identifier, data structure 040 -------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoiId:
    """A Chain of Identity Identifier: ``CH`` + FIN (5) + year (2) + 6 alphanumerics."""

    fin: str
    year: str
    serial6: str

    def __post_init__(self) -> None:
        _check_fin(self.fin)
        _check_year(self.year)
        if not _SERIAL_RE.fullmatch(self.serial6):
            raise IsbtError(
                f"The Chain of Identity serial {self.serial6!r} must be six upper-case letters "
                "or digits."
            )

    @property
    def text(self) -> str:
        """The 15-character identifier: ``CH`` + FIN + year + serial."""
        return f"CH{self.fin}{self.year}{self.serial6}"

    @property
    def check(self) -> str:
        """The keyboard check character K (MOD 37-2 over the 15 characters)."""
        return mod37_2(self.text)

    def barcode(self) -> str:
        """Barcode content: ``&/`` + the 15-character identifier."""
        return f"{COI_ID_ID}{self.text}"

    def printed(self) -> str:
        """The identifier as printed for people, with K beside it: ``CHA999925000001 K``."""
        return f"{self.text} {self.check}"


def coi_id_from_text(text: str) -> CoiId:
    """Parse the 15-character identifier text (``CH`` + FIN + year + 6), without ``&/``."""
    if len(text) != COI_TEXT_LENGTH:
        raise IsbtError(
            f"A Chain of Identity Identifier has {COI_TEXT_LENGTH} characters ('CH', the FIN, "
            f"the year and 6 letters or digits); this one has {len(text)}."
        )
    m = _COI_TEXT_RE.fullmatch(text)
    if m is None:
        raise IsbtError(
            f"{text!r} is not a Chain of Identity Identifier: it must be 'CH', a FIN "
            "(e.g. A9999), a two-digit year and 6 letters or digits."
        )
    return CoiId(m.group(1), m.group(2), m.group(3))


def parse_coi_id(content: str) -> CoiId:
    """Parse Chain of Identity Identifier barcode content: ``&/`` + 15 characters."""
    if not content.startswith(COI_ID_ID):
        raise IsbtError(
            "This is not a Chain of Identity Identifier barcode: its content starts with '&/'."
        )
    if len(content) != COI_CONTENT_LENGTH:
        raise IsbtError(
            f"A Chain of Identity Identifier barcode holds {COI_CONTENT_LENGTH} characters "
            f"('&/' and 15 more); this one holds {len(content)}. Scan it again."
        )
    return coi_id_from_text(content[2:])


def assign_coi_id(fin: str, year: int | str, sequence_number: int) -> CoiId:
    """Derive the identifier for counter value ``sequence_number`` at facility ``fin``.

    The six alphanumerics are ``sequence_number`` in base 36 (0-9 then A-Z), upper case,
    zero-padded, so distinct counter values give distinct identifiers. ``year`` is a calendar
    year (2025) or its last two digits (25 or "25"). The caller keeps the counter (one per FIN
    and year) and never reuses a value; values beyond 36**6 - 1 are refused.
    """
    if isinstance(year, int):
        if year < 0:
            raise IsbtError(f"The year {year} is negative.")
        year = f"{year % 100:02d}"
    if isinstance(sequence_number, bool) or not isinstance(sequence_number, int):
        raise IsbtError("The Chain of Identity counter must be a whole number.")
    if not 0 <= sequence_number < COI_SERIAL_LIMIT:
        raise IsbtError(
            f"The Chain of Identity counter {sequence_number} is outside 0-{COI_SERIAL_LIMIT - 1}; "
            "this facility and year have no identifiers left."
        )
    digits = []
    n = sequence_number
    for _ in range(6):
        n, r = divmod(n, 36)
        digits.append(_BASE36[r])
    return CoiId(fin, year, "".join(reversed(digits)))


# Product code, data structure 003 -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductCode:
    """A product code: description code (5) + collection type (1) + division (2)."""

    code5: str
    collection_type: str
    division: str = "00"

    def __post_init__(self) -> None:
        if not _PRODUCT_CODE_RE.fullmatch(self.code5):
            raise IsbtError(
                f"{self.code5!r} is not a product description code: it is a letter and four "
                "digits (cellular therapy codes start with S)."
            )
        if not _COLLECTION_TYPE_RE.fullmatch(self.collection_type):
            raise IsbtError(
                f"The collection type {self.collection_type!r} must be one letter or digit "
                "(1 = for autologous use only)."
            )
        if not _DIVISION_RE.fullmatch(self.division):
            raise IsbtError(
                f"The division {self.division!r} must be 00, a letter and 0, or two letters."
            )
        if self.division[1].isupper():
            object.__setattr__(self, "division", self.division[0] + self.division[1].lower())

    @property
    def is_cellular_therapy(self) -> bool:
        """True for cellular therapy product description codes (they start with S)."""
        return self.code5.startswith("S")

    @property
    def is_autologous(self) -> bool:
        """True when the collection type says "for autologous use only" (1)."""
        return self.collection_type == "1"

    def barcode(self) -> str:
        """Barcode content: ``=<`` + code (5) + collection type (1) + division (2)."""
        return f"{PRODUCT_CODE_ID}{self.code5}{self.collection_type}{self.division}"


def parse_product_code(content: str) -> ProductCode:
    """Parse product code barcode content: ``=<`` + 5 + 1 + 2."""
    if not content.startswith(PRODUCT_CODE_ID):
        raise IsbtError("This is not a product code barcode: its content starts with '=<'.")
    if len(content) != PRODUCT_CODE_CONTENT_LENGTH:
        raise IsbtError(
            f"A product code barcode holds {PRODUCT_CODE_CONTENT_LENGTH} characters ('=<', the "
            f"5-character code, the collection type and the 2-character division); this one "
            f"holds {len(content)}. Scan it again."
        )
    return ProductCode(content[2:7], content[7], content[8:10])


# Compound message, data structure 023, and concatenated structures --------------------------------

Structure = Din | CoiId | ProductCode
"""The data structures coi reads inside compound messages and concatenations."""


def _structure_length(content: str, pos: int) -> int:
    """Length of the data structure that starts at ``pos``, from its data identifier."""
    if content.startswith(PRODUCT_CODE_ID, pos):
        return PRODUCT_CODE_CONTENT_LENGTH
    if content.startswith(COMPOUND_ID, pos):
        raise IsbtError(
            f"A compound message cannot hold another compound message (at character {pos + 1})."
        )
    if content.startswith(COI_ID_ID, pos):
        return COI_CONTENT_LENGTH
    if content.startswith(DIN_ID, pos) and pos + 1 < len(content) and content[pos + 1].isalnum():
        return DIN_CONTENT_LENGTH
    start = content[pos : pos + 2]
    raise IsbtError(
        f"The code holds a data structure coi does not read, starting {start!r} "
        f"at character {pos + 1}; coi reads DINs (=), product codes (=<) and Chain of Identity "
        "Identifiers (&/). Scan those barcodes on their own."
    )


def parse_structure(content: str) -> Structure:
    """Parse one data structure (DIN, product code or Chain of Identity Identifier)."""
    if content.startswith(PRODUCT_CODE_ID):
        return parse_product_code(content)
    if content.startswith(COI_ID_ID):
        return parse_coi_id(content)
    if content.startswith(DIN_ID) and not content.startswith(COMPOUND_ID):
        return parse_din(content)
    _structure_length(content, 0)  # raises with the reason
    raise AssertionError("unreachable")  # pragma: no cover


def split_structures(content: str, start: int = 0) -> list[str]:
    """Split back-to-back data structures from ``start`` on; a GS between two is skipped."""
    parts: list[str] = []
    pos = start
    n = len(content)
    while pos < n:
        if content[pos] == GS:
            if not parts or pos + 1 >= n or content[pos + 1] == GS:
                raise IsbtError(
                    f"A group separator (GS) stands at character {pos + 1} where no data "
                    "structure ends or begins; scan the code again."
                )
            pos += 1
            continue
        length = _structure_length(content, pos)
        if pos + length > n:
            raise IsbtError(
                f"The data structure at character {pos + 1} is cut short: it needs {length} "
                f"characters but only {n - pos} are left. Scan the code again."
            )
        parts.append(content[pos : pos + length])
        pos += length
    return parts


def compound(structures: Sequence[Structure | str]) -> str:
    """Build a compound message: ``=+`` + count (2) + ``000`` + the structures back to back.

    Items are data structures or their barcode content (which is checked by parsing it).
    """
    if not 1 <= len(structures) <= 99:
        raise IsbtError("A compound message holds between 1 and 99 data structures.")
    contents = [s if isinstance(s, str) else s.barcode() for s in structures]
    for c in contents:
        parse_structure(c)
    return f"{COMPOUND_ID}{len(contents):02d}000{''.join(contents)}"


def parse_compound(content: str) -> list[Structure]:
    """Parse a compound message into its data structures, checking the count.

    The three digits after the count name a specified message layout (``000``: none); coi
    reads the structures whatever their order, so any three digits are accepted.
    """
    if not content.startswith(COMPOUND_ID):
        raise IsbtError("This is not a compound message: its content starts with '=+'.")
    head = content[2:7]
    if len(head) != 5 or not head.isdigit() or not head.isascii():
        raise IsbtError(
            "A compound message starts '=+', two digits counting its data structures and three "
            f"more digits; this one starts {content[:7]!r}. Scan the code again."
        )
    count = int(head[:2])
    parts = split_structures(content, 7)
    if count == 0 or count != len(parts):
        raise IsbtError(
            f"The compound message says it holds {count} data structures but holds "
            f"{len(parts)}; the code is damaged or was misread. Scan it again."
        )
    return [parse_structure(p) for p in parts]
