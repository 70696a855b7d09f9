"""Label files: the output checked before anything is recorded, the layout, the file written.

Owns turning a label into a file (``labels`` records the steps): the format, size, dpi and
output path checked before anything is recorded (a label file is never overwritten), the new
label's content and layout planned and checked, the grounds of a void, and the file written
atomically; a label whose file could not be written is voided with the grounds
``render failed: …``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from coi.domain import isbt as isbt128
from coi.domain import payload as payload_mod
from coi.domain.errors import ScanError
from coi.domain.state import ProductState
from coi.labels.content import LabelContent, label_content
from coi.labels.errors import LabelError
from coi.labels.layout import fit_text
from coi.labels.printer import PrinterError, Queue, Tcp, parse_queue, parse_tcp, send
from coi.labels.render import PDF_DPI, plan, render_pdf_sheet, render_png, render_svg, render_zpl
from coi.labels.template import load_template
from coi.service.chain import CoiService
from coi.service.errors import ConfigError, Refused
from coi.service.files import write_atomically
from coi.service.label_codes import label_code, label_id, product_din
from coi.service.label_final import (
    EnrolmentPatients,
    FinalLabel,
    PatientSource,
    final_lines,
    final_record,
)
from coi.service.label_signing import SIGNED_MARK, sign_label
from coi.service.ledger import Unlocked

FORMATS: Final = ("png", "svg", "pdf", "zpl")
SIZES: Final = ("2x1", "4x2")
DPIS: Final = (203, 300)
SIGNED_SIZE: Final = "4x2"
GROUNDS_MAX: Final = 500


def check_output(fmt: str, size: str, dpi: int | None, out_path: Path | None, *,
                 signed: bool = False, send_to: Tcp | Queue | None = None) -> int:
    """Check the arguments before anything is recorded; return the dpi to lay out at."""
    if out_path is None and send_to is None:
        raise ConfigError("say where the label goes: a file (-o) or a printer (--send or "
                          "--queue)")
    if send_to is not None and fmt != "zpl":
        raise ConfigError(f"a label printer takes ZPL: use --format zpl to send to {send_to}")
    if signed and size != SIGNED_SIZE:
        raise ConfigError(f"a signed label's code (137 characters) fits only the {SIGNED_SIZE} "
                          f"label: use --size {SIGNED_SIZE}")
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt[:20]!r} is not one of {', '.join(FORMATS)}")
    if size not in SIZES:
        raise ConfigError(f"size {size[:20]!r} is not one of {', '.join(SIZES)}")
    if fmt == "pdf":
        if dpi not in (None, PDF_DPI):
            raise ConfigError(f"PDF sheets are laid out at {PDF_DPI} dpi; leave out --dpi")
        dpi = PDF_DPI
    elif dpi is None:
        dpi = 203 if fmt == "zpl" else 300
    if dpi not in DPIS:
        raise ConfigError(f"dpi {dpi} is not one of {', '.join(map(str, DPIS))}")
    if out_path is None:
        return dpi
    out_path = Path(out_path)
    parent = out_path.parent if str(out_path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"folder {parent} does not exist")
    try:
        out_path.lstat()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise ConfigError(f"cannot write {out_path}: {e.strerror}") from None
    else:
        raise ConfigError(f"{out_path} exists; a label file is never overwritten (choose "
                          "another name)")
    return dpi


def render(content: LabelContent, fmt: str, size: str, dpi: int) -> bytes:
    if fmt == "png":
        return render_png(content, size, dpi)
    if fmt == "svg":
        return render_svg(content, size, dpi).encode("utf-8")
    if fmt == "pdf":
        return render_pdf_sheet([content], size)
    return render_zpl(content, size, dpi).encode("ascii")


TEMPLATE_MAX: Final = 80
"""The longest template the process records (``label_issue.template``, ``max_length``)."""


def template_text(size: str, fmt: str, dpi: int, with_isbt: bool, signed: bool,
                  final: FinalLabel | None = None,
                  product_code: isbt128.ProductCode | None = None) -> str:
    """What the ledger records as a label's template: ``4x2 png 300dpi isbt signed``; for a
    final-product label followed by ``final`` and its details (``label_final.final_record``).
    Too long for the record (a long product name and storage text together): refused."""
    text = (f"{size} {fmt} {dpi}dpi" + (" isbt" if with_isbt else "")
            + (f" {SIGNED_MARK}" if signed else ""))
    if final is None or product_code is None:
        return text
    text += " " + final_record(final, product_code)
    if len(text) > TEMPLATE_MAX:
        spare = TEMPLATE_MAX - len(text) + len(final.checked().product_name)
        raise ConfigError(f"the ledger records a final-product label's product name and storage "
                          f"with its template ({TEMPLATE_MAX} characters at most): shorten the "
                          f"product name to {max(spare, 0)} characters or the storage text")
    return text


@dataclass(frozen=True)
class Planned:
    label: str
    item: str
    content: LabelContent
    dpi: int


def plan_label(svc: CoiService, product: ProductState, item: str, *, n: int, generation: int,
          fmt: str, size: str, dpi: int, with_isbt: bool,
          product_code: isbt128.ProductCode | None, signer: Unlocked | None = None,
          final: FinalLabel | None = None, patients: PatientSource | None = None) -> Planned:
    """Everything about the new label, checked (layout included) before it is recorded.

    With ``signer``, the label carries the signed payload (``COS1``) signed with their key;
    with ``final``, it is a final-product label (``label_final``), the patient's name and date
    of birth from ``patients``.
    """
    code = label_code(item, generation)
    new_id = label_id(product.coi, item, n)
    din = product_din(svc, product) if with_isbt else None
    if product_code is not None and din is None:
        raise ConfigError("a product code is printed only on ISBT 128 labels (add --isbt)")
    extra = [f"LABEL {n}" + (f" REPRINT {generation}" if generation else "")]
    patient_line = note = None
    if final is not None:
        if size != SIGNED_SIZE or not with_isbt:
            raise ConfigError("a final-product label is a 4x2 ISBT 128 label: use --size 4x2 "
                              "--isbt")
        layout = load_template(size).layout(dpi)
        ftext = final_lines(final, patients or EnrolmentPatients(svc), product.coi, item,
                           len(product.items_of("final")), product_code, extra[0],
                           lambda line: fit_text(line, layout, "extra"))
        extra, patient_line, note = list(ftext.extra), ftext.patient, ftext.item_note
    try:
        text = (sign_label(signer, product.coi, code) if signer is not None
                else payload_mod.encode(product.coi, code))
        content = label_content(product.coi, item, payload=text,
                                din=din, product=product_code, extra_lines=extra,
                                patient_text=patient_line, item_note=note)
        plan(content, size, dpi)
    except (LabelError, ScanError) as e:
        raise ConfigError(f"label {new_id} cannot be laid out: {e}") from None
    return Planned(new_id, item, content, dpi)


def grounds_text(text: str) -> str:
    clean = " ".join(text.split())
    if not clean:
        raise ConfigError("give the grounds (why the label is voided)")
    return clean[:GROUNDS_MAX]


def write_label(svc: CoiService, actor: Unlocked, coi: str, planned: Planned, fmt: str, size: str,
           out_path: Path) -> None:
    """Render and write the file; on failure void the label and raise ConfigError."""
    try:
        write_atomically(out_path, render(planned.content, fmt, size, planned.dpi),
                         overwrite=False)
    except Exception as e:
        why = str(e) or type(e).__name__
        voided = void_quietly(svc, actor, coi, planned.label, f"render failed: {why}")
        if not isinstance(e, LabelError | ConfigError | OSError):
            raise
        raise ConfigError(f"the label file could not be written ({why}); label {planned.label} "
                          + ("was voided" if voided else "could not be voided: void it by hand")
                          ) from None


def destination(send_to: str | None, queue: str | None) -> Tcp | Queue | None:
    """The printer a label is sent to: ``--send HOST[:PORT]`` or ``--queue NAME`` (or none)."""
    if send_to is not None and queue is not None:
        raise ConfigError("send the label to one printer: --send or --queue, not both")
    try:
        if send_to is not None:
            return parse_tcp(send_to)
        return parse_queue(queue) if queue is not None else None
    except LabelError as e:
        raise ConfigError(str(e)) from None


def send_label(svc: CoiService, actor: Unlocked, coi: str, planned: Planned, fmt: str,
               size: str, to: Tcp | Queue, copy: Path | None, *,
               reprint_of: str | None = None) -> None:
    """Send the label to a printer; on failure it stays issued, not printed (the file copy, if
    one was written, is removed) and ``Refused`` says so. A render failure voids it."""
    try:
        data = render(planned.content, fmt, size, planned.dpi)
    except (LabelError, ValueError) as e:
        voided = void_quietly(svc, actor, coi, planned.label, f"render failed: {e}")
        raise ConfigError(f"the label could not be rendered ({e}); label {planned.label} "
                          + ("was voided" if voided else "could not be voided: void it by hand")
                          ) from None
    try:
        send(data, to)
    except PrinterError as e:
        if copy is not None:
            copy.unlink(missing_ok=True)
        if reprint_of is not None:
            raise Refused(f"the reprint of {reprint_of} was not printed: {e}. {reprint_of} is "
                          "voided and nothing else was recorded: check the printer and reprint "
                          "it again") from None
        raise Refused(f"label {planned.label} was issued but not printed: {e}. Nothing was "
                      "recorded printed. Check the printer, then void this label (coi labels "
                      "void) and print a new one") from None


def void_quietly(svc: CoiService, actor: Unlocked, coi: str, label: str, grounds: str) -> bool:
    try:
        svc.record("label_void", coi, actor=actor,
                   fields={"label": label, "grounds": grounds_text(grounds)})
    except (Refused, ConfigError):
        return False
    return True
