"""Scan parsing: what a barcode scanner typed, turned into one typed result or one error.

This module owns the boundary between a scanner (a keyboard wedge: key presses ending in Enter,
optionally led by an AIM symbology identifier) and the domain. :func:`parse_scan` is pure and
total: for any string it returns a :data:`Scan` or raises :class:`ScanError`, never anything
else. The rules (written out in ``docs/labels.md``):

1. refuse input longer than :data:`MAX_SCAN_LENGTH` characters, before looking at it;
2. strip one trailing Enter (CR LF, CR or LF) or Tab, then surrounding spaces;
3. strip an AIM symbology identifier (``]`` + letter + letter or digit: ``]Q1`` QR, ``]d1``
   Data Matrix, ``]C0`` Code 128, ``]C4`` ISBT 128 concatenation, ...);
4. refuse control characters other than the group separator GS (0x1D) and non-ASCII characters;
5. upper-case (matching is case-insensitive, so Caps Lock does no harm);
6. recognise coi's label payload (``COI1``/``COS1``), an ISBT 128 compound message (``=+``),
   product code (``=<``), Chain of Identity Identifier (``&/``) or DIN (``=``), or two
   structures concatenated; anything else is refused with a reason naming what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from coi.domain import isbt, payload
from coi.domain.errors import ScanError

__all__ = [
    "MAX_SCAN_LENGTH",
    "CoiIdScan",
    "CompoundScan",
    "DinScan",
    "LabelScan",
    "ProductCodeScan",
    "Scan",
    "parse_scan",
    "structure_json",
]

MAX_SCAN_LENGTH: Final = 512
GS: Final = "\x1d"

_AIM_CODE: Final = re.compile("[A-Za-z][0-9A-Za-z]")
_ENTER_SUFFIXES: Final = ("\r\n", "\r", "\n", "\t")
_EXPECTED: Final = (
    "coi reads its own label codes (starting COI1 or COS1) and ISBT 128 codes: a DIN (=), "
    "a product code (=<), a Chain of Identity Identifier (&/) or a compound message (=+)"
)
_CONTROL_NAMES: Final = {"\x1b": "ESC", "\t": "Tab", "\r": "Enter (CR)", "\n": "line feed (LF)"}


def structure_json(structure: isbt.Structure) -> dict[str, Any]:
    """A JSON-able description of one ISBT 128 data structure."""
    if isinstance(structure, isbt.Din):
        return {
            "structure": "din",
            "din": structure.text,
            "fin": structure.fin,
            "year": structure.year,
            "sequence": structure.sequence,
            "check": structure.check,
            "test_fin": isbt.is_test_fin(structure.fin),
        }
    if isinstance(structure, isbt.CoiId):
        return {
            "structure": "coi_id",
            "coi": structure.text,
            "fin": structure.fin,
            "year": structure.year,
            "serial": structure.serial6,
            "check": structure.check,
            "test_fin": isbt.is_test_fin(structure.fin),
        }
    return {
        "structure": "product_code",
        "code": structure.code5,
        "collection_type": structure.collection_type,
        "division": structure.division,
        "cellular_therapy": structure.is_cellular_therapy,
        "autologous": structure.is_autologous,
    }


@dataclass(frozen=True, slots=True)
class LabelScan:
    """coi's own label payload, plain or signed (the signature is not verified here)."""

    label: payload.LabelPayload
    symbology: str | None = None
    kind: Literal["label"] = "label"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description, as ``coi parse`` prints it."""
        lab = self.label
        return {
            "kind": self.kind,
            "symbology": self.symbology,
            "coi": lab.coi,
            "item": lab.item,
            "item_kind": lab.item_kind,
            "signed": lab.signed,
            "key_id": lab.key_id.hex().upper() if lab.key_id is not None else None,
        }


@dataclass(frozen=True, slots=True)
class DinScan:
    """An ISBT 128 DIN (data structure 001) with its two flag characters."""

    din: isbt.Din
    flags: str
    symbology: str | None = None
    kind: Literal["din"] = "din"

    @property
    def flag_kind(self) -> str:
        """``check``, ``container`` or ``none``."""
        return isbt.din_flag_kind(self.flags)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description, as ``coi parse`` prints it."""
        return {
            "kind": self.kind,
            "symbology": self.symbology,
            **structure_json(self.din),
            "flags": self.flags,
            "flag_kind": self.flag_kind,
        }


@dataclass(frozen=True, slots=True)
class CoiIdScan:
    """An ISBT 128 Chain of Identity Identifier (data structure 040)."""

    coi_id: isbt.CoiId
    symbology: str | None = None
    kind: Literal["coi_id"] = "coi_id"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description, as ``coi parse`` prints it."""
        return {"kind": self.kind, "symbology": self.symbology, **structure_json(self.coi_id)}


@dataclass(frozen=True, slots=True)
class ProductCodeScan:
    """An ISBT 128 product code (data structure 003)."""

    product_code: isbt.ProductCode
    symbology: str | None = None
    kind: Literal["product_code"] = "product_code"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description, as ``coi parse`` prints it."""
        return {
            "kind": self.kind,
            "symbology": self.symbology,
            **structure_json(self.product_code),
        }


@dataclass(frozen=True, slots=True)
class CompoundScan:
    """Several ISBT 128 data structures in one scan.

    ``source`` is ``compound`` for a compound message (data structure 023) or ``concatenation``
    for two linear barcodes read together (ISBT 128 concatenation).
    """

    structures: tuple[isbt.Structure, ...]
    source: Literal["compound", "concatenation"] = "compound"
    symbology: str | None = None
    kind: Literal["compound"] = "compound"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description, as ``coi parse`` prints it."""
        return {
            "kind": self.kind,
            "symbology": self.symbology,
            "source": self.source,
            "structures": [structure_json(s) for s in self.structures],
        }


Scan = LabelScan | DinScan | CoiIdScan | ProductCodeScan | CompoundScan
"""Everything :func:`parse_scan` can return; tell them apart by ``kind``."""


def _describe(ch: str) -> str:
    name = _CONTROL_NAMES.get(ch)
    if name is not None:
        return name
    if ch.isprintable():
        return repr(ch)
    return f"U+{ord(ch):04X}"


def _clean(raw: str) -> tuple[str, str | None]:
    """Steps 1-5: return the upper-cased content and the AIM identifier (or None)."""
    # 1. a length cap, before anything else looks at the input.
    if len(raw) > MAX_SCAN_LENGTH:
        raise ScanError(
            f"The scan is {len(raw)} characters long, more than any code coi reads "
            f"({MAX_SCAN_LENGTH}); scan one label at a time."
        )
    # 2. one Enter or Tab suffix, then surrounding spaces.
    text = raw
    for suffix in _ENTER_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    text = text.strip(" ")
    # 3. an AIM symbology identifier.
    symbology = None
    if text.startswith("]"):
        if len(text) >= 3 and _AIM_CODE.fullmatch(text, 1, 3):
            symbology, text = text[:3], text[3:]
        else:
            raise ScanError(
                "The scan starts with ']' but no symbology identifier follows (such as ]Q1 or "
                "]d1); check the scanner's prefix setting and scan again."
            )
    if not text:
        raise ScanError("Nothing was scanned; scan the barcode again.")
    # 4. control and non-ASCII characters (GS is kept for compound messages).
    if not text.isascii() or not text.isprintable():
        for i, ch in enumerate(text):
            if ch == GS:
                continue
            if not ch.isascii():
                raise ScanError(
                    f"The scan holds {_describe(ch)} at character {i + 1}, which no coi or ISBT "
                    "128 code holds; check the scanner's keyboard layout (it must match the "
                    "computer's) and scan again."
                )
            if not ch.isprintable():
                raise ScanError(
                    f"The scan holds the control character {_describe(ch)} at character {i + 1}; "
                    "check the scanner's prefix and suffix settings (Enter only) and scan again."
                )
    # 5. case-insensitive from here on.
    return text.upper(), symbology


def _parse_isbt(content: str, symbology: str | None) -> Scan:
    """Step 6 for ISBT 128 content: one structure, a compound message or a concatenation."""
    if content.startswith(isbt.COMPOUND_ID):
        return CompoundScan(tuple(isbt.parse_compound(content)), "compound", symbology)
    if GS in content or len(content) > isbt.COI_CONTENT_LENGTH:
        parts = isbt.split_structures(content)
        if len(parts) == 2:
            structures = (isbt.parse_structure(parts[0]), isbt.parse_structure(parts[1]))
            return CompoundScan(structures, "concatenation", symbology)
        if len(parts) > 2:
            raise ScanError(
                f"The scan holds {len(parts)} ISBT 128 data structures back to back without a "
                "compound message header; scan each barcode on its own."
            )
    if content.startswith(isbt.PRODUCT_CODE_ID):
        return ProductCodeScan(isbt.parse_product_code(content), symbology)
    if content.startswith(isbt.COI_ID_ID):
        return CoiIdScan(isbt.parse_coi_id(content), symbology)
    if not content[1:2].isalnum():
        isbt.split_structures(content)  # raises: a data identifier coi does not read
    din, flags = isbt.parse_din_barcode(content)
    return DinScan(din, flags, symbology)


def parse_scan(raw: str) -> Scan:
    """Parse what a scanner typed into a :data:`Scan`; raise :class:`ScanError` otherwise.

    ``ScanError`` is the only exception that escapes, whatever ``raw`` holds.
    """
    if not isinstance(raw, str):
        raise ScanError("The scan is not text; this is a fault in the program that passed it.")
    content, symbology = _clean(raw)
    # 6. recognise what was scanned.
    if GS in content and not content.startswith(("=", "&")):
        raise ScanError(
            f"The scan holds a group separator (GS) at character {content.index(GS) + 1}, which "
            "only ISBT 128 codes hold; check the scanner's prefix setting and scan again."
        )
    try:
        if content.startswith(("COI", "COS")):
            return LabelScan(payload.decode(content), symbology)
        if content.startswith(("=", "&/")):
            return _parse_isbt(content, symbology)
    except ScanError:
        raise
    except Exception as exc:  # a bug below must still surface as a refused scan
        raise ScanError(
            f"coi could not read this scan ({type(exc).__name__}); scan it again and report "
            "the problem if it persists."
        ) from exc
    if content.startswith("&"):
        raise ScanError(
            f"The scan starts {content[:2]!r}, an ISBT 128 code coi does not read. {_EXPECTED}."
        )
    if content.startswith("CH") and len(content) == isbt.COI_TEXT_LENGTH:
        raise ScanError(
            "This looks like a Chain of Identity Identifier typed without its data identifier; "
            "scan its barcode (content starting &/) or the coi label instead."
        )
    raise ScanError(f"This is not a code coi reads. {_EXPECTED}.")
