"""Shared pieces of the command line: options, password input, output escaping, exit codes.

Exit codes: 0 success; 1 the thing checked is bad or the action was refused; 2 usage or
configuration error. Diagnostics go to stderr. Everything that came from the database or from
a scan passes through ``inert`` before it reaches the terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from coi.service.chain import CoiService
from coi.service.errors import ConfigError, DatabaseUnreachable, Refused, VerificationError
from coi.service.ledger import LedgerService, Unlocked
from coi.service.text import inert

EXIT_BAD = 1
EXIT_USAGE = 2

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


def fail(message: str, code: int = EXIT_BAD) -> NoReturn:
    typer.echo(f"coi: {inert(message)}", err=True)
    raise typer.Exit(code)


_stdin: tuple[object, list[str]] | None = None  # (the stream read, its unread lines)


def read_password(path: Path | None, prompt: str) -> str:
    """A password from a file, from stdin ('-', one line per password asked), or a prompt."""
    global _stdin
    if path is None:
        if not sys.stdin.isatty():
            fail(f"{prompt}: no terminal to prompt on; use --password-file", EXIT_USAGE)
        return str(typer.prompt(prompt, hide_input=True))
    if str(path) == "-":
        # One password per line, in the order asked; read once per input stream (a second
        # invocation in the same process, e.g. from a test runner, gets its own stream).
        if _stdin is None or _stdin[0] is not sys.stdin:
            _stdin = (sys.stdin, sys.stdin.read().splitlines())
        lines = _stdin[1]
        if not lines:
            fail(f"{prompt}: standard input has no more password lines", EXIT_USAGE)
        return lines.pop(0)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        fail(f"cannot read password file {path}: {e.strerror}", EXIT_USAGE)
    lines = text.splitlines()
    if not lines or not lines[0]:
        fail(f"password file {path} is empty", EXIT_USAGE)
    return lines[0]


@contextmanager
def errors() -> Iterator[None]:
    """Turn the service layer's errors into a message on stderr and an exit code."""
    try:
        yield
    except Refused as e:
        extra = f" (recorded as entry {e.recorded_index})" if e.recorded_index is not None else ""
        fail(f"refused: {e.reason}{extra}")
    except VerificationError as e:
        fail(f"verification FAILED: {e}")
    except ConfigError as e:
        fail(str(e), EXIT_USAGE)
    except DatabaseUnreachable as e:
        fail(f"{e}; nothing was recorded by this command (check the server, then run it "
             "again)" if not e.maybe_committed else
             f"{e}; the entry may or may not have been recorded: look with `coi show` or "
             "`coi verify` before running the command again", EXIT_USAGE)


def open_ledger(db: str | None, log_key: str | None = None) -> LedgerService:
    """The ledger service for --db/--log-key (configuration errors exit 2)."""
    with errors():
        svc = LedgerService.open(db, log_key)
        svc.on_retry = _say_retrying
        return svc
    raise AssertionError  # pragma: no cover


def _say_retrying(message: str) -> None:
    typer.echo(f"coi: {message}", err=True)


def open_chain(db: str | None, log_key: str | None = None) -> CoiService:
    """The chain-of-identity service; the ledger must run the process this coi ships."""
    with errors():
        svc = CoiService.open(db, log_key)
        svc.ledger.on_retry = _say_retrying
        svc.process()
        return svc
    raise AssertionError  # pragma: no cover


def unlock_user(svc: LedgerService | CoiService, user: str, password_file: Path | None,
                what: str = "password") -> Unlocked:
    """A user's key, unlocked with their password (prompted, or from --password-file)."""
    ledger = svc.ledger if isinstance(svc, CoiService) else svc
    password = read_password(password_file, f"{what} for {user}")
    with errors():
        return ledger.unlock(user, password)
    raise AssertionError  # pragma: no cover


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=True, sort_keys=True))


def run_guarded(fn: Callable[[], None]) -> None:
    with errors():
        fn()
