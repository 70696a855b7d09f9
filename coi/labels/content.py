"""What goes on one label: the identifiers, the payload to encode and the lines to print.

:class:`LabelContent` is the renderers' only input. It is checked when it is built, so every
renderer can trust it: the CoI identifier is a well-formed ISBT 128 data structure 040 text, the
item id is six upper-case letters or digits, and no printed text holds a control character.
:func:`label_content` builds one from the domain's own encoders, so the printed check character
and the encoded payload cannot drift from what the scanner parser expects.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from coi.domain import isbt
from coi.labels.errors import LabelContentError

_ITEM_RE = re.compile("[0-9A-Z]{6}")
_CHECK_CHARACTERS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"  # MOD 37-2 alphabet
_CONTROL_RE = re.compile("[\x00-\x1f\x7f]")


def _check_text(name: str, text: str) -> None:
    if _CONTROL_RE.search(text):
        raise LabelContentError(f"the {name} text holds a control character: {text!r}")
    if not text.strip():
        raise LabelContentError(f"the {name} text is empty")


@dataclass(frozen=True, slots=True)
class IsbtContent:
    """ISBT 128 material for the label: the DIN as eye-readable text and a Data Matrix message.

    ``din_text`` is printed as it is (e.g. ``A9999 26 000123``) with ``din_check`` (the keyboard
    check character K) beside it in a box. ``message`` is the Data Matrix content, typically a
    compound message (data structure 023); group separators in it are kept byte for byte.
    """

    din_text: str
    din_check: str
    message: str

    def __post_init__(self) -> None:
        _check_text("DIN", self.din_text)
        if len(self.din_check) != 1 or self.din_check not in _CHECK_CHARACTERS:
            raise LabelContentError(f"the DIN check character {self.din_check!r} is not a K")
        if not self.message:
            raise LabelContentError("the ISBT 128 Data Matrix message is empty")
        try:
            self.message.encode("ascii")
        except UnicodeEncodeError as exc:
            raise LabelContentError("the ISBT 128 Data Matrix message must be ASCII") from exc


@dataclass(frozen=True, slots=True)
class LabelContent:
    """Everything one label shows.

    ``coi`` is the 15-character Chain of Identity Identifier text; ``coi_printed`` its printed
    form with the check character K; ``item`` the 6-character item id; ``payload`` the string the
    QR code carries (see :mod:`coi.domain.payload`). ``extra_lines`` are printed in order (product
    name, expiry, ...). ``patient_text`` is printed only when given, and the caller gives it only
    when the site has configured patient text on labels (21 CFR 1271.290 keeps names out of the
    identification code itself, never out of a label the site chose to personalise).
    """

    coi: str
    coi_printed: str
    item: str
    payload: str
    isbt: IsbtContent | None = None
    extra_lines: tuple[str, ...] = field(default=())
    patient_text: str | None = None
    item_note: str | None = None  # printed after the item id, e.g. "BAG 2 OF 3"

    def __post_init__(self) -> None:
        try:
            coi_id = isbt.coi_id_from_text(self.coi)
        except isbt.IsbtError as exc:
            raise LabelContentError(str(exc)) from exc
        if not self.coi_printed.replace(" ", "").startswith(coi_id.text):
            raise LabelContentError(
                f"the printed CoI {self.coi_printed!r} does not show the identifier {self.coi}"
            )
        _check_text("printed CoI", self.coi_printed)
        if not _ITEM_RE.fullmatch(self.item):
            raise LabelContentError(
                f"the item id {self.item!r} must be six upper-case letters or digits"
            )
        if not self.payload or _CONTROL_RE.search(self.payload):
            raise LabelContentError("the QR payload is empty or holds a control character")
        object.__setattr__(self, "extra_lines", tuple(self.extra_lines))
        for line in self.extra_lines:
            _check_text("extra line", line)
        if self.patient_text is not None:
            _check_text("patient", self.patient_text)
        if self.item_note is not None:
            _check_text("item note", self.item_note)


def label_content(
    coi: str,
    item: str,
    *,
    payload: str | None = None,
    din: isbt.Din | None = None,
    product: isbt.ProductCode | None = None,
    extra_lines: Sequence[str] = (),
    patient_text: str | None = None,
    item_note: str | None = None,
) -> LabelContent:
    """Build a :class:`LabelContent` for ``coi`` and ``item`` with the domain's encoders.

    ``payload`` defaults to the unsigned tracker payload :func:`coi.domain.payload.encode`; pass
    a signed one (``payload.sign(...)``) to print that instead. With ``din``, the label carries
    the DIN eye-readable text and a square Data Matrix holding the compound message of the CoI
    identifier, the DIN and (if given) the product code.
    """
    from coi.domain import payload as payload_mod

    try:
        coi_id = isbt.coi_id_from_text(coi)
    except isbt.IsbtError as exc:
        raise LabelContentError(str(exc)) from exc
    isbt_content = None
    if din is not None:
        parts: list[isbt.Structure] = [coi_id, din]
        if product is not None:
            parts.append(product)
        isbt_content = IsbtContent(
            din_text=f"{din.fin} {din.year} {din.sequence}",
            din_check=din.check,
            message=isbt.compound(parts),
        )
    return LabelContent(
        coi=coi_id.text,
        coi_printed=coi_id.printed(),
        item=item,
        payload=payload if payload is not None else payload_mod.encode(coi_id.text, item),
        isbt=isbt_content,
        extra_lines=tuple(extra_lines),
        patient_text=patient_text,
        item_note=item_note,
    )
