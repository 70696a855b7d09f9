"""``coi partner …``: pin, list and unpin the organisations this site exchanges hand-offs with
(thin shells over :mod:`coi.service.partners`; docs/federation.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from coi.cli.common import (
    DbOpt,
    LogKeyOpt,
    PasswordFileOpt,
    echo_json,
    errors,
    open_ledger,
    unlock_user,
)
from coi.service.text import inert

app = typer.Typer(help="Pin, list and remove partner organisations (their FIN and log key).",
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})


@app.command("add")
def partner_add(
    name: Annotated[str, typer.Argument(help="The partner's name here (e.g. acme-cells)")],
    log_key: Annotated[str, typer.Option("--log-key", help="The partner's log verifier key "
                                                           "string (its `coi log-key`)")],
    fin: Annotated[str, typer.Option(help="The partner's ISBT 128 FIN (e.g. A9998)")],
    role: Annotated[str, typer.Option(help="collection, manufacturing or treatment")],
    as_: Annotated[str, typer.Option("--as", help="The administrator pinning it")],
    db: DbOpt = None,
    site_log_key: Annotated[str | None, typer.Option(
        "--site-log-key", envvar="COI_LOG_KEY",
        help="This site's log key file (default: beside the SQLite file)")] = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Pin a partner: an administrator-signed entry with its name, FIN, role and log key."""
    from coi.service import partners

    svc = open_ledger(db, site_log_key)
    with errors():
        partners.check_name(name)
        partners.check_log_key(log_key)
    admin = unlock_user(svc, as_, password_file)
    with errors():
        e = partners.add(svc, admin, name=name, log_key=log_key, fin=fin, role=role)
        typer.echo(f"partner {inert(name)} ({inert(role)}, FIN {inert(fin)}) pinned at entry "
                   f"{e.index}")


@app.command("list")
def partner_list(
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="As JSON")] = False,
) -> None:
    """The partners in force, replayed from the ledger."""
    from coi.service import partners

    svc = open_ledger(db, log_key)
    with errors():
        ps = partners.partners(svc)
    if json_:
        echo_json([p.to_json() for p in ps])
        return
    if not ps:
        typer.echo("no partners: an administrator adds one with `coi partner add`")
    for p in ps:
        typer.echo(f"{inert(p.name)}  {inert(p.role)}  FIN {inert(p.fin)}  origin "
                   f"{inert(p.origin)}  since entry {p.added_at}")
        typer.echo(f"  {inert(p.log_key)}")


@app.command("remove")
def partner_remove(
    name: Annotated[str, typer.Argument(help="The partner's name here")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger)")],
    as_: Annotated[str, typer.Option("--as", help="The administrator removing it")],
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Unpin a partner: hand-offs from or to it are refused from then on."""
    from coi.service import partners

    svc = open_ledger(db, log_key)
    with errors():
        partners.check_name(name)
    admin = unlock_user(svc, as_, password_file)
    with errors():
        e = partners.remove(svc, admin, name=name, reason=reason)
        typer.echo(f"partner {inert(name)} removed at entry {e.index}")
