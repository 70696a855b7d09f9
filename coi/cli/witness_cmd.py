"""``coi witness init|cosign``: run a witness that cosigns only checkpoints extending what it
accepted before. Exit codes: 0 cosigned, 1 refused (a rewrite) or not cosigned, 2 usage or
configuration error."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from coi.cli.common import EXIT_USAGE, ForceOpt, errors, fail, refuse_existing
from coi.cli.inputs import (
    MAX_CHECKPOINT_BYTES,
    MAX_JSON_TEXT,
    decode_utf8,
    json_object,
    read_bounded,
)
from coi.service.errors import VerificationError
from coi.service.text import inert

app = typer.Typer(help="Witness a log: cosign only checkpoints that extend what was "
                       "accepted before.", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})

OutOpt = Annotated[Path, typer.Option("-o", "--output", help="File to write")]


@app.command("init")
def witness_init(
    name: Annotated[str, typer.Option(help="The witness's key name, e.g. witness.example.org")],
    output: OutOpt,
) -> None:
    """Make a witness key file (Ed25519) and print its cosigner verifier key."""
    from coi.service.audit import WitnessError, new_witness_key

    try:
        wk = new_witness_key(name, output)
    except WitnessError as e:
        fail(str(e), EXIT_USAGE)
    typer.echo(wk.verifier_key)


@app.command("cosign")
def witness_cosign(
    checkpoint: Annotated[Path, typer.Argument(help="The new checkpoint (signed note file)")],
    key: Annotated[Path, typer.Option(help="The witness key file")],
    state: Annotated[Path, typer.Option(help="The witness's state file for this log")],
    log_key: Annotated[str, typer.Option("--log-key", help="The log's verifier key string")],
    output: OutOpt,
    proof: Annotated[Path | None, typer.Option(
        help="Consistency proof JSON from the accepted size (`coi prove consistency OLD NEW`)")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Cosign a checkpoint if it extends the last one accepted; refuse (exit 1) a rewrite."""
    refuse_existing(force, output)
    from coi.service.audit import (
        LedgerError,
        WitnessError,
        WitnessRefusal,
        check_verifier_key,
        cosign,
        load_witness_key,
    )
    from coi.service.files import write_atomically

    # Bounded first: a key or state file is small; /dev/zero or a huge file is refused at once.
    read_bounded(key, MAX_JSON_TEXT, "witness key file")
    if state.exists():
        read_bounded(state, MAX_JSON_TEXT, "witness state file")
    try:
        check_verifier_key(log_key)
        wk = load_witness_key(key)
        offered = decode_utf8(read_bounded(checkpoint, MAX_CHECKPOINT_BYTES, "checkpoint"),
                              f"checkpoint {checkpoint}")
        proof_obj = (json_object(decode_utf8(read_bounded(proof, MAX_JSON_TEXT, "proof"),
                                             f"proof {proof}"), f"proof {proof}", "{...}")
                     if proof else None)
    except VerificationError as e:
        fail(f"--log-key: {e.reason}", EXIT_USAGE)
    except (OSError, UnicodeDecodeError, ValueError, WitnessError) as e:
        fail(str(e), EXIT_USAGE)
    try:
        cosigned, cp = cosign(state, wk, offered, log_key, proof_obj, int(time.time()))
    except WitnessRefusal as e:
        fail(f"REFUSED: {e.reason}")
    except WitnessError as e:
        fail(str(e), EXIT_USAGE)
    except (VerificationError, LedgerError, ValueError) as e:
        fail(f"not cosigned: {e}")
    with errors():
        write_atomically(output, cosigned.encode("utf-8"), overwrite=force)
    typer.echo(f"cosigned the checkpoint of {cp.size} entries as {inert(wk.name)}: {output}")
