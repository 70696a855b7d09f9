"""Label commands: ``coi label`` (issue and print), ``coi labels …`` (apply, void, reprint,
check, list) and ``coi parse`` (what a scan means). Thin shells over :mod:`coi.service.labels`
and :func:`coi.service.scans.read_scan`; every scan is shown through ``inert``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any

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
from coi.cli.main import app
from coi.service import labels as label_svc
from coi.service.chain import CoiService
from coi.service.scans import MAX_SCAN_LENGTH, LabelScan, ProductCode, ScanRefused, read_scan
from coi.service.text import inert

labels_app = typer.Typer(help="Label control: apply (by scan), void, reprint, check a scan, "
                              "list with reconciliation.",
                         no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(labels_app, name="labels")

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
OutOpt = Annotated[Path, typer.Option("-o", "--output", help="File to write (never overwritten)")]
AsOpt = Annotated[str, typer.Option("--as", help="Who does it and signs")]
ScanOpt = Annotated[str, typer.Option(
    "--scan", help="What the scanner typed ('-' = one line from stdin; \\x1d or <GS> stands for "
                   "the group separator)")]


# ------------------------------------------------------------------------------ helpers
def scan_text(raw: str) -> str:
    """A scan given on the command line or stdin: ``-`` reads stdin; GS spellings become GS."""
    if raw == "-":
        raw = sys.stdin.readline(MAX_SCAN_LENGTH + 3)
    return _GS_SPELLINGS.sub("\x1d", raw)


def _product_code(svc: CoiService | None, given: str | None, with_isbt: bool
                  ) -> ProductCode | None:
    with errors():
        if given is not None:
            if not with_isbt:
                fail("--product-code goes on ISBT 128 labels: add --isbt", EXIT_USAGE)
            return label_svc.parse_product_code(given)
        configured = svc.site().get("product_code") if svc is not None and with_isbt else None
        if isinstance(configured, str) and configured:
            return label_svc.parse_product_code(configured)
    return None


def _default_item(svc: CoiService, coi: str) -> str:
    """The only item of the product that has no printed or applied label."""
    with errors():
        product = svc.chain().product(coi.strip().upper())
        if product is None:
            fail(f"refused: no product {coi.strip().upper()} in this ledger")
        live = {lab.item for lab in product.labels.values() if lab.status != "voided"}
        free = sorted(i for i in product.items if i not in live)
        if len(free) == 1:
            return free[0]
        fail(f"name the item with --item (unlabelled items: {', '.join(free) or 'none'}; all "
             f"items: {', '.join(sorted(product.items)) or 'none yet'})", EXIT_USAGE)
    raise AssertionError  # pragma: no cover


# ------------------------------------------------------------------------------ coi label
@app.command()
def label(
    coi: Annotated[str, typer.Argument(metavar="ID", help="Chain of Identity identifier")],
    fmt: FormatOpt,
    output: OutOpt,
    as_: AsOpt,
    size: SizeOpt = "2x1",
    dpi: DpiOpt = None,
    with_isbt: IsbtOpt = False,
    item: Annotated[str | None, typer.Option(
        help="Item (bag) to label, e.g. C00001 [default: the only unlabelled item]")] = None,
    product_code: ProductCodeOpt = None,
    printer: Annotated[str | None, typer.Option(help="Printer identifier, recorded")] = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Issue and print a controlled label: recorded issued, written, recorded printed."""
    svc = open_chain(db, log_key)
    code = _product_code(svc, product_code, with_isbt)
    actor = unlock_user(svc, as_, password_file)
    chosen = item if item is not None else _default_item(svc, coi)
    with errors():
        new, path = label_svc.issue_and_print(svc, actor, coi, chosen, fmt.strip().lower(),
                                              size.strip().lower(), dpi, with_isbt, output,
                                              product_code=code, printer=printer)
        typer.echo(f"label {new} printed to {inert(path)}")
        typer.echo("apply it, then confirm with: coi labels apply "
                   f"{inert(coi.strip().upper())} {new} --scan … --as {inert(as_)}", err=True)


# ------------------------------------------------------------------------------ coi labels
@labels_app.command("apply")
def labels_apply(
    coi: Annotated[str, typer.Argument(metavar="ID", help="Chain of Identity identifier")],
    label_id: Annotated[str, typer.Argument(metavar="LABEL", help="Label id, L-…")],
    scan: ScanOpt,
    as_: AsOpt,
    station: Annotated[str, typer.Option(help="Scan station, recorded")] = "label-apply",
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Record a label applied, confirmed by scanning it (a wrong scan is refused, recorded)."""
    raw = scan_text(scan)
    svc = open_chain(db, log_key)
    actor = unlock_user(svc, as_, password_file)
    with errors():
        idx = label_svc.apply(svc, actor, coi, label_id, raw, station=station)
        typer.echo(f"label {inert(label_id.strip().upper())} applied at entry {idx}")


@labels_app.command("void")
def labels_void(
    coi: Annotated[str, typer.Argument(metavar="ID", help="Chain of Identity identifier")],
    label_id: Annotated[str, typer.Argument(metavar="LABEL", help="Label id, L-…")],
    grounds: Annotated[str, typer.Option(help="Why the label is voided (recorded)")],
    as_: AsOpt,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Void a label; a scan of it is refused from now on. Destroy the physical label."""
    svc = open_chain(db, log_key)
    actor = unlock_user(svc, as_, password_file)
    with errors():
        idx = label_svc.void(svc, actor, coi, label_id, grounds)
        typer.echo(f"label {inert(label_id.strip().upper())} voided at entry {idx}")


@labels_app.command("reprint")
def labels_reprint(
    coi: Annotated[str, typer.Argument(metavar="ID", help="Chain of Identity identifier")],
    label_id: Annotated[str, typer.Argument(metavar="LABEL", help="Label id to replace")],
    grounds: Annotated[str, typer.Option(help="Why it is reprinted (recorded as the void's "
                                              "grounds)")],
    fmt: FormatOpt,
    output: OutOpt,
    as_: AsOpt,
    size: SizeOpt = "2x1",
    dpi: DpiOpt = None,
    with_isbt: IsbtOpt = False,
    product_code: ProductCodeOpt = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Void a label (if not yet voided) and print its replacement under a new id."""
    svc = open_chain(db, log_key)
    code = _product_code(svc, product_code, with_isbt)
    actor = unlock_user(svc, as_, password_file)
    with errors():
        new, path = label_svc.reprint(svc, actor, coi, label_id, grounds, fmt.strip().lower(),
                                      size.strip().lower(), dpi, with_isbt, output,
                                      product_code=code)
        typer.echo(f"label {new} replaces {inert(label_id.strip().upper())}; printed to "
                   f"{inert(path)}")


@labels_app.command("check")
def labels_check(
    scan: ScanOpt,
    as_: AsOpt,
    coi: Annotated[str | None, typer.Option("--coi", help="The product expected")] = None,
    item: Annotated[str | None, typer.Option(help="The item (bag) expected")] = None,
    station: Annotated[str, typer.Option(help="Scan station, recorded")] = "scan",
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Check a scan against the ledger: exit 1 (and the refusal recorded) if it is refused."""
    raw = scan_text(scan)
    svc = open_chain(db, log_key)
    actor = unlock_user(svc, as_, password_file)
    with errors():
        result = label_svc.check_scan(svc, raw, coi, item, station=station, by=actor.user)
        out: dict[str, Any] = {"accepted": True, "scan": result.to_json()}
        if isinstance(result, LabelScan):
            out["label"] = label_svc.label_of(svc, result)
        echo_json(out)


@labels_app.command("list")
def labels_list(
    coi: Annotated[str, typer.Argument(metavar="ID", help="Chain of Identity identifier")],
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Every label of a product and what became of it (label reconciliation)."""
    svc = open_chain(db)
    with errors():
        rows = label_svc.reconciliation(svc, coi)
    if as_json:
        echo_json(rows)
        return
    _echo_rows(rows, coi.strip().upper())


def _echo_rows(rows: list[dict[str, Any]], coi: str) -> None:
    if not rows:
        typer.echo(f"  labels of {inert(coi)}: none issued")
        return
    open_ = sum(r["outcome"] == "outstanding" for r in rows)
    typer.echo(f"  label reconciliation: {len(rows)} label(s), "
               + (f"{open_} OUTSTANDING (blocks release)" if open_ else "all accounted for"))
    for r in rows:
        extra = []
        if r["replaces"]:
            extra.append(f"replaces {inert(r['replaces'])}")
        if r["replaced_by"]:
            extra.append(f"replaced by {inert(r['replaced_by'])}")
        if r["grounds"]:
            extra.append(f"grounds: {inert(r['grounds'])}")
        if not r["printed"]:
            extra.append("never printed")
        tail = f"  ({'; '.join(extra)})" if extra else ""
        typer.echo(f"    {inert(r['label'])}  item {inert(r['item'] or '-')}  code "
                   f"{inert(r['code'] or '-')}  {r['outcome'].upper()}{tail}")


def echo_reconciliation(svc: CoiService, coi: str) -> None:
    """Print a product's label reconciliation (for ``coi show``)."""
    with errors():
        rows = label_svc.reconciliation(svc, coi)
    _echo_rows(rows, coi)


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
        scan = read_scan(raw)
    except ScanRefused as e:
        fail(f"not a valid scan: {e.reason}")
    out = scan.to_json()
    if isinstance(scan, LabelScan):
        code = label_svc.parse_label_code(scan.label.item)
        out["label_code"] = ({"item": code.item, "generation": code.generation}
                             if code is not None else None)
    echo_json(out)
