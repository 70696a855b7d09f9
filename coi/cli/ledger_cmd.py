"""Ledger commands: ``coi init``, ``migrate``, ``append``, ``verify``, ``checkpoint`` and
``log-key`` (thin shells over :class:`coi.service.ledger.LedgerService`).

Their Typer app is merged into ``coi`` itself (registered without a name in
:mod:`coi.cli.main`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from coi.cli.common import (
    DbOpt,
    ForceOpt,
    LogKeyOpt,
    PasswordFileOpt,
    WitnessPasswordFileOpt,
    b64,
    errors,
    open_ledger,
    read_password,
    refuse_existing,
    unlock_user,
)
from coi.cli.inputs import MAX_CHECKPOINT_BYTES, decode_utf8, json_object, read_bounded
from coi.service.text import inert

if TYPE_CHECKING:
    from coi.service.ledger import LedgerService

app = typer.Typer()
SHOWN_MAX = 50  # products listed by `coi migrate` when their rows were rebuilt


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
    svc = open_ledger(db, log_key, create=True)
    password = read_password(password_file, f"new password for {admin}", confirm=True)
    with errors():
        from coi.service.chain import genesis_extras

        site_data, process = genesis_extras(fin)
        e = svc.init(origin=origin, admin=admin, admin_name=admin_name, admin_password=password,
                     tz=tz, site_data=site_data, process=process)
        typer.echo(f"initialised ledger {inert(origin)} at {inert(svc.site.db_url)}")
        typer.echo(f"genesis entry {e.index}, hash {e.entry_hash.hex()}")
        typer.echo(f"log key file: {svc.site.log_key_path} (keep it private; back it up)")
        typer.echo(f"PHI key file: {svc.site.phi_key_path} (keep it private; back it up apart "
                   "from the database)")
        typer.echo(f"log verifier key: {svc.log_verifier_key()}")


@app.command()
def migrate(db: DbOpt = None, log_key: LogKeyOpt = None) -> None:
    """Bring the database schema up to date (Alembic migrations shipped in the package); seal
    patient identifiers still in clear under the PHI key (created beside the log key if none);
    rebuild the product_state table from the verified ledger (recorded if any row changed)."""
    svc = open_ledger(db, log_key)
    with errors():
        from coi.service.admin import rebuild_states, upgrade_schema
        from coi.service.errors import VerificationError

        up = upgrade_schema(svc)
        if up.phi_key_created is not None:
            typer.echo(f"PHI key file: {up.phi_key_created} created (keep it private; back it "
                       "up apart from the database)")
        if up.sealed_patients:
            typer.echo(f"sealed the identifiers of {up.sealed_patients} patients under the "
                       "PHI key")
        typer.echo(f"schema at revision {up.revision}")
        try:
            rebuilt = rebuild_states(svc)
        except VerificationError as e:
            raise VerificationError(f"{e.reason}; the product_state table was not rebuilt "
                                    "(nothing changed): a table is rebuilt only from a ledger "
                                    "that verifies", index=e.index) from None
        if rebuilt is None:
            return
        if rebuilt.miscounted is not None:
            typer.echo(f"state_count: counted again from the product rows (was: "
                       f"{inert(rebuilt.miscounted)})")
        if not rebuilt.differed and rebuilt.recorded_index is None:
            typer.echo(f"product_state: {rebuilt.products} products, all as the "
                       f"{rebuilt.verified_size} verified entries make them: nothing changed")
            return
        if not rebuilt.differed:
            typer.echo(f"product_state: {rebuilt.products} products, all right (recorded as "
                       f"entry {rebuilt.recorded_index}, system.state_rebuilt)")
            return
        typer.echo(f"product_state: rebuilt from the {rebuilt.verified_size} verified entries: "
                   f"{rebuilt.products} products written, {len(rebuilt.differed)} differed "
                   f"(recorded as entry {rebuilt.recorded_index}, system.state_rebuilt):")
        for coi, what in list(rebuilt.differed.items())[:SHOWN_MAX]:
            typer.echo(f"  {inert(coi)}: {inert(what)}")
        if len(rebuilt.differed) > SHOWN_MAX:
            typer.echo(f"  … and {len(rebuilt.differed) - SHOWN_MAX} more")


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
    obj = json_object(data, "--data", "'{\"note\": \"text\"}'")
    svc = open_ledger(db, log_key)
    author = unlock_user(svc, as_, password_file)
    from coi.service.ledger import Party

    parties = [Party(author, "authored")]
    if witness:
        parties.append(Party(unlock_user(svc, witness, witness_password_file, "witness password"),
                             "witnessed"))
    with errors():
        from coi.service.chain import refuse_process_types

        refuse_process_types(svc, type_, subject=subject, by=author.user)
        entry = svc.append(type_, subject, obj, parties)
        typer.echo(f"appended entry {entry.index} ({entry.entry_hash.hex()})")


AFTER_A_FAILURE = ("What to do: record nothing more on this ledger; keep this database as it "
                   "is for the investigation; restore the last backup that verified into a new "
                   "database (`coi restore`) and report the failure to QA")


@app.command()
def verify(
    db: DbOpt = None,
    checkpoint: Annotated[list[Path] | None, typer.Option(
        help="A checkpoint saved earlier; the ledger must be consistent with it (repeatable)")
    ] = None,
    jobs: Annotated[int, typer.Option(
        min=1, max=64, help="Processes that check the ledger: this one and N-1 workers")] = 1,
) -> None:
    """Check everything: bytes, signatures, keys by position, chain, tree, head, checkpoints;
    say whether a checkpoint kept elsewhere pinned the history."""
    notes = [decode_utf8(read_bounded(p, MAX_CHECKPOINT_BYTES, "checkpoint"), f"checkpoint {p}")
             for p in checkpoint or []]
    svc = open_ledger(db)
    with errors():
        from coi.service.chain import verify_all
        from coi.service.errors import VerificationError
        from coi.service.handoff_ack import partner_pins

        pins = partner_pins(svc)  # checked like --checkpoint: they are signed by the log key
        try:
            result = verify_all(svc, jobs=jobs, checkpoints=notes + [p.note for p in pins],
                                replica=True)
        except VerificationError as e:
            if "coi migrate" in e.reason:  # a projection table, not the entries: it says what
                raise
            raise VerificationError(f"{e.reason}. {AFTER_A_FAILURE}", index=e.index) from None
        typer.echo(f"OK: {result.size} entries verified; root {b64(result.root)} (base64, as "
                   "a checkpoint writes it)")
        _say_where_read(svc, result.size)
        for path, text in zip(checkpoint or [], notes, strict=True):
            head = text.split("\n")
            typer.echo(f"pinned: consistent with the checkpoint {inert(path)} of "
                       f"{inert(head[1])} entries (root {inert(head[2])})")
        typer.echo(f"log verifier key: {svc.log_verifier_key()}")
        if pins:
            typer.echo(f"pinned: consistent with the checkpoint of {pins[0].size} entries "
                       f"cosigned by partner {inert(pins[0].partner)} (entry {pins[0].index})"
                       + (f" and {len(notes)} given checkpoint(s)" if notes else ""))
        elif not notes:
            typer.echo("NOT pinned: no checkpoint was given and no partner-cosigned checkpoint "
                       "is held: internal consistency only (unpinned), so a ledger restored "
                       "from an old copy or rewritten as a whole would verify too; pass "
                       "--checkpoint FILE (saved earlier with `coi checkpoint -o`, kept apart "
                       "from the database)")


def _say_where_read(svc: LedgerService, size: int) -> None:
    """Which database `coi verify` read, and, from a replica, how far the primary is ahead."""
    db = svc.db
    if db.read_url is None:
        return
    if svc.read_from != "replica":
        typer.echo(f"read from the primary {db.url.display}: the read replica "
                   f"{db.read_url.display} held fewer entries than a checkpoint given")
        return
    head = svc.store.head()
    primary = head.size if head is not None else 0
    behind = (f"the primary holds {primary}: the {primary - size} newest were not verified "
              "here (the replica lags; run again, or unset COI_READ_DATABASE_URL)"
              if primary > size else f"the primary holds {primary} too")
    typer.echo(f"read from the read replica {db.read_url.display} (COI_READ_DATABASE_URL): "
               f"{size} entries; {behind}")


@app.command()
def checkpoint(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write it to this file")
                      ] = None,
    force: ForceOpt = False,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
) -> None:
    """Print (or save) the latest signed checkpoint (C2SP tlog-checkpoint)."""
    refuse_existing(force, output)
    svc = open_ledger(db, log_key)
    with errors():
        text = svc.checkpoint()
    if output is None:
        sys.stdout.write(text)
        return
    from coi.service.files import write_atomically

    with errors():
        write_atomically(output, text.encode("utf-8"), overwrite=force)
    typer.echo(f"checkpoint written to {output}")


@app.command("log-key")
def log_key_cmd(db: DbOpt = None) -> None:
    """Print the log's verifier key string (name+keyid+base64 key), for auditors and witnesses."""
    svc = open_ledger(db)
    with errors():
        svc.require_initialised()
        typer.echo(svc.log_verifier_key())
