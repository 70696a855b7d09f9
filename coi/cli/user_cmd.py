"""``coi user …``: enrol, revoke, reset, rotate, unlock and list users (thin shells over
:class:`coi.service.ledger.LedgerService`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coi.cli.common import (
    DbOpt,
    LogKeyOpt,
    PasswordFileOpt,
    echo_json,
    errors,
    open_ledger,
    read_password,
    unlock_user,
)
from coi.service.text import inert

app = typer.Typer(help="Enrol, list, revoke, reset and unlock users.", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.command("add")
def user_add(
    user: Annotated[str, typer.Argument(help="New user id (lowercase, e.g. alice)")],
    name: Annotated[str, typer.Option(help="Printed name, as shown beside signatures")],
    role: Annotated[list[str], typer.Option(help="A role; repeat for several")],
    as_: Annotated[str, typer.Option("--as", help="The administrator enrolling them")],
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
    new_password_file: Annotated[Path | None, typer.Option(
        help="Read the new user's initial password from this file ('-' = stdin)")] = None,
) -> None:
    """Enrol a user: a new key, sealed under their password, registered by an admin-signed entry."""
    svc = open_ledger(db, log_key)
    admin = unlock_user(svc, as_, password_file)
    password = read_password(new_password_file, f"initial password for {user}")
    with errors():
        from coi.service.chain import check_roles

        check_roles(role)
        e = svc.enrol(admin, user=user, name=name, roles=role, password=password)
        typer.echo(f"enrolled {inert(user)} ({inert(name)}) with roles {', '.join(sorted(role))}"
                   f" at entry {e.index}")


@app.command("revoke")
def user_revoke(
    user: Annotated[str, typer.Argument(help="User whose key is revoked")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger)")],
    as_: Annotated[str, typer.Option("--as", help="The administrator revoking")],
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Revoke a user's key: every later signature with it is refused and flagged by verify."""
    svc = open_ledger(db, log_key)
    admin = unlock_user(svc, as_, password_file)
    with errors():
        e = svc.revoke(admin, user=user, reason=reason)
        typer.echo(f"revoked {inert(user)}'s key at entry {e.index}")


@app.command("reset")
def user_reset(
    user: Annotated[str, typer.Argument(help="User who forgot their password")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger)")],
    as_: Annotated[str, typer.Option("--as", help="The administrator resetting")],
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
    new_password_file: Annotated[Path | None, typer.Option(
        help="Read the new password from this file ('-' = stdin)")] = None,
) -> None:
    """Reset a password: the old key is retired, a new key enrolled (keys are never recovered)."""
    svc = open_ledger(db, log_key)
    admin = unlock_user(svc, as_, password_file)
    password = read_password(new_password_file, f"new password for {user}")
    with errors():
        e = svc.reset(admin, user=user, password=password, reason=reason)
        typer.echo(f"new key for {inert(user)} at entry {e.index}; the old key is retired")


@app.command("rotate")
def user_rotate(
    user: Annotated[str, typer.Argument(help="Your user id")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger)")] = "password change",
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
    new_password_file: Annotated[Path | None, typer.Option(
        help="Read the new password from this file ('-' = stdin)")] = None,
) -> None:
    """Replace your own key (and password): the new key is signed for with the old one."""
    svc = open_ledger(db, log_key)
    who = unlock_user(svc, user, password_file, "current password")
    password = read_password(new_password_file, f"new password for {user}")
    with errors():
        e = svc.rotate(who, password=password, reason=reason)
        typer.echo(f"new key for {inert(user)} at entry {e.index}; the old key is retired")


@app.command("unlock")
def user_unlock(
    user: Annotated[str, typer.Argument(help="User locked out after failed attempts")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger)")],
    as_: Annotated[str, typer.Option("--as", help="The administrator unlocking")],
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Unlock an account locked after repeated failed password attempts."""
    svc = open_ledger(db, log_key)
    admin = unlock_user(svc, as_, password_file)
    with errors():
        e = svc.unlock_account(admin, user=user, reason=reason)
        typer.echo(f"unlocked {inert(user)} at entry {e.index}")


@app.command("list")
def user_list(db: DbOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List users with their roles, key and state."""
    svc = open_ledger(db)
    with errors():
        svc.require_initialised()
        users = svc.users()
    if as_json:
        echo_json(users)
        return
    for u in users:
        state = "locked" if u["locked"] else ("active" if u["active"] else "revoked")
        typer.echo(f"{inert(u['user']):<16} {inert(u['name']):<28} {','.join(u['roles']):<24} "
                   f"{state:<8} key {u['key_id'] or '-'}")
