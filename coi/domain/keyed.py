"""Identifiers keyed by hand: their check characters verified as a scan's would be.

Owns :func:`verify_keyed`. A field whose process definition names a ``check`` (a DIN, a Chain of
Identity Identifier, a bag's or a shipping document's coi label code) is verified here whenever
its value was not read by a scan station's scan parser, and turned into the value a station
records: the 13-character DIN, the 15-character CoI text, the item id (``F00001``, ``D00001``).

* ``din``: the DIN with its keyboard check character K (``A999926000001 N``, spaces allowed), or
  its barcode content with check flags 60–96 (``=A99992600000183``);
* ``coi``: the identifier with K as printed (``CHA999926000001 K``);
* ``bag`` / ``document``: the whole coi label code (``COI1…`` or ``COS1…``) with its check
  character; it must be this product's, and a bag (C or F) or a document (D) respectively.

Errors are :class:`~coi.domain.errors.ScanError` whose reason says what was wrong and what to do.
Pure: no I/O (a signed label's signature is the label service's to verify).
"""

from __future__ import annotations

import re

from coi.domain import isbt, payload
from coi.domain.errors import ScanError

__all__ = ["keyed_text", "verify_keyed"]

_SPACES = re.compile(r"[ \t]+")
_DIN_K = re.compile(r"([A-NP-Z1-9][0-9]{4})([0-9]{2})([0-9]{6})([0-9A-Z*])")
_COI_K = re.compile(r"(CH[A-NP-Z1-9][0-9]{4}[0-9]{2}[0-9A-Z]{6})([0-9A-Z*])")
_KINDS = {"bag": ("CF", "a bag's label (C or F item)"), "document": ("D", "a shipping document")}


def keyed_text(raw: str) -> str:
    """What was keyed, as it is checked: spaces and tabs dropped, upper case."""
    return _SPACES.sub("", raw.strip()).upper()


def verify_keyed(check: str, raw: str, coi: str) -> str:
    """``raw`` keyed by hand for a field checked as ``check``, verified, as a station records it.

    ``coi`` is the product's Chain of Identity text (a label code must be this product's)."""
    text = keyed_text(raw)
    if check == "din":
        return _din(text)
    if check == "coi":
        return _coi(text)
    return _label(check, text, coi)


def _din(text: str) -> str:
    if text.startswith(isbt.DIN_ID):
        din, flags = isbt.parse_din_barcode(text)
        if isbt.din_flag_kind(flags) != "check":
            raise ScanError(
                f"The DIN barcode's flags {flags} carry no check value, so a DIN keyed by hand "
                "from it cannot be verified: key the DIN with the check character printed in "
                "the box beside it."
            )
        return din.text
    m = _DIN_K.fullmatch(text)
    if m is None:
        raise ScanError(
            f"{text!r} is not a DIN with its check character: key the 13 characters and the "
            "check character printed in the box beside them (e.g. A9999 26 000001 8), or scan "
            "the DIN barcode."
        )
    din = isbt.Din(m.group(1), m.group(2), m.group(3))
    if din.check != m.group(4):
        raise ScanError(
            f"The DIN {din.text} fails its check character: {m.group(4)} was keyed, the DIN "
            "gives another. A character was mistyped: key it again from the label."
        )
    return din.text


def _coi(text: str) -> str:
    m = _COI_K.fullmatch(text)
    if m is None:
        raise ScanError(
            f"{text!r} is not a Chain of Identity Identifier with its check character: key "
            "the 15 characters and the check character printed beside them (e.g. "
            "CHA999926000001 K), or scan the label."
        )
    cid = isbt.coi_id_from_text(m.group(1))
    if cid.check != m.group(2):
        raise ScanError(
            f"The Chain of Identity Identifier {cid.text} fails its check character: "
            f"{m.group(2)} was keyed. A character was mistyped: key it again from the label."
        )
    return cid.text


def _label(check: str, text: str, coi: str) -> str:
    kinds, what = _KINDS[check]
    try:
        label = payload.decode(text)
    except ScanError as exc:
        raise ScanError(
            f"Keyed by hand, {what} is its whole coi label code (COI1… with its check "
            f"character). {exc.reason}"
        ) from None
    if label.coi != coi.strip().upper():
        raise ScanError(
            f"The label code keyed is for {label.coi}, not {coi.strip().upper()}: check "
            "that the label belongs to this product."
        )
    if label.item[0] not in kinds:
        raise ScanError(f"The label code keyed is for {label.item_kind} {label.item}, not "
                        f"{what}.")
    return label.item
