"""The ``coi`` command: a thin Typer shell over the service layer.

This module owns the root Typer app and is the one place where the command groups are
registered. Each group is its own Typer app in its own ``*_cmd`` module and imports nothing
from here: the groups without a name are merged into ``coi`` itself (``coi init``,
``coi enrol`` …), the named ones become sub-commands (``coi user add`` …). The order below is
the order ``coi --help`` lists them in.

Every command has ``--help``. Exit codes: 0 success, 1 the thing checked is bad or the action
was refused (reason on stderr), 2 usage or configuration error.
"""

from __future__ import annotations

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
    prove_cmd,
    tui_cmd,
    user_cmd,
    validate_cmd,
    witness_cmd,
)

app = typer.Typer(
    name="coi",
    help="coi — chain-of-identity tracker for autologous cell therapy, on a signed, "
         "append-only, independently verifiable ledger.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
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
# Groups: coi user …, coi prove …, coi labels …, coi witness …, coi partner …, coi handoff ….
app.add_typer(user_cmd.app, name="user")
app.add_typer(prove_cmd.app, name="prove")
app.add_typer(labels_cmd.app, name="labels")
app.add_typer(witness_cmd.app, name="witness")
app.add_typer(partner_cmd.app, name="partner")
app.add_typer(handoff_cmd.app, name="handoff")


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
