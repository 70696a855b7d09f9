"""``coi prove inclusion|consistency``: Merkle proofs (RFC 9162) as JSON with base64 hashes."""

from __future__ import annotations

from typing import Annotated

import typer

from coi.cli.common import DbOpt, echo_json, errors, open_ledger

app = typer.Typer(help="Merkle proofs (RFC 9162) as JSON with base64 hashes.",
                  no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.command("inclusion")
def prove_inclusion(
    index: Annotated[int, typer.Argument(help="Entry index")],
    size: Annotated[int | None, typer.Option(help="Tree size [default: current]")] = None,
    db: DbOpt = None,
) -> None:
    """Inclusion proof of one entry in the tree of a given size."""
    svc = open_ledger(db)
    with errors():
        echo_json(svc.prove_inclusion(index, size))


@app.command("consistency")
def prove_consistency(
    old: Annotated[int, typer.Argument(help="Older tree size")],
    new: Annotated[int, typer.Argument(help="Newer tree size")],
    db: DbOpt = None,
) -> None:
    """Consistency proof between two tree sizes (the older is a prefix of the newer)."""
    svc = open_ledger(db)
    with errors():
        echo_json(svc.prove_consistency(old, new))
