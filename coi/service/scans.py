"""Scans and identifiers as the front ends meet them: the one place a scan is read.

:func:`read_scan` takes the text exactly as a barcode scanner (a keyboard wedge, with its AIM
prefix and Enter) or a person delivered it and returns the parsed scan, or raises
:class:`ScanRefused` whose ``reason`` says what was wrong and what to do. The CLI, the TUI and
the service's own scan checks (labels, export scopes) all read scans through it; the parsing
rules themselves live in :mod:`coi.domain.scan` (``docs/labels.md``).

Reading a scan records nothing: a caller that refuses a scan at a station records the refusal
(``CoiService.record_scan_refusal``) with the reason given here.

The scan and identifier types the front ends look at are re-exported from here, so that a front
end never imports the domain.
"""

from __future__ import annotations

from coi.domain.errors import ScanError
from coi.domain.isbt import ProductCode, coi_id_from_text
from coi.domain.payload import encode
from coi.domain.scan import (
    MAX_SCAN_LENGTH,
    CoiIdScan,
    CompoundScan,
    DinScan,
    LabelScan,
    ProductCodeScan,
    Scan,
    parse_scan,
)
from coi.service.errors import Refused

__all__ = [
    "MAX_SCAN_LENGTH",
    "CoiIdScan",
    "CompoundScan",
    "DinScan",
    "LabelScan",
    "ProductCode",
    "ProductCodeScan",
    "Scan",
    "ScanRefused",
    "label_text",
    "printed_coi",
    "read_scan",
]


class ScanRefused(Refused):
    """A scan coi cannot use. ``reason`` says what was wrong and what to do, for the person at
    the scan station; nothing has been recorded (``recorded_index`` is None)."""


def read_scan(raw: str) -> Scan:
    """What a scanner or a person typed, parsed; :class:`ScanRefused` for anything else.

    Total: whatever ``raw`` holds (any length, any characters, not even text), the result is a
    :data:`Scan` or a ``ScanRefused`` with the parser's reason, never another exception.
    """
    try:
        return parse_scan(raw)
    except ScanError as e:
        raise ScanRefused(e.reason) from None


def printed_coi(text: str) -> str:
    """A Chain of Identity Identifier as printed for people (with its check character).

    ``text`` is the identifier's text (``CH`` + FIN + year + sequence); a malformed one raises
    :class:`ScanRefused` saying what is wrong with it.
    """
    try:
        return coi_id_from_text(text).printed()
    except ScanError as e:
        raise ScanRefused(e.reason) from None


def label_text(coi: str, item: str) -> str:
    """The text coi's own (plain) label for ``item`` of product ``coi`` carries: what a scanner
    types when it reads that label. A malformed identifier raises :class:`ScanRefused`."""
    try:
        return encode(coi, item)
    except ScanError as e:
        raise ScanRefused(e.reason) from None
