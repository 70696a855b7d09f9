"""Backup and restore: ``coi backup`` and ``coi restore`` (thin shells over
:mod:`coi.service.backup`). Their Typer app is merged into ``coi`` itself.

Exit codes: 0 the backup (or restore) was made and verified; 1 it did not verify (nothing is
left behind); 2 usage or configuration (an existing file or database, a missing tool).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coi.cli.common import DbOpt, LogKeyOpt, errors, fail, open_ledger
from coi.service.text import inert

app = typer.Typer()

MAX_CHECKPOINT_BYTES = 64 * 1024


@app.command()
def backup(
    output: Annotated[Path, typer.Option("-o", "--output", help="The backup file to write")],
    force: Annotated[bool, typer.Option(help="Replace an existing backup file")] = False,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
) -> None:
    """Back up the live ledger (stations may keep writing), then prove the copy: restore it to a
    scratch database and verify it against the checkpoint signed at backup time."""
    svc = open_ledger(db, log_key)
    with errors():
        from coi.service.backup import backup as make_backup

        r = make_backup(svc, output, force=force)
        typer.echo(f"backup {inert(str(r.path))}: {r.entries} entries, verified on a scratch "
                   f"restore against the checkpoint of size {r.size}")
        typer.echo(f"sha256 {r.sha256}")
        typer.echo(f"checkpoint {inert(str(r.checkpoint_path))} (keep it apart from the backup)")
        typer.echo("keys are not in a backup: back up the log key file (and the PHI key) "
                   "separately")


def _read_checkpoint(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CHECKPOINT_BYTES + 1)
    except OSError as e:
        fail(f"cannot read checkpoint file {path}: {e.strerror}", 2)
    if len(data) > MAX_CHECKPOINT_BYTES:
        fail(f"{path} is larger than a checkpoint can be ({MAX_CHECKPOINT_BYTES} bytes)", 2)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{path} is not a checkpoint (not UTF-8 text)", 2)


@app.command()
def restore(
    backup_file: Annotated[Path, typer.Argument(help="A file written by coi backup")],
    checkpoint: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", help="A checkpoint kept elsewhere (saved, beside a backup, or a "
                             "partner's ack): what the backup lacks against the newest is "
                             "reported")] = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
) -> None:
    """Restore a backup into a new database (never over a ledger), verify it, and report what it
    lacks against the checkpoints you kept."""
    notes = [_read_checkpoint(p) for p in checkpoint or []]
    with errors():
        from coi.service.backup import restore as do_restore

        r = do_restore(backup_file, db, checkpoints=notes, log_key=log_key)
        typer.echo(f"restored {r.entries} entries into {inert(r.target)}; verified")
        if r.missing is not None:
            first, last = r.missing
            typer.echo(f"the backup lacks entries {first}–{last} that the newest kept checkpoint "
                       f"(size {r.newest_size}) covers: recover them from partners' hand-off "
                       "files or audit exports before the site writes again")
        elif r.newest_size is not None:
            typer.echo(f"nothing is missing against the newest kept checkpoint (size "
                       f"{r.newest_size})")
        else:
            typer.echo("no kept checkpoint given: pass --checkpoint FILE to learn what the "
                       "backup may lack")
        typer.echo("put the site's log key file (and its PHI key file, without which the "
                   "patients cannot be named) in place before the site writes again")
