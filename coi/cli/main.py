"""The ``coi`` command: a thin Typer shell over the service layer.

This module owns the root Typer app and is the one place where the command groups are
registered. Each group is its own Typer app in its own ``*_cmd`` module and imports nothing
from here: the groups without a name are merged into ``coi`` itself (``coi init``,
``coi enrol`` …), the named ones become sub-commands (``coi user add`` …). The order below is
the order ``coi --help`` lists them in.

Every command has ``--help``. Exit codes: 0 success, 1 the thing checked is bad or the action
was refused (reason on stderr), 2 usage, configuration or a fault of the machine, 3 a bundle
checked only against its own key. Every failure is one ``coi:`` line, never a traceback: the
root group is :class:`coi.cli.failsafe.FailSafeGroup`. The command modules import the service
(and with it SQLAlchemy, cryptography, Textual, reportlab) only when a command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from coi.cli import (
    backup_cmd,
    chain_cmd,
    export_cmd,
    handoff_cmd,
    label_cmd,
    labels_cmd,
    ledger_cmd,
    partner_cmd,
    patient_cmd,
    prove_cmd,
    tui_cmd,
    user_cmd,
    validate_cmd,
    witness_cmd,
)
from coi.cli.failsafe import FailSafeGroup

app = typer.Typer(
    name="coi",
    cls=FailSafeGroup,
    help="coi — chain-of-identity tracker for autologous cell therapy, on a signed, "
         "append-only, independently verifiable ledger.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"coi {version('coi')}")
        except PackageNotFoundError:  # pragma: no cover - run from a source tree
            typer.echo("coi (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    _show_version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print coi's version and exit")
    ] = False,
) -> None:
    """coi — chain-of-identity tracker for autologous cell therapy, on a signed, append-only,
    independently verifiable ledger."""


# Merged into `coi` (no name): init, migrate, append, verify, checkpoint, log-key; label,
# parse; enrol, record, steps, show, status; export, verify-export, report; tui, demo;
# backup, restore; validate.
app.add_typer(ledger_cmd.app)
app.add_typer(label_cmd.app)
app.add_typer(chain_cmd.app)
app.add_typer(export_cmd.app)
app.add_typer(tui_cmd.app)
app.add_typer(backup_cmd.app)
app.add_typer(validate_cmd.app)
# Groups: coi user …, coi prove …, coi labels …, coi witness …, coi patient …, coi partner …,
# coi handoff ….
app.add_typer(user_cmd.app, name="user")
app.add_typer(prove_cmd.app, name="prove")
app.add_typer(labels_cmd.app, name="labels")
app.add_typer(witness_cmd.app, name="witness")
app.add_typer(patient_cmd.app, name="patient")
app.add_typer(partner_cmd.app, name="partner")
app.add_typer(handoff_cmd.app, name="handoff")


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
