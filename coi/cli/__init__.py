"""The ``coi`` command line: one Typer app per command group (``*_cmd``), registered in
:mod:`coi.cli.main`; shared options, password input and exit codes in :mod:`coi.cli.common`.
It calls the service (``coi.service``) only."""
