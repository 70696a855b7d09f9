"""Label identifiers and codes, and where a label's facts are found in the ledger.

Owns what names a physical label (``docs/labels.md``, "Label control"): label ids
``L-<CoI>-<item>-<n>`` (``n`` counting the product's labels, never reused), label codes (the
6-character item field of coi's payload: the item's kind letter, a two-digit print generation,
the item's number in three digits), shipping documents (``D`` items: labelled, but no item of
the product), ISBT 128 product codes as typed, and the lookups the label
steps and scan checks share: a product, one of its labels, an item's labels in issue order, the
data of a recorded step (its signatures checked), the product's DIN. ``labels`` re-exports the
public names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from coi.domain import isbt as isbt128
from coi.domain.errors import ScanError
from coi.domain.state import Label, ProductState
from coi.ledger.entry import check_entry
from coi.ledger.errors import VerificationError
from coi.service.chain import CoiService
from coi.service.errors import ConfigError, Refused

MAX_GENERATION: Final = 99
MAX_ITEM_NUMBER: Final = 999
_LABEL_ID_RE: Final = re.compile(
    r"L-(?P<coi>[0-9A-Z]{15})-(?P<item>[0-9A-Z]{6})-(?P<n>[1-9][0-9]*)")
_CODE_RE: Final = re.compile(r"(?P<kind>[A-Z])(?P<gen>[0-9]{2})(?P<num>[0-9]{3})")
_ITEM_RE: Final = re.compile(r"(?P<kind>[A-Z])(?P<num>[0-9]{5})")
DOCUMENT_KIND: Final = "D"


def label_id(coi: str, item: str, n: int) -> str:
    """The id of a product's ``n``-th label (1-based): ``L-<CoI>-<item>-<n>``."""
    return f"L-{coi}-{item}-{n}"


def next_number(product: ProductState) -> int:
    """One more than the number of labels, or than any ``n`` already used: never reused."""
    used = [len(product.labels)]
    for existing in product.labels:
        m = _LABEL_ID_RE.fullmatch(existing)
        if m is not None and len(m["n"]) <= 9:
            used.append(int(m["n"]))
    return max(used) + 1


def is_document(item: str) -> bool:
    """Whether ``item`` names a shipping document (``D`` and five digits): paperwork that
    travels with a shipment, labelled like a bag but not an item of the product."""
    m = _ITEM_RE.fullmatch(item)
    return m is not None and m["kind"] == DOCUMENT_KIND


def labelled_item(label: Label) -> str | None:
    """What ``label`` is on: the item its issue named or, for a shipping document (which is no
    item of the product, so its issue names none), the document its label id carries."""
    if label.item is not None:
        return label.item
    m = _LABEL_ID_RE.fullmatch(label.id)
    return m["item"] if m is not None and is_document(m["item"]) else None


def next_document(product: ProductState) -> str:
    """The first shipping document of the product that has never been labelled (``D00001``,
    then ``D00002`` for the next shipment's paperwork, ...)."""
    used = {labelled_item(lab) for lab in product.labels.values()}
    number = next(n for n in range(1, MAX_ITEM_NUMBER + 2) if f"D{n:05d}" not in used)
    return f"{DOCUMENT_KIND}{number:05d}"


@dataclass(frozen=True, slots=True)
class LabelCode:
    """A label code read back: the ledger's item id and the label's print generation."""

    item: str
    generation: int


def label_code(item: str, generation: int) -> str:
    """The 6-character item field printed in a label's payload (see the module docstring)."""
    m = _ITEM_RE.fullmatch(item)
    if m is None:
        raise Refused(f"item {item!r} is not an item id (a letter and five digits)")
    number = int(m["num"])
    if not 1 <= number <= MAX_ITEM_NUMBER:
        raise Refused(f"item {item} cannot be labelled: coi labels items numbered 1 to "
                      f"{MAX_ITEM_NUMBER}")
    if not 0 <= generation <= MAX_GENERATION:
        raise Refused(f"item {item} already had {generation} labels; coi prints at most "
                      f"{MAX_GENERATION + 1} per item. Ask QA to review the labelling.")
    return f"{m['kind']}{generation:02d}{number:03d}"


def parse_label_code(code: str) -> LabelCode | None:
    """The item and print generation a payload's item field names, or None if it names none."""
    m = _CODE_RE.fullmatch(code.upper())
    if m is None or m["num"] == "000":
        return None
    return LabelCode(f"{m['kind']}{int(m['num']):05d}", int(m["gen"]))


def parse_product_code(text: str) -> isbt128.ProductCode:
    """An autologous cellular-therapy product code from ``S1234100`` or ``=<S1234100``."""
    raw = text.strip().upper()
    content = raw if raw.startswith(isbt128.PRODUCT_CODE_ID) else isbt128.PRODUCT_CODE_ID + raw
    try:
        code = isbt128.parse_product_code(content)
    except ScanError as e:
        raise ConfigError(f"product code {text.strip()[:40]!r}: {e.reason}") from None
    if not code.is_cellular_therapy or not code.is_autologous:
        raise ConfigError(f"product code {code.barcode()} is not an autologous cellular therapy "
                          "code (it must start with S and have collection type 1)")
    return code


def labels_of(product: ProductState, item: str) -> list[Label]:
    """The item's labels in the order they were issued (the order of print generations)."""
    found = [lab for lab in product.labels.values() if labelled_item(lab) == item]
    return sorted(found, key=issue_order)


def issue_order(label: Label) -> tuple[int, int]:
    """Where ``label`` comes in the order labels were issued: its first entry, then its number
    ``n`` (labels a hand-off brought all start at the same ``handoff.received`` entry, and their
    ids sort as text there: ``-10`` before ``-9``)."""
    m = _LABEL_ID_RE.fullmatch(label.id)
    n = int(m["n"]) if m is not None and len(m["n"]) <= 9 else 0
    return (label.events[0] if label.events else -1, n)


# ------------------------------------------------------------------------------ lookups
def product_of(svc: CoiService, coi: str) -> ProductState:
    coi = coi.strip().upper()
    product = svc.chain().product(coi)
    if product is None:
        raise Refused(f"no product {coi[:40]} in this ledger")
    return product


def label_in(product: ProductState, label: str) -> Label:
    found = product.labels.get(label.strip().upper())
    if found is None:
        known = ", ".join(sorted(product.labels)) or "none"
        raise Refused(f"there is no label {label.strip()[:80]} on {product.coi} (its labels: "
                      f"{known})")
    return found


def step_data(svc: CoiService, index: int) -> dict[str, Any]:
    """The data of one process entry, its signatures checked (we print from it)."""
    row = svc.ledger.store.row(index)
    if row is None:
        raise VerificationError("the entry is missing", index=index)
    return dict(check_entry(row, svc.ledger.origin()).statement.data)


def product_din(svc: CoiService, product: ProductState) -> isbt128.Din:
    """The DIN of the product's apheresis collection (ISBT 128 labels carry it)."""
    indices = product.steps.get("apheresis_collection") or []
    if not indices:
        raise Refused(f"{product.coi} has no apheresis collection yet, so it has no DIN for an "
                      "ISBT 128 label")
    din = str(step_data(svc, indices[0]).get("din", ""))
    try:
        return isbt128.Din(din[:5], din[5:7], din[7:13])
    except ScanError as e:
        raise Refused(f"the collection's DIN {din[:20]!r} cannot be printed: {e.reason}") from None
