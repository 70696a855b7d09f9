"""Shared pieces of the command line: options, opening the site, unlocking a signer.

Exit codes (:mod:`coi.cli.failsafe`, which turns every failure into one ``coi:`` line): 0
success; 1 the thing checked is bad or the action was refused; 2 usage, configuration or a fault
of the machine; 3 a bundle verified only against its own key (``--trust-bundle-key``).
Diagnostics go to stderr. Everything that came from the database or from a scan passes through
``inert`` before it reaches the terminal. Input files are read by :mod:`coi.cli.inputs`.

Nothing here imports a database, crypto or UI library at import time: ``coi --help`` must stay
fast, so each command imports the service it uses when it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coi.cli.failsafe import EXIT_BAD, EXIT_UNPINNED, EXIT_USAGE, errors, fail, note_database
from coi.cli.inputs import read_password

if TYPE_CHECKING:
    from coi.service.chain import CoiService
    from coi.service.ledger import LedgerService, Unlocked

__all__ = ["EXIT_BAD", "EXIT_UNPINNED", "EXIT_USAGE", "DbOpt", "ForceOpt", "LogKeyOpt",
           "PasswordFileOpt", "WitnessPasswordFileOpt", "b64", "echo_json", "errors", "fail",
           "open_chain", "open_ledger", "read_password", "refuse_existing", "require_existing",
           "run_guarded", "unlock_user"]

DbOpt = Annotated[
    str | None,
    typer.Option("--db", envvar="COI_DATABASE_URL", show_envvar=True,
                 help="Database: a SQLite file path or postgresql://user@host/dbname "
                      "[default: ./coi.db]"),
]
LogKeyOpt = Annotated[
    str | None,
    typer.Option("--log-key", envvar="COI_LOG_KEY", show_envvar=True,
                 help="The site's log key file [default: beside the SQLite file, <db>.logkey]"),
]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option("--password-file", help="Read the signer's password from this file ('-' = stdin)"),
]
WitnessPasswordFileOpt = Annotated[
    Path | None,
    typer.Option("--witness-password-file",
                 help="Read the witness's password from this file ('-' = stdin)"),
]

ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the file if it exists")]


def refuse_existing(force: bool, *paths: Path | None) -> None:
    """An output file that exists is replaced only with --force, and its folder must exist
    (usage errors, checked before any work starts)."""
    for p in paths:
        if p is not None and not force and (p.exists() or p.is_symlink()):
            fail(f"{p} exists; nothing was written: choose another file, or add --force to "
                 "replace it", EXIT_USAGE)
        if p is not None and not p.parent.is_dir():
            fail(f"folder {p.parent} does not exist; nothing was written: create it, or choose "
                 f"another path for {p.name}", EXIT_USAGE)


def require_existing(db: str | None, *, must_exist: bool = True) -> None:
    """Refuse a SQLite file that is not there: only ``coi init`` creates a ledger (a read
    command, or a typo in --db, must not leave an empty database behind)."""
    from coi.service.site import Site

    with errors():
        url = Site.resolve(db).db
    note_database(url.sqlite_path)
    if must_exist and url.sqlite_path is not None and not url.sqlite_path.exists():
        fail(f"no ledger at {url.sqlite_path}: the file does not exist; check --db (or "
             "COI_DATABASE_URL), or run `coi init` first to create a ledger", EXIT_USAGE)


def open_ledger(db: str | None, log_key: str | None = None, *, create: bool = False
                ) -> LedgerService:
    """The ledger service for --db/--log-key (configuration errors exit 2); the SQLite file
    must exist unless ``create``."""
    from coi.service.ledger import LedgerService

    require_existing(db, must_exist=not create)
    with errors():
        svc = LedgerService.open(db, log_key)
        svc.on_retry = _say_retrying
        return svc
    raise AssertionError  # pragma: no cover


def _say_retrying(message: str) -> None:
    typer.echo(f"coi: {message}", err=True)


def open_chain(db: str | None, log_key: str | None = None) -> CoiService:
    """The chain-of-identity service; the ledger must run the process this coi ships."""
    from coi.service.chain import CoiService

    require_existing(db)
    with errors():
        svc = CoiService.open(db, log_key)
        svc.ledger.on_retry = _say_retrying
        svc.process()
        return svc
    raise AssertionError  # pragma: no cover


def unlock_user(svc: LedgerService | CoiService, user: str, password_file: Path | None,
                what: str = "password") -> Unlocked:
    """A user's key, unlocked with their password (prompted, or from --password-file)."""
    from coi.service.chain import CoiService

    ledger = svc.ledger if isinstance(svc, CoiService) else svc
    password = read_password(password_file, f"{what} for {user}")
    with errors():
        return ledger.unlock(user, password)
    raise AssertionError  # pragma: no cover


def b64(raw: bytes) -> str:
    """A hash as checkpoints and proofs show it (standard base64)."""
    import base64

    return base64.b64encode(raw).decode("ascii")


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=True, sort_keys=True))


def run_guarded(fn: Callable[[], None]) -> None:
    with errors():
        fn()
