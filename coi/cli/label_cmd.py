"""``coi label`` (issue and print a controlled label) and ``coi parse`` (what a scan means),
with the label options and helpers that ``coi labels …`` (:mod:`coi.cli.labels_cmd`) shares.

Thin shells over :mod:`coi.service.labels` and :func:`coi.service.scans.read_scan`; every scan
is shown through ``inert``. Their Typer app is merged into ``coi`` itself.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from coi.cli.common import (
    EXIT_USAGE,
    DbOpt,
    LogKeyOpt,
    PasswordFileOpt,
    echo_json,
    errors,
    fail,
    open_chain,
    unlock_user,
)
from coi.service.text import inert

if TYPE_CHECKING:
    from coi.service import labels as label_svc
    from coi.service.chain import CoiService
    from coi.service.scans import ProductCode

app = typer.Typer()

_GS_SPELLINGS = re.compile(r"\\x1d|<GS>|\^\]", re.IGNORECASE)

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="png, svg, pdf (a sheet) or zpl")]
SizeOpt = Annotated[str, typer.Option(help="Label size: 2x1 or 4x2 (inches)")]
DpiOpt = Annotated[int | None, typer.Option(
    help="Printer resolution, 203 or 300 [default: 203 for zpl, 300 otherwise; PDF is 300]")]
IsbtOpt = Annotated[bool, typer.Option(
    "--isbt", help="Add the ISBT 128 Data Matrix (CoI identifier, DIN of the collection, "
                   "product code) and the eye-readable DIN")]
ProductCodeOpt = Annotated[str | None, typer.Option(
    help="ISBT 128 product code for --isbt, e.g. S1234100 [default: the site's product_code, "
         "if set]")]
OptionalOutOpt = Annotated[Path | None, typer.Option(
    "-o", "--output", help="File to write (never overwritten); with --send or --queue, a copy "
                           "of what the printer got")]
SendOpt = Annotated[str | None, typer.Option(
    "--send", metavar="HOST[:PORT]",
    help="Send the ZPL to a label printer over raw TCP (port 9100 by default)")]
QueueOpt = Annotated[str | None, typer.Option(
    "--queue", metavar="NAME", help="Send the ZPL to a CUPS queue (lp -o raw)")]
AsOpt = Annotated[str, typer.Option("--as", help="Who does it and signs")]
SignedOpt = Annotated[bool, typer.Option(
    "--signed", help="Print the signed code (COS1), signed with your registered key; 4x2 only")]
FinalOpt = Annotated[bool, typer.Option(
    "--final", help="A final-product label (4x2, --isbt): FOR AUTOLOGOUS USE ONLY, product name "
                    "and code, expiry, storage, the patient's name and date of birth, bag number")]
ExpiryOpt = Annotated[str | None, typer.Option(
    help="Expiry date for --final, YYYY-MM-DD")]
ProductNameOpt = Annotated[str | None, typer.Option(
    help="Product name for --final [default: the site's product_name, if set]")]
StorageOpt = Annotated[str, typer.Option(help="Storage temperature printed by --final")]
ScanOpt = Annotated[str, typer.Option(
    "--scan", help="What the scanner typed ('-' = one line from stdin; \\x1d or <GS> stands for "
                   "the group separator)")]


# ------------------------------------------------------------------------------ helpers
def scan_text(raw: str) -> str:
    """A scan given on the command line or stdin: ``-`` reads stdin; GS spellings become GS."""
    if raw == "-":
        from coi.service.scans import MAX_SCAN_LENGTH
        raw = sys.stdin.readline(MAX_SCAN_LENGTH + 3)
    return _GS_SPELLINGS.sub("\x1d", raw)


def chosen_product_code(svc: CoiService | None, given: str | None, with_isbt: bool
                        ) -> ProductCode | None:
    """The product code for an ISBT 128 label: ``--product-code``, else the site's setting."""
    from coi.service import labels as label_svc

    with errors():
        if given is not None:
            if not with_isbt:
                fail("--product-code goes on ISBT 128 labels: add --isbt", EXIT_USAGE)
            return label_svc.parse_product_code(given)
        configured = svc.site().get("product_code") if svc is not None and with_isbt else None
        if isinstance(configured, str) and configured:
            return label_svc.parse_product_code(configured)
    return None


def final_facts(svc: CoiService, final: bool, expiry: str | None, product_name: str | None,
                storage: str) -> label_svc.FinalLabel | None:
    """What ``--final`` prints beyond the ledger, or None without ``--final``."""
    from coi.service import labels as label_svc

    if not final:
        if expiry is not None or product_name is not None:
            fail("--expiry and --product-name go on final-product labels: add --final",
                 EXIT_USAGE)
        return None
    if expiry is None:
        fail("a final-product label prints its expiry: give --expiry YYYY-MM-DD", EXIT_USAGE)
    with errors():
        configured = svc.site().get("product_name")
    name = product_name or (configured if isinstance(configured, str) else None)
    if not name:
        fail("give the product name with --product-name (or set the site's product_name)",
             EXIT_USAGE)
    return label_svc.FinalLabel(name, expiry, storage)


def _default_item(svc: CoiService, coi: str) -> str:
    """The only item of the product that may get a label (no live label, not gone)."""
    from coi.service import labels as label_svc

    with errors():
        free = label_svc.unlabelled_items(svc, coi)
        if len(free) == 1:
            return free[0]
        fail(f"name the item with --item (items that may get a label now: "
             f"{', '.join(free) or 'none'})", EXIT_USAGE)
    raise AssertionError  # pragma: no cover


# ------------------------------------------------------------------------------ coi label
@app.command()
def label(
    coi: Annotated[str, typer.Argument(metavar="ID", help="Chain of Identity identifier")],
    fmt: FormatOpt,
    as_: AsOpt,
    output: OptionalOutOpt = None,
    size: SizeOpt = "2x1",
    dpi: DpiOpt = None,
    with_isbt: IsbtOpt = False,
    item: Annotated[str | None, typer.Option(
        help="Item (bag) to label, e.g. C00001, or a shipping document D00001 [default: the "
             "only unlabelled item]")] = None,
    product_code: ProductCodeOpt = None,
    printer: Annotated[str | None, typer.Option(help="Printer identifier, recorded")] = None,
    signed: SignedOpt = False,
    final: FinalOpt = False,
    expiry: ExpiryOpt = None,
    product_name: ProductNameOpt = None,
    storage: StorageOpt = "<= -150 C",
    send: SendOpt = None,
    queue: QueueOpt = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Issue and print a controlled label: recorded issued, written, recorded printed."""
    svc = open_chain(db, log_key)
    code = chosen_product_code(svc, product_code, with_isbt)
    facts = final_facts(svc, final, expiry, product_name, storage)
    from coi.service import labels as label_svc

    with errors():
        to = label_svc.destination(send, queue)
    actor = unlock_user(svc, as_, password_file)
    chosen = item if item is not None else _default_item(svc, coi)
    with errors():
        from coi.service import labels as label_svc
        new, path = label_svc.issue_and_print(svc, actor, coi, chosen, fmt.strip().lower(),
                                              size.strip().lower(), dpi, with_isbt, output,
                                              product_code=code, printer=printer,
                                              signed=signed, final=facts, send_to=to)
        where = [f"printer {inert(str(to))}"] if to is not None else []
        where += [inert(path)] if path is not None else []
        typer.echo(f"label {new} printed to {' and '.join(where)}")
        typer.echo("apply it, then confirm with: coi labels apply "
                   f"{inert(coi.strip().upper())} {new} --scan … --as {inert(as_)}", err=True)


# ------------------------------------------------------------------------------ coi parse
@app.command("parse")
def parse(
    text: Annotated[str, typer.Argument(
        help="What the scanner typed ('-' = one line from stdin). Write the group separator as "
             "\\x1d or <GS>; an AIM prefix such as ]Q1 or ]d1 is understood")],
) -> None:
    """Print what a scan means as JSON; exit 1 with the reason when it is not valid."""
    raw = scan_text(text)
    try:
        from coi.service.scans import LabelScan, ScanRefused, read_scan
        scan = read_scan(raw)
    except ScanRefused as e:
        fail(f"not a valid scan: {e.reason}")
    out = scan.to_json()
    if isinstance(scan, LabelScan) and scan.label.signed:
        out["signature"] = "not verified here: coi labels check verifies it against the ledger"
    if isinstance(scan, LabelScan):
        from coi.service import labels as label_svc
        code = label_svc.parse_label_code(scan.label.item)
        out["label_code"] = ({"item": code.item, "generation": code.generation}
                             if code is not None else None)
    echo_json(out)
