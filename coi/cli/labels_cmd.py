"""``coi labels …``: label control (apply by scan, void, reprint, check a scan, list with the
label reconciliation), thin shells over :mod:`coi.service.labels`; every scan and every value
from the ledger is shown through ``inert``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from coi.cli.common import (
    DbOpt,
    LogKeyOpt,
    PasswordFileOpt,
    echo_json,
    errors,
    open_chain,
    unlock_user,
)
from coi.cli.label_cmd import (
    AsOpt,
    DpiOpt,
    FormatOpt,
    IsbtOpt,
    OptionalOutOpt,
    ProductCodeOpt,
    QueueOpt,
    ScanOpt,
    SendOpt,
    SignedOpt,
    chosen_product_code,
    scan_text,
)
from coi.service.text import inert

if TYPE_CHECKING:
    from coi.service.chain import CoiService

ReprintSizeOpt = Annotated[str | None, typer.Option(
    help="Label size: 2x1 or 4x2 (inches) [default: 4x2 for a final-product label, else 2x1]")]

app = typer.Typer(help="Label control: apply (by scan), void, reprint, check a scan, "
                       "list with reconciliation.",
                  no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.command("apply")
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
        from coi.service import labels as label_svc
        idx = label_svc.apply(svc, actor, coi, label_id, raw, station=station)
        typer.echo(f"label {inert(label_id.strip().upper())} applied at entry {idx}")


@app.command("void")
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
        from coi.service import labels as label_svc
        idx = label_svc.void(svc, actor, coi, label_id, grounds)
        typer.echo(f"label {inert(label_id.strip().upper())} voided at entry {idx}")


@app.command("reprint")
def labels_reprint(
    coi: Annotated[str, typer.Argument(metavar="ID", help="Chain of Identity identifier")],
    label_id: Annotated[str, typer.Argument(metavar="LABEL", help="Label id to replace")],
    grounds: Annotated[str, typer.Option(help="Why it is reprinted (recorded as the void's "
                                              "grounds)")],
    fmt: FormatOpt,
    as_: AsOpt,
    output: OptionalOutOpt = None,
    size: ReprintSizeOpt = None,
    dpi: DpiOpt = None,
    with_isbt: IsbtOpt = False,
    product_code: ProductCodeOpt = None,
    signed: SignedOpt = False,
    send: SendOpt = None,
    queue: QueueOpt = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Void a label (if not yet voided) and print its replacement under a new id; a
    final-product label is reprinted final, with the expiry, product and storage it carried."""
    svc = open_chain(db, log_key)
    code = chosen_product_code(svc, product_code, with_isbt)
    from coi.service import labels as label_svc

    with errors():
        to = label_svc.destination(send, queue)
    actor = unlock_user(svc, as_, password_file)
    with errors():
        from coi.service import labels as label_svc
        new, path = label_svc.reprint(svc, actor, coi, label_id, grounds, fmt.strip().lower(),
                                      size.strip().lower() if size else None, dpi,
                                      with_isbt, output,
                                      product_code=code, signed=signed, send_to=to)
        where = [f"printer {inert(str(to))}"] if to is not None else []
        where += [inert(path)] if path is not None else []
        typer.echo(f"label {new} replaces {inert(label_id.strip().upper())}; printed to "
                   + " and ".join(where))


@app.command("check")
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
        from coi.service import labels as label_svc
        result = label_svc.check_scan(svc, raw, coi, item, station=station, by=actor.user)
        out: dict[str, Any] = {"accepted": True, "scan": result.to_json()}
        from coi.service.scans import LabelScan
        if isinstance(result, LabelScan):
            out["label"] = label_svc.label_of(svc, result)
            if result.label.signed:
                out["signature"] = label_svc.signature_verdict(svc, result)
        echo_json(out)


@app.command("list")
def labels_list(
    coi: Annotated[str, typer.Argument(metavar="ID", help="Chain of Identity identifier")],
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Every label of a product and what became of it (label reconciliation)."""
    svc = open_chain(db)
    with errors():
        from coi.service import labels as label_svc
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
        from coi.service import labels as label_svc
        rows = label_svc.reconciliation(svc, coi)
    _echo_rows(rows, coi)
