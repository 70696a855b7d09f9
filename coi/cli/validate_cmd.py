"""``coi validate``: qualify this installation and write the evidence (a thin shell over
:mod:`coi.service.validation`). Its Typer app is merged into ``coi`` itself.

Exit codes: 0 every requirement passed (PASSED); 1 a requirement or an installation check did not
pass, or only some requirements were run (FAILED, PARTIAL); 2 usage or configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coi.cli.common import (
    EXIT_BAD,
    DbOpt,
    LogKeyOpt,
    PasswordFileOpt,
    errors,
    open_ledger,
    unlock_user,
)
from coi.service.text import inert

app = typer.Typer()


@app.command()
def validate(
    output: Annotated[Path, typer.Option("-o", "--output",
                                         help="A new folder for validation.json and .pdf")],
    tests: Annotated[Path | None, typer.Option(
        help="The tests/ folder of this coi release [default: the source checkout's]")] = None,
    postgres: Annotated[str | None, typer.Option(
        help="A PostgreSQL server the PostgreSQL tests may create scratch databases on")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Run only the tests of this requirement (repeatable): a PARTIAL "
                       "validation")] = None,
    sign_as: Annotated[str | None, typer.Option(
        help="E-sign the result as this user (meaning: reviewed), a ledger entry of the site")
    ] = None,
    password_file: PasswordFileOpt = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
) -> None:
    """Installation and operational qualification of this coi: checks the installation, runs
    the tests that prove each requirement on scratch ledgers (never the site's own), and writes
    validation.json and validation.pdf."""
    with errors():
        from coi.service.validation import sign
        from coi.service.validation import validate as run

        v = run(output, db=db, log_key=log_key, tests=tests, postgres=postgres,
                only=only or ())
        passed = sum(r["outcome"] == "passed" for r in v.report["requirements"])
        typer.echo(f"{v.result}: {inert(v.report['summary'])}")
        typer.echo(f"{passed} of {len(v.report['requirements'])} requirements passed")
        for d in v.report["deviations"]:
            typer.echo(f"deviation: {inert(d)}")
        typer.echo(f"wrote {inert(str(v.json_path))} (sha256 {v.sha256}) and "
                   f"{inert(str(v.pdf_path))}")
        if sign_as is not None:
            svc = open_ledger(db, log_key)
            reviewer = unlock_user(svc, sign_as, password_file)
            index = sign(svc, v, reviewer)
            typer.echo(f"signed by {inert(sign_as)} (reviewed) as entry {index}")
    if v.result != "PASSED":
        raise typer.Exit(EXIT_BAD)
