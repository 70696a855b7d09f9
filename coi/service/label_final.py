"""Final-product labels: what a 4x2 label on a final product bag prints, and whose name it shows.

A final-product label (``coi label … --final``, ``docs/labels.md`` "Final-product labels") is a
4 x 2 in ISBT 128 label of a final bag (``F`` item) that prints, besides the QR code (coi's
payload, signed or not), the CoI with its K and the DIN with its boxed K and the Data Matrix
(CoI identifier, DIN, product code):

- ``BAG <n> OF <m>  LABEL <k>`` (and ``REPRINT <g>``);
- ``FOR AUTOLOGOUS USE ONLY``;
- the product name and the ISBT 128 product code;
- ``EXP <date>  STORE <temperature>``;
- the patient's name and date of birth, for the person who compares bag and patient.

**Where the patient's name comes from.** Never from the ledger (it holds a keyed commitment
only): from a :class:`PatientSource`, which the service is given; by default
:class:`EnrolmentPatients` reads them from the PHI store (``CoiService.patient_identity``:
sealed under the site's PHI key), as the bedside screen does. Everything printed is ASCII (ZPL
prints ASCII): accents are dropped (``José`` → ``JOSE``); anything else is refused.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from coi.domain import isbt as isbt128
from coi.service.chain import CoiService
from coi.service.errors import ConfigError, Refused

__all__ = [
    "AUTOLOGOUS",
    "EnrolmentPatients",
    "FinalLabel",
    "FinalText",
    "PatientOnLabel",
    "PatientSource",
    "final_lines",
    "final_record",
    "recorded_final",
]

AUTOLOGOUS: Final = "FOR AUTOLOGOUS USE ONLY"
FINAL_MARK: Final = "final"
"""The word in a label's recorded template that says it was a final-product label."""
_RECORD_RE: Final = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}) (S[0-9]{4}1[0-9A-Z][0-9A-Za-z]) ([^|]+)\|(.+)")
NAME_MAX: Final = 40
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PRINTABLE_RE: Final = re.compile(r"[ -~]+")


def ascii_text(text: str, what: str, limit: int) -> str:
    """``text`` as printable upper-case ASCII (accents dropped), at most ``limit`` characters."""
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", " ".join(text.split()))
                    if not unicodedata.combining(ch)).upper()
    if not plain or not _PRINTABLE_RE.fullmatch(plain):
        raise ConfigError(f"the {what} {text[:40]!r} cannot be printed on a label: use letters, "
                          "digits and punctuation a label printer prints (ASCII)")
    return plain[:limit]


def iso_date(text: str, what: str) -> str:
    """A date typed as YYYY-MM-DD, checked; returned as typed."""
    if not _DATE_RE.fullmatch(text.strip()):
        raise ConfigError(f"the {what} {text[:20]!r} must be a date written YYYY-MM-DD")
    try:
        dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"the {what} {text.strip()!r} is not a date of the calendar") from None
    return text.strip()


@dataclass(frozen=True)
class PatientOnLabel:
    """The patient as a final-product label shows them: name and date of birth."""

    name: str
    birth_date: str

    def lines(self) -> tuple[str, str]:
        """The name line (cut to ``NAME_MAX``; the layout cuts it further to fit) and the date
        of birth line."""
        return (ascii_text(self.name, "patient name", NAME_MAX),
                "DOB " + iso_date(self.birth_date, "date of birth"))


class PatientSource(Protocol):
    """Where a final-product label finds the patient (the PHI store implements this)."""

    def label_patient(self, coi: str) -> PatientOnLabel | None:
        """The patient of product ``coi``, or None when none is on file (erased, unknown)."""
        ...


class EnrolmentPatients:
    """The patient's name and date of birth from the PHI store (``patient_identity``: sealed
    under the site's PHI key, never the ledger); None when enrolment gave none. An erased
    patient is refused: a label cannot show identifiers that no longer exist."""

    def __init__(self, svc: CoiService) -> None:
        self.svc = svc

    def label_patient(self, coi: str) -> PatientOnLabel | None:
        try:
            who = self.svc.patient_identity(coi)
        except Refused:
            return None
        if isinstance(who, str):
            raise Refused(f"the patient identifiers of {coi} were erased: a final-product "
                          "label that names the patient cannot be printed")
        return PatientOnLabel(who.name, who.date_of_birth)


@dataclass(frozen=True)
class FinalLabel:
    """What a final-product label needs beyond the ledger: product name, expiry, storage."""

    product_name: str
    expiry: str
    storage: str = "<= -150 C"

    def checked(self) -> FinalLabel:
        storage = ascii_text(self.storage, "storage temperature", 14)
        if "|" in storage:
            raise ConfigError("the storage temperature cannot hold '|' (the ledger's record of "
                              "the label uses it to separate the storage from the product name)")
        return FinalLabel(ascii_text(self.product_name, "product name", 24),
                          iso_date(self.expiry, "expiry date"), storage)


def final_record(final: FinalLabel, code: isbt128.ProductCode) -> str:
    """What the ledger records about a final-product label beyond its layout (after the
    template's words): ``final 2027-05-28 S1234100 <= -150 C|CD19 CAR-T CELLS``: expiry,
    ISBT 128 product code, storage, product name; never the patient (the PHI store has them).
    """
    f = final.checked()
    return (f"{FINAL_MARK} {f.expiry} {code.code5}{code.collection_type}{code.division} "
            f"{f.storage}|{f.product_name}")


def recorded_final(template: str) -> tuple[FinalLabel, str] | None:
    """The final-product details (and the product code text) a recorded template carries, or
    None for a label that was not recorded final (labels issued before coi recorded them)."""
    _base, mark, rest = template.partition(f" {FINAL_MARK} ")
    found = _RECORD_RE.fullmatch(rest) if mark else None
    if found is None:
        return None
    expiry, code, storage, name = found.groups()
    return FinalLabel(name, expiry, storage), code


def final_lines(final: FinalLabel, patients: PatientSource, coi: str, item: str, bags: int,
                code: isbt128.ProductCode | None, label_line: str,
                fit: Callable[[str], str]) -> FinalText:
    """The lines of a final-product label (checked); ``fit`` cuts the name to the line."""
    if not item.startswith("F"):
        raise ConfigError(f"a final-product label goes on a final product bag (F…), not {item}")
    if code is None:
        raise ConfigError("a final-product label prints the ISBT 128 product code: give "
                          "--product-code (or set the site's product_code)")
    f = final.checked()
    patient = patients.label_patient(coi)
    if patient is None:
        raise Refused(f"no patient name and date of birth are on file for {coi}: a "
                      "final-product label cannot be printed without them")
    name, born = patient.lines()
    product = f"{f.product_name}  {code.code5} {code.collection_type} {code.division}"
    return FinalText(
        item_note=f"BAG {int(item[1:])} OF {bags}",
        extra=(AUTOLOGOUS, product, f"EXP {f.expiry}  STORE {f.storage}", fit(name)),
        patient=f"{born}  {label_line}")


@dataclass(frozen=True)
class FinalText:
    """Where a final-product label's lines go: after the item id, the extra lines, the last."""

    item_note: str
    extra: tuple[str, ...]
    patient: str
