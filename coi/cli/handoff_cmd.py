"""``coi handoff …``: send a product's hand-off file to a partner, receive one from a partner
(thin shells over :mod:`coi.service.handoff` and :mod:`coi.service.handoff_receive`;
docs/federation.md). Exit codes: 0 done, 1 refused (the refusal is recorded), 2 usage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coi.cli.common import (
    EXIT_USAGE,
    DbOpt,
    LogKeyOpt,
    PasswordFileOpt,
    errors,
    fail,
    open_chain,
    refuse_existing,
    unlock_user,
)
from coi.service.text import inert

app = typer.Typer(help="Send and receive hand-off files between partner organisations.",
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})


@app.command("export")
def handoff_export(
    coi: Annotated[str, typer.Option("--coi", help="The product's CoI identifier")],
    to: Annotated[str, typer.Option("--to", help="The receiving partner's name here")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The hand-off file to write")],
    as_: Annotated[str, typer.Option("--as", help="Who sends it (signs the handoff.sent entry)")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file")] = False,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Write the product's hand-off file for a partner: its complete bundle, the checkpoint,
    the consistency proof from the last one sent, the items shipped; record it sent."""
    from coi.service.handoff import OutputExists, export_handoff

    svc = open_chain(db, log_key)
    if output.exists() and not force:
        fail(f"{output} exists; refusing to overwrite it (--force replaces it)")
    who = unlock_user(svc, as_, password_file)
    with errors():
        try:
            r = export_handoff(svc, who, coi=coi, to=to, out=output, force=force)
        except OutputExists as e:
            fail(str(e))
    typer.echo(f"hand-off of {inert(r.coi)} to {inert(r.partner)} written to {inert(r.path)}: "
               f"shipment entry {r.shipment_index}, items {', '.join(map(inert, r.items))}, "
               f"checkpoint of {r.checkpoint_size} entries; recorded sent at entry "
               f"{r.sent_index}")
    typer.echo(f"sha256 {r.file_sha256}")


@app.command("receive")
def handoff_receive(
    path: Annotated[Path, typer.Argument(help="The hand-off file")],
    as_: Annotated[str, typer.Option("--as", help="Who receives it (signs the entry)")],
    ack: Annotated[Path | None, typer.Option(
        "--ack", help="Write the sender's checkpoint, cosigned by this site, here (send it "
                      "back: `coi handoff ack` at the sender)")] = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Check a partner's hand-off file (pinned key and FIN, addressed here, not seen before,
    consistent with its last checkpoint, complete) and record the product as expected, in the
    state the sender's shipment left it."""
    from coi.service.handoff_receive import receive_handoff

    svc = open_chain(db, log_key)
    _regular_file(path, "the hand-off file the partner sent")
    refuse_existing(False, ack)  # before anything is recorded: an ack that cannot be written
    who = unlock_user(svc, as_, password_file)
    with errors():
        r = receive_handoff(svc, who, path, ack=ack)
    done = ("complete" if r.complete else f"complete from index {r.complete_from}")
    typer.echo(f"received {inert(r.coi)} from {inert(r.partner)} at entry {r.index} "
               f"({done}; sender checkpoint of {r.checkpoint_size} entries): expected here "
               f"with items {', '.join(map(inert, r.items))}, at {inert(r.state)} until its "
               "receipt is recorded")


@app.command("ack")
def handoff_ack(
    path: Annotated[Path, typer.Argument(help="The partner's acknowledgement (a cosigned "
                                              "checkpoint of this ledger)")],
    as_: Annotated[str, typer.Option("--as", help="Who records it (signs the entry)")],
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Keep a partner's cosignature of this ledger's checkpoint: `coi verify` checks against
    it from then on."""
    from coi.service.handoff_ack import record_ack

    svc = open_chain(db, log_key)
    _regular_file(path, "the acknowledgement the partner sent back")
    who = unlock_user(svc, as_, password_file)
    with errors():
        r = record_ack(svc, who, path)
    typer.echo(f"partner {inert(r.partner)} cosigned this ledger's checkpoint of {r.size} "
               f"entries; kept at entry {r.index}")


def _regular_file(path: Path, what: str) -> None:
    """A usage error unless ``path`` is a regular file (not missing, not a folder or device)."""
    if not path.is_file():
        why = "is not a regular file (a folder or a device)" if path.exists() else "no such file"
        fail(f"cannot read {path}: {why}; give {what}", EXIT_USAGE)
