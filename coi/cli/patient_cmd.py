"""``coi patient …``: a patient's identifiers in the PHI store — show them to the person
comparing a bag with the patient, or erase them (thin shells over
:class:`coi.service.chain.CoiService`).

The identifiers live sealed outside the ledger (``coi.service.phi``); the ledger holds only a
keyed commitment and still verifies after an erasure.
"""

from __future__ import annotations

from typing import Annotated

import typer

from coi.cli.common import (
    DbOpt,
    LogKeyOpt,
    PasswordFileOpt,
    WitnessPasswordFileOpt,
    errors,
    open_chain,
    unlock_user,
)
from coi.service.text import inert

app = typer.Typer(help="Show or erase a patient's identifiers (the PHI store).",
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})

PatientArg = Annotated[str, typer.Argument(
    metavar="PATIENT", help="The patient's Chain of Identity identifier (CoI)")]


@app.command("show")
def patient_show(
    patient: PatientArg,
    as_: Annotated[str, typer.Option("--as", help="Who is comparing the bag with the patient")],
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Name and date of birth of the patient, from the PHI store ("erased" once erased); for
    apheresis, manufacturing, treatment and physician staff only."""
    svc = open_chain(db, log_key)
    viewer = unlock_user(svc, as_, password_file)
    with errors():
        found = svc.show_patient(viewer, patient)
        if isinstance(found, str):
            typer.echo("name: erased")
            typer.echo("date of birth: erased")
        else:
            typer.echo(f"name: {inert(found.name)}")
            typer.echo(f"date of birth: {inert(found.date_of_birth)}")


@app.command("erase")
def patient_erase(
    patient: PatientArg,
    reason: Annotated[str, typer.Option(
        help="Why (recorded in the ledger; give the request's reference, not the patient's data)")],
    as_: Annotated[str, typer.Option("--as", help="The administrator erasing")],
    witness: Annotated[str, typer.Option(help="A second person who witnesses the erasure")],
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
    witness_password_file: WitnessPasswordFileOpt = None,
) -> None:
    """Destroy the patient's key: their identifiers can never be read again; the ledger still
    verifies."""
    svc = open_chain(db, log_key)
    admin = unlock_user(svc, as_, password_file)
    wkey = unlock_user(svc, witness, witness_password_file, "witness password")
    with errors():
        idx = svc.erase_patient(admin, patient, reason, witness=wkey)
        typer.echo(f"erased the identifiers of the patient of {inert(patient.strip().upper())} "
                   f"at entry {idx}")
