"""Label control (FACT-JACIE): issuing, printing, applying, voiding and reprinting labels.

This module owns the life of a physical label over the ledger. Every move is a process step
recorded through :class:`~coi.service.chain.CoiService` (``label_issue``, ``label_print``,
``label_apply``, ``label_void``, ``label_reprint``), so the process rules (roles, states, the
release gate that refuses release while a label is printed but neither applied nor voided) stay
in one place. On top of them this module adds what the process cannot know:

- **label ids**: ``L-<CoI>-<item>-<n>``, ``n`` counting the product's labels (never reused);
- **which physical label a scan is**: coi's payload carries the CoI and a 6-character item field.
  The item field of a *label* is its **label code**: the item's kind letter, a two-digit *print
  generation* (how many labels were issued for that item before this one) and the item's number
  in three digits. The first label of ``F00001`` has the code ``F00001`` (the item id itself);
  its reprint has ``F01001``, the next ``F02001``. A scan therefore names exactly one label, and a
  voided or superseded label is refused when scanned (``docs/labels.md``, "Label control");
- **scan checks** (:func:`check_scan`): a scan is parsed, compared with the product and label
  expected, and refused (the refusal recorded as a signed site entry) when it names another
  product or bag, a voided or superseded label, or a label whose printing was never recorded;
- **reconciliation** (:func:`reconciliation`): every label and what became of it.

Rendering failures leave nothing half-written: the file is written atomically, and a label whose
file could not be written is voided with the grounds ``render failed: …``.

This module records the steps (issue and print, void, reprint, apply), checks scans and
reconciles; label ids, codes and the lookups they share are ``label_codes``'s, the label file
(checks before recording, layout, writing, sending to a printer) ``label_files``'s, signed
labels (who signs, how a scan is verified) ``label_signing``'s and final-product labels (and
where the patient's name comes from) ``label_final``'s. Their public names are importable from
here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coi.domain import isbt as isbt128
from coi.domain.rules.identity import item_closed
from coi.domain.scan import CoiIdScan, CompoundScan, DinScan, LabelScan, Scan
from coi.domain.state import Label, ProductState
from coi.labels.printer import Queue, Tcp, printer_id
from coi.ledger.errors import VerificationError
from coi.service.chain import CoiService
from coi.service.errors import ConfigError, Refused
from coi.service.label_codes import (
    MAX_GENERATION,
    MAX_ITEM_NUMBER,
    LabelCode,
    is_document,
    issue_order,
    label_code,
    label_id,
    label_in,
    labelled_item,
    labels_of,
    next_document,
    next_number,
    parse_label_code,
    parse_product_code,
    product_din,
    product_of,
    step_data,
)
from coi.service.label_files import (
    DPIS,
    FORMATS,
    SIZES,
    check_output,
    destination,
    grounds_text,
    plan_label,
    send_label,
    template_text,
    void_quietly,
    write_label,
)
from coi.service.label_final import FinalLabel, PatientOnLabel, PatientSource, recorded_final
from coi.service.label_signing import issued, signature_problem
from coi.service.ledger import Unlocked
from coi.service.scans import ScanRefused, read_scan

__all__ = [
    "DPIS",
    "FORMATS",
    "FinalLabel",
    "PatientOnLabel",
    "PatientSource",
    "MAX_GENERATION",
    "MAX_ITEM_NUMBER",
    "SIZES",
    "LabelCode",
    "apply",
    "check_scan",
    "issue_and_print",
    "label_code",
    "label_id",
    "label_of",
    "parse_label_code",
    "parse_product_code",
    "destination",
    "reconciliation",
    "reprint",
    "station_printer",
    "signature_verdict",
    "trust_problem",
    "unlabelled_items",
    "void",
]

# ------------------------------------------------------------------------------ the steps
def issue_and_print(svc: CoiService, actor: Unlocked, coi: str, item: str, fmt: str,
                    size: str = "2x1", dpi: int | None = None, isbt: bool = False,
                    out_path: Path | None = Path("label.png"), *,
                    product_code: isbt128.ProductCode | None = None,
                    printer: str | None = None, signed: bool = False,
                    final: FinalLabel | None = None, patients: PatientSource | None = None,
                    send_to: Tcp | Queue | None = None) -> tuple[str, Path | None]:
    """Issue a new label for ``item``, write its file, record it printed; return (id, path).

    Checked before anything is recorded: the arguments, the output path (never overwritten),
    the item (it must belong to the product and have no printed or applied label: void or
    reprint that one), and the layout. Then ``label_issue`` is recorded, the file written
    atomically, and ``label_print`` recorded. If the file cannot be written the label is voided
    (grounds ``render failed: …``); if the print cannot be recorded the file is removed and the
    label voided. With ``signed`` the label carries the ``COS1`` payload signed with the
    actor's registered key (4x2 labels only).
    """
    out_path = Path(out_path) if out_path is not None else None
    dpi = check_output(fmt, size, dpi, out_path, signed=signed, send_to=send_to)
    product = product_of(svc, coi)
    item = item.strip().upper()
    document = is_document(item)  # the paperwork of a shipment: labelled, no item of it
    if item not in product.items and not document:
        known = ", ".join(sorted(product.items)) or "none yet"
        raise Refused(f"item {item[:20]} does not belong to {product.coi} (its items: {known}; "
                      "a shipping document is D00001 to D00999)")
    earlier = labels_of(product, item)
    live = [lab for lab in earlier if lab.status != "voided"]
    if live:
        raise Refused(f"item {item} already has label {live[0].id} ({live[0].status}); void it "
                      "or reprint it instead of issuing another")
    planned = plan_label(svc, product, item, n=next_number(product), generation=len(earlier),
                    fmt=fmt, size=size, dpi=dpi, with_isbt=isbt, product_code=product_code,
                    signer=actor if signed else None, final=final, patients=patients)
    svc.record("label_issue", product.coi, actor=actor, item=None if document else item,
               fields={"label": planned.label,
                       "template": template_text(size, fmt, dpi, isbt, signed, final,
                                                 product_code)})
    if out_path is not None:
        write_label(svc, actor, product.coi, planned, fmt, size, out_path)
    if send_to is not None:
        send_label(svc, actor, product.coi, planned, fmt, size, send_to, out_path)
        printer = printer_id(send_to)
    fields = {"label": planned.label}
    if printer:
        fields["printer"] = printer
    try:
        svc.record("label_print", product.coi, actor=actor, fields=fields)
    except BaseException:
        if out_path is not None:
            out_path.unlink(missing_ok=True)
        void_quietly(svc, actor, product.coi, planned.label,
                      "print not recorded; the file was removed")
        raise
    return planned.label, out_path


def station_printer(text: str) -> tuple[str | None, str | None]:
    """A station's printer setting as (``--send``, ``--queue``): ``cups:NAME`` is a CUPS queue,
    anything else ``HOST[:PORT]`` (checked by :func:`destination`)."""
    return (None, text[5:]) if text.startswith("cups:") else (text, None)


def unlabelled_items(svc: CoiService, coi: str, *, document: bool = False) -> list[str]:
    """The product's items that may get a label now: no live label, and not gone; with
    ``document``, then the next shipping document never labelled (``next_document``)."""
    product = product_of(svc, coi)
    live = {lab.item for lab in product.labels.values() if lab.status != "voided"}
    items = sorted(i.id for i in product.items.values()
                   if i.id not in live and not item_closed(i.status))
    return items + [next_document(product)] if document else items


def void(svc: CoiService, actor: Unlocked, coi: str, label: str, grounds: str) -> int:
    """Void a label (issued, printed or applied) with its grounds; return the entry index."""
    product = product_of(svc, coi)
    found = label_in(product, label)
    rec = svc.record("label_void", product.coi, actor=actor,
                     fields={"label": found.id, "grounds": grounds_text(grounds)})
    return rec.entry.index


def reprint(svc: CoiService, actor: Unlocked, coi: str, label: str, grounds: str, fmt: str,
            size: str | None = None, dpi: int | None = None, isbt: bool = False,
            out_path: Path | None = Path("label.png"), *,
            product_code: isbt128.ProductCode | None = None,
            signed: bool = False, final: FinalLabel | None = None,
            patients: PatientSource | None = None,
            send_to: Tcp | Queue | None = None) -> tuple[str, Path | None]:
    """Void ``label`` (unless it already is), print its replacement; return (new id, path).

    The replacement gets a new id and the next print generation, so the old label's code is
    refused from now on. Everything is checked before the old label is voided. A reprint is
    recorded printed, so with ``send_to`` the printer must take it first: if it does not,
    nothing is recorded after the void and the old label stays voided (reprint it again).
    A final-product label whose entry recorded its details (``final`` in the template) is
    reprinted final with them (4x2, ISBT 128; ``size`` None: 4x2, else 2x1), the patient read
    from ``patients`` again (refused, nothing recorded, when they were erased).
    """
    out_path = Path(out_path) if out_path is not None else None
    product = product_of(svc, coi)
    old = label_in(product, label)
    item = labelled_item(old)
    if item is None:
        raise Refused(f"label {old.id} names no item, so coi cannot reprint it")
    if final is None and (was := recorded_final(issued(svc, old).template)) is not None:
        final, recorded_code = was  # a final label is reprinted final, as recorded
        if product_code is not None and product_code != parse_product_code(recorded_code):
            raise ConfigError(f"label {old.id} is a final-product label with product code "
                              f"{recorded_code}: its reprint carries the same (leave out "
                              "--product-code and --isbt)")
        product_code, isbt, size = parse_product_code(recorded_code), True, size or "4x2"
    size = size or "2x1"
    dpi = check_output(fmt, size, dpi, out_path, signed=signed, send_to=send_to)
    grounds = grounds_text(grounds)
    later = [lab for lab in labels_of(product, item) if lab.replaces == old.id]
    if later:
        raise Refused(f"label {old.id} was already reprinted as {later[0].id}")
    planned = plan_label(svc, product, item, n=next_number(product),
                    generation=len(labels_of(product, item)), fmt=fmt, size=size, dpi=dpi,
                    with_isbt=isbt, product_code=product_code, signer=actor if signed else None,
                    final=final, patients=patients)
    fields = {"label": planned.label, "replaces": old.id}
    reprint_step = svc.process().step("label_reprint")
    if reprint_step is not None and "template" in reprint_step.fields:
        fields["template"] = template_text(size, fmt, dpi, isbt, signed, final, product_code)
    elif signed or final is not None:
        raise ConfigError("this ledger's process records no template on a reprint, so a "
                          "signed or final reprint could not be told from a plain one; void "
                          "the label and issue a new one (coi label)")
    if old.status != "voided":
        svc.record("label_void", product.coi, actor=actor,
                   fields={"label": old.id, "grounds": grounds})
    if send_to is not None:
        send_label(svc, actor, product.coi, planned, fmt, size, send_to, None,
                   reprint_of=old.id)
        if reprint_step is not None and "printer" in reprint_step.fields:
            fields["printer"] = printer_id(send_to)
    svc.record("label_reprint", product.coi, actor=actor, fields=fields)
    if out_path is not None:
        write_label(svc, actor, product.coi, planned, fmt, size, out_path)
    return planned.label, out_path


def apply(svc: CoiService, actor: Unlocked, coi: str, label: str, scanned: str, *,
          station: str = "label-apply") -> int:
    """Record ``label`` applied, confirmed by a scan of it; return the entry index.

    The scan must be this label's QR code: right product, right item, right print generation.
    A wrong scan is refused and the refusal recorded.
    """
    product = product_of(svc, coi)
    found = label_in(product, label)
    scan = check_scan(svc, scanned, expect_coi=product.coi, expect_item=labelled_item(found),
                      station=station, by=actor.user)
    reason = None
    if not isinstance(scan, LabelScan):
        reason = ("applying a label is confirmed by scanning its coi QR code; this scan is an "
                  f"ISBT 128 {scan.kind.replace('_', ' ')}")
    else:
        scanned_id = label_of(svc, scan)
        if scanned_id != found.id:
            reason = f"the label scanned is {scanned_id}, not {found.id}"
    if reason is not None:
        idx = svc.record_scan_refusal(station=station, by=actor.user, raw=scanned,
                                      reason=reason, expected=product.coi)
        raise Refused(reason, recorded_index=idx)
    rec = svc.record("label_apply", product.coi, actor=actor, fields={"label": found.id})
    return rec.entry.index


# ------------------------------------------------------------------------------ scans
def label_of(svc: CoiService, scan: LabelScan) -> str:
    """The id of the label a coi label scan is (no checks of its status; see check_scan)."""
    found, why = _resolve(product_of(svc, scan.label.coi), scan.label.item)
    if found is None:
        raise Refused(why)
    return found.id


def trust_problem(svc: CoiService, scan: Scan) -> str | None:
    """Why a scan of a coi label cannot be trusted, or None (scan stations call this).

    A signed (``COS1``) scan must name a label this ledger issued and carry a good signature by
    the key that issued it (:func:`coi.service.label_signing.signature_problem`); a plain scan
    of a label issued signed is refused; so is a scan of a voided label (signed or not: it was
    removed from the bag or superseded by a reprint). Plain scans of items, and ISBT 128 scans,
    are left to the step's own checks. Records nothing: the caller records the refusal.
    """
    if not isinstance(scan, LabelScan):
        return None
    product = svc.chain().product(scan.label.coi)
    if product is None:
        return (f"this signed label names {scan.label.coi}, which is not in this ledger"
                if scan.label.signed else None)
    found, why = _resolve(product, scan.label.item)
    if found is None:
        return why if scan.label.signed else None
    return signature_problem(svc, found.id, found, scan.label) or _voided(product, found)


def signature_verdict(svc: CoiService, scan: LabelScan) -> str:
    """What was verified of an accepted signed scan: whose key, and at which organisation when
    the label came by hand-off (``coi labels check`` prints it)."""
    found, _ = _resolve(product_of(svc, scan.label.coi), scan.label.item)
    facts = issued(svc, found) if found is not None else None
    if facts is None or facts.partner is None:
        return "verified with the key that issued the label"
    return (f"verified with the key of {facts.user} at partner {facts.partner}, who issued the "
            "label (as recorded when the hand-off was received)")


def _resolve(product: ProductState, code: str) -> tuple[Label | None, str]:
    parsed = parse_label_code(code)
    if parsed is None:
        return None, f"the label code {code} names no item of {product.coi}"
    labels = labels_of(product, parsed.item)
    if parsed.generation >= len(labels):
        return None, (f"no label with code {code} was issued for {product.coi} {parsed.item}: "
                      "it was not printed by this site's coi. Do not use it; quarantine the "
                      "item and report the label.")
    return labels[parsed.generation], ""


def _label_problem(svc: CoiService, product: ProductState, scan: LabelScan,
                   expect_item: str | None) -> str | None:
    parsed = parse_label_code(scan.label.item)
    item = parsed.item if parsed else scan.label.item
    if expect_item is not None and item != expect_item:
        return f"this is the label of {item}, not of {expect_item}"
    found, why = _resolve(product, scan.label.item)
    if found is None:
        return why
    forged = signature_problem(svc, found.id, found, scan.label) or _voided(product, found)
    if forged is not None:
        return forged
    if found.status == "issued":
        return (f"label {found.id} was issued but its printing was never recorded; void it and "
                "reprint it")
    return None


def _voided(product: ProductState, found: Label) -> str | None:
    """Why a scan of ``found`` is refused because the label was voided, or None: a voided label
    is never scanned as the item's identity again (it is removed and destroyed)."""
    if found.status != "voided":
        return None
    newer = [lab.id for lab in labels_of(product, labelled_item(found) or "")
             if lab.status != "voided"]
    if newer:
        return (f"label {found.id} was voided and superseded by {newer[-1]}; remove and "
                "destroy the old label")
    return f"label {found.id} was voided; remove and destroy it, and reprint it"


def _isbt_problem(svc: CoiService, product: ProductState, scan: Scan,
                  expect_item: str | None) -> str | None:
    if isinstance(scan, CompoundScan):
        structures: Sequence[isbt128.Structure] = scan.structures
    elif isinstance(scan, DinScan):
        structures = (scan.din,)
    elif isinstance(scan, CoiIdScan):
        structures = (scan.coi_id,)
    else:
        structures = (scan.product_code,) if not isinstance(scan, LabelScan) else ()
    identifying = [s for s in structures if isinstance(s, isbt128.CoiId | isbt128.Din)]
    if not identifying:
        return ("an ISBT 128 product code does not say which product this is; scan the coi "
                "label or the DIN")
    for s in identifying:
        if isinstance(s, isbt128.CoiId) and s.text != product.coi:
            return f"this is chain of identity {s.text}, not {product.coi}"
        if isinstance(s, isbt128.Din):
            try:
                din = product_din(svc, product)
            except Refused as e:
                return e.reason
            if s.text != din.text:
                return f"this is DIN {s.text}, not {product.coi}'s DIN {din.text}"
    if expect_item is not None:
        return (f"an ISBT 128 code names the product, not the bag; scan the coi label of "
                f"{expect_item}")
    return None


def check_scan(svc: CoiService, raw: str, expect_coi: str | None = None,
               expect_item: str | None = None, *, station: str = "scan", by: str = "-") -> Scan:
    """Parse a scan and check it against the ledger; return it or raise ``Refused``.

    Refused, and the refusal recorded (``system.scan_refused``): a scan that does not parse; a
    coi label of another product or item than expected, of a voided or superseded label, or of a
    label never printed; an ISBT 128 code whose CoI identifier or DIN is not the expected
    product's (a DIN is checked against the product's apheresis collection), or that cannot
    name the bag when a bag is expected. ISBT 128 scans need ``expect_coi``: a DIN alone does
    not say which product it is.
    """
    expect = expect_coi.strip().upper() if expect_coi else None
    want_item = expect_item.strip().upper() if expect_item else None
    reason: str | None
    scan: Scan | None = None
    try:
        scan = read_scan(raw)
    except ScanRefused as e:
        reason = e.reason
    else:
        reason = _scan_problem(svc, scan, expect, want_item)
    if reason is not None or scan is None:
        reason = reason or "the scan could not be read"
        idx = svc.record_scan_refusal(station=station, by=by, raw=raw if isinstance(raw, str)
                                      else repr(raw), reason=reason, expected=expect)
        raise Refused(reason, recorded_index=idx)
    return scan


def _scan_problem(svc: CoiService, scan: Scan, expect: str | None,
                  want_item: str | None) -> str | None:
    if isinstance(scan, LabelScan):
        coi = scan.label.coi
        if expect is not None and coi != expect:
            return f"this label is for {coi}, not {expect}: wrong product"
        product = svc.chain().product(coi)
        if product is None:
            return f"this label names {coi}, which is not in this ledger"
        return _label_problem(svc, product, scan, want_item)
    if expect is None:
        return ("an ISBT 128 code is checked against an expected product; scan the coi label, "
                "or say which product you expect")
    product = svc.chain().product(expect)
    if product is None:
        return f"no product {expect} in this ledger"
    return _isbt_problem(svc, product, scan, want_item)


# ------------------------------------------------------------------------------ reconciliation
def reconciliation(svc: CoiService, coi: str) -> list[dict[str, Any]]:
    """Every label of the product and what became of it, in the order they were issued.

    ``outcome`` is ``applied``, ``voided``, ``outstanding`` (printed, neither applied nor
    voided: it blocks release) or ``not printed`` (issued only). ``printed`` says whether a
    physical label was ever made; ``replaced_by`` names its reprint.
    """
    product = product_of(svc, coi)
    steps = product.entry_steps
    by_replaced = {lab.replaces: lab.id for lab in product.labels.values() if lab.replaces}
    ordered = sorted(product.labels.values(), key=issue_order)
    out: list[dict[str, Any]] = []
    generation: dict[str | None, int] = {}
    for lab in ordered:
        item = labelled_item(lab)
        gen = generation.get(item, 0)
        generation[item] = gen + 1
        printed = (lab.replaces is not None or lab.status in ("printed", "applied")  # e.g. at
                   or any(steps.get(i) == "label_print" for i in lab.events))  # a partner
        outcome = {"applied": "applied", "voided": "voided", "printed": "outstanding"}.get(
            lab.status, "not printed")
        voids = [i for i in lab.events if steps.get(i) == "label_void"]
        grounds = None
        if voids:
            try:
                grounds = str(step_data(svc, voids[-1]).get("grounds", ""))
            except VerificationError:
                grounds = "(entry failed verification)"
        code = None
        if item is not None:
            try:
                code = label_code(item, gen)
            except Refused:
                code = None
        out.append({"label": lab.id, "item": item, "code": code, "generation": gen,
                    "status": lab.status, "printed": printed, "outcome": outcome,
                    "replaces": lab.replaces, "replaced_by": by_replaced.get(lab.id),
                    "voided_index": voids[-1] if voids else None, "grounds": grounds,
                    "events": list(lab.events)})
    return out


def outstanding(svc: CoiService, coi: str) -> list[str]:
    """Ids of labels printed but neither applied nor voided (the ones that block release)."""
    return [r["label"] for r in reconciliation(svc, coi) if r["outcome"] == "outstanding"]
