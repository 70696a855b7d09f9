"""The ``coi`` command: a thin Typer shell over the service layer.

Every command has ``--help``. Exit codes: 0 success, 1 the thing checked is bad or the action
was refused (reason on stderr), 2 usage or configuration error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from coi.cli.common import (
    EXIT_USAGE,
    DbOpt,
    LogKeyOpt,
    PasswordFileOpt,
    WitnessPasswordFileOpt,
    echo_json,
    errors,
    fail,
    open_ledger,
    read_password,
    unlock_user,
)
from coi.service.ledger import Party
from coi.service.text import inert

app = typer.Typer(
    name="coi",
    help="coi — chain-of-identity tracker for autologous cell therapy, on a signed, "
         "append-only, independently verifiable ledger.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
user_app = typer.Typer(help="Enrol, list, revoke, reset and unlock users.", no_args_is_help=True,
                       context_settings={"help_option_names": ["-h", "--help"]})
prove_app = typer.Typer(help="Merkle proofs (RFC 9162) as JSON with base64 hashes.",
                        no_args_is_help=True,
                        context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(user_app, name="user")
app.add_typer(prove_app, name="prove")


@app.command()
def init(
    origin: Annotated[str, typer.Option(
        help="The log's name, e.g. coi.example-hospital.org/ledger")],
    admin: Annotated[str, typer.Option(help="User id of the first administrator")],
    admin_name: Annotated[str, typer.Option(help="The administrator's printed name")],
    fin: Annotated[str, typer.Option(help="The site's ISBT 128 facility identification number "
                                          "(A9990–A9999 are for tests and demos)")] = "A9999",
    tz: Annotated[str, typer.Option(help="The site's IANA time zone")] = "UTC",
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Create a ledger: schema (migrations), the site's log key, genesis and first administrator."""
    svc = open_ledger(db, log_key)
    password = read_password(password_file, f"new password for {admin}")
    with errors():
        from coi.service.chain import genesis_extras

        site_data, process = genesis_extras(fin)
        e = svc.init(origin=origin, admin=admin, admin_name=admin_name, admin_password=password,
                     tz=tz, site_data=site_data, process=process)
        typer.echo(f"initialised ledger {inert(origin)} at {inert(svc.site.db_url)}")
        typer.echo(f"genesis entry {e.index}, hash {e.entry_hash.hex()}")
        typer.echo(f"log key file: {svc.site.log_key_path} (keep it private; back it up)")
        typer.echo(f"log verifier key: {svc.log_verifier_key()}")


@app.command()
def migrate(db: DbOpt = None) -> None:
    """Bring the database schema up to date (Alembic migrations shipped in the package)."""
    svc = open_ledger(db)
    with errors():
        from coi.service.admin import upgrade_schema

        typer.echo(f"schema at revision {upgrade_schema(svc)}")


@user_app.command("add")
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


@user_app.command("revoke")
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


@user_app.command("reset")
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


@user_app.command("rotate")
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


@user_app.command("unlock")
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


@user_app.command("list")
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


@app.command()
def append(
    type_: Annotated[str, typer.Argument(metavar="TYPE", help="Entry type, e.g. note.comment")],
    subject: Annotated[str, typer.Option(help="What the entry is about (an identifier)")],
    data: Annotated[str, typer.Option(help="Entry content as a JSON object")],
    as_: Annotated[str, typer.Option("--as", help="Who signs it")],
    witness: Annotated[str | None, typer.Option(help="A second person who co-signs")] = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
    witness_password_file: WitnessPasswordFileOpt = None,
) -> None:
    """Append a generic signed entry (for scripts and tests; process steps use `coi record`)."""
    try:
        obj = json.loads(data, parse_float=lambda s: (_ for _ in ()).throw(ValueError(s)))
    except ValueError as e:
        fail(f"--data is not usable JSON ({e}); floats are not allowed, use integers or "
             "decimal strings", EXIT_USAGE)
    if not isinstance(obj, dict):
        fail("--data must be a JSON object, e.g. '{\"note\": \"text\"}'", EXIT_USAGE)
    svc = open_ledger(db, log_key)
    author = unlock_user(svc, as_, password_file)
    parties = [Party(author, "authored")]
    if witness:
        parties.append(Party(unlock_user(svc, witness, witness_password_file, "witness password"),
                             "witnessed"))
    with errors():
        from coi.service.chain import refuse_process_types

        refuse_process_types(svc, type_, subject=subject, by=author.user)
        entry = svc.append(type_, subject, obj, parties)
        typer.echo(f"appended entry {entry.index} ({entry.entry_hash.hex()})")


@app.command()
def verify(
    db: DbOpt = None,
    checkpoint: Annotated[list[Path] | None, typer.Option(
        help="A checkpoint saved earlier; the ledger must be consistent with it (repeatable)")
    ] = None,
    jobs: Annotated[int, typer.Option(
        min=1, max=64, help="Processes that check the ledger: this one and N-1 workers")] = 1,
) -> None:
    """Check everything: bytes, signatures, keys by position, chain, tree, head, checkpoints."""
    notes = []
    for p in checkpoint or []:
        try:
            notes.append(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            fail(f"cannot read checkpoint {p}: {e}", EXIT_USAGE)
    svc = open_ledger(db)
    with errors():
        from coi.service.chain import verify_all

        result = verify_all(svc, jobs=jobs, checkpoints=notes)
        typer.echo(f"OK: {result.size} entries verified; root {result.root.hex()}")
        typer.echo(f"log verifier key: {svc.log_verifier_key()}")


@app.command()
def checkpoint(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write it to this file")
                      ] = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
) -> None:
    """Print (or save) the latest signed checkpoint (C2SP tlog-checkpoint)."""
    svc = open_ledger(db, log_key)
    with errors():
        text = svc.checkpoint()
    if output is None:
        sys.stdout.write(text)
        return
    from coi.service.files import write_atomically

    with errors():
        write_atomically(output, text.encode("utf-8"))
    typer.echo(f"checkpoint written to {output}")


@app.command("log-key")
def log_key_cmd(db: DbOpt = None) -> None:
    """Print the log's verifier key string (name+keyid+base64 key), for auditors and witnesses."""
    svc = open_ledger(db)
    with errors():
        svc.require_initialised()
        typer.echo(svc.log_verifier_key())


@prove_app.command("inclusion")
def prove_inclusion(
    index: Annotated[int, typer.Argument(help="Entry index")],
    size: Annotated[int | None, typer.Option(help="Tree size [default: current]")] = None,
    db: DbOpt = None,
) -> None:
    """Inclusion proof of one entry in the tree of a given size."""
    svc = open_ledger(db)
    with errors():
        echo_json(svc.prove_inclusion(index, size))


@prove_app.command("consistency")
def prove_consistency(
    old: Annotated[int, typer.Argument(help="Older tree size")],
    new: Annotated[int, typer.Argument(help="Newer tree size")],
    db: DbOpt = None,
) -> None:
    """Consistency proof between two tree sizes (the older is a prefix of the newer)."""
    svc = open_ledger(db)
    with errors():
        echo_json(svc.prove_consistency(old, new))


def run() -> None:
    """Console-script entry point."""
    from coi.cli import commands  # noqa: F401  (registers the domain, label and TUI commands)

    app()


if __name__ == "__main__":  # pragma: no cover
    # Run the imported module's app: the command modules register on coi.cli.main, not on
    # this __main__ copy of it.
    from coi.cli.main import run as _run

    _run()
