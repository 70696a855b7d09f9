"""The one place where a command's failure becomes one ``coi:`` line and an exit code.

Every command runs inside :class:`FailSafeGroup` (the root ``coi`` group), so nothing a person
types, no file they point at and no fault of the disk ends in a Python traceback:

- ``Refused`` (a move, a scan, a login the rules do not allow; usually recorded in the ledger)
  and a failed verification exit 1;
- anything wrong with what was given (``ConfigError``, an unreadable or damaged database, a
  file that is not what it should be, input nested too deeply) exits 2 with what was wrong and
  what to do;
- a fault of the machine (disk full, I/O error, read-only file system) exits 2 saying that
  nothing was recorded (the database rolled the write back) and what to do;
- a bug exits 2 too, with a one-line summary; ``COI_DEBUG=1`` shows the traceback.

Exceptions are recognised by class and by module name, so that this module imports no database
library (``coi --help`` stays fast).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from coi.service.text import inert

EXIT_BAD = 1
EXIT_USAGE = 2
EXIT_UNPINNED = 3

_FAULT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}
_NOT_RECORDED = "nothing was recorded"
_FULL = ("database or disk is full", "no space left", "disk quota")
_IO = ("disk i/o error", "input/output error", "readonly database", "read-only file system")
_DAMAGED = ("file is not a database", "malformed", "not a database", "file is encrypted")


_database_file: list[Path] = []  # the SQLite file this command opened (for a fault's message)


def note_database(path: Path | None) -> None:
    """Remember the SQLite file the command works on: an I/O error there is told as a full
    disk when its file system has no space left (SQLite reports both as a disk I/O error)."""
    _database_file[:] = [path] if path is not None else []


def _disk_full() -> bool:
    for path in _database_file:
        try:
            return shutil.disk_usage(path.parent).free < 256 * 1024
        except OSError:
            return False
    return False


def fail(message: str, code: int = EXIT_BAD) -> NoReturn:
    """Print ``coi: message`` (made inert) on stderr and exit with ``code``."""
    typer.echo(f"coi: {inert(message)}", err=True)
    raise typer.Exit(code)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (a driver's error under SQLAlchemy's, its cause)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        orig = getattr(cur, "orig", None)
        cur = orig if isinstance(orig, BaseException) else (cur.__cause__ or cur.__context__)


def _text(exc: BaseException) -> str:
    """The first line of the innermost message (SQLAlchemy appends SQL and a link)."""
    for e in _chain(exc):
        orig = getattr(e, "orig", None)
        if isinstance(orig, BaseException):
            continue
        first = str(e).strip().splitlines()
        return first[0][:300] if first else type(e).__name__
    return type(exc).__name__  # pragma: no cover


def _is_db_error(exc: BaseException) -> bool:
    mod = type(exc).__module__ or ""
    return mod.split(".")[0] in ("sqlalchemy", "sqlite3", "psycopg", "alembic")


def explain(exc: BaseException) -> tuple[str, int]:
    """What to tell the person at the keyboard about ``exc``, and the exit code."""
    from coi.service.errors import ConfigError, DatabaseUnreachable, Refused, VerificationError

    if isinstance(exc, DatabaseUnreachable):
        if exc.maybe_committed:
            return (f"{exc}: the entry may or may not have been recorded; look with `coi show` "
                    "or `coi verify` before running the command again"), EXIT_USAGE
        return (f"{exc}: {_NOT_RECORDED}; check the server (and --db), then run the command "
                "again"), EXIT_USAGE
    if isinstance(exc, Refused):
        extra = (f" (recorded as entry {exc.recorded_index})"
                 if exc.recorded_index is not None else "")
        return f"refused: {exc.reason}{extra}", EXIT_BAD
    if isinstance(exc, VerificationError):
        return f"verification FAILED: {exc}", EXIT_BAD
    if isinstance(exc, ConfigError):
        return str(exc), EXIT_USAGE
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in _FAULT_ERRNOS:
            return _fault(e.strerror or str(e)), EXIT_USAGE
    if _is_db_error(exc) or any(_is_db_error(e) for e in _chain(exc)):
        return _database(_text(exc)), EXIT_USAGE
    if isinstance(exc, RecursionError):
        return ("the input is nested too deeply to be read: give a flat JSON object "
                "(no deeper than 16 levels)"), EXIT_USAGE
    if isinstance(exc, UnicodeError):
        return f"the input is not UTF-8 text ({exc}): save it as UTF-8 and try again", EXIT_USAGE
    if isinstance(exc, MemoryError):
        return "the input is too large to be read: give a smaller file", EXIT_USAGE
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return (f"cannot read or write{where}: {exc.strerror or exc}: check the path and its "
                "permissions"), EXIT_USAGE
    return (f"internal error ({type(exc).__name__}: {str(exc)[:200]}); run `coi verify` to "
            "check the ledger and report this (COI_DEBUG=1 shows the details)"), EXIT_USAGE


def _fault(detail: str) -> str:
    low = detail.lower()
    if any(s in low for s in _FULL) or _disk_full():
        return (f"the disk is full ({detail}): {_NOT_RECORDED}; free space on the disk that "
                "holds the database (and its -wal file), then try again")
    return (f"input/output error ({detail}): {_NOT_RECORDED}; check the disk and its mount, "
            "then run `coi verify` before trying again")


def _database(detail: str) -> str:
    low = detail.lower()
    if any(s in low for s in _FULL + _IO):
        return _fault(detail)
    if any(s in low for s in _DAMAGED):
        return (f"the database is damaged or is not a coi ledger ({detail}): check --db; a "
                "damaged ledger is restored from a backup with `coi restore`")
    if "locked" in low or "busy" in low:
        return (f"the database is busy ({detail}): {_NOT_RECORDED}; try again when the other "
                "writer has finished")
    if "unable to open" in low:
        return (f"cannot open the database ({detail}): check --db, the file's permissions and "
                "its folder")
    if "connection" in low or "could not" in low or "server" in low:
        return (f"cannot reach the database server ({detail}): {_NOT_RECORDED}; check the "
                "URL given to --db and that the server is up")
    return (f"database error ({detail}): {_NOT_RECORDED}; check --db and run `coi verify`")


def _passes_through(exc: BaseException) -> bool:
    """Typer's own exits, usage errors and aborts keep their handling; so does a closed pipe."""
    if (type(exc).__module__ or "").startswith("typer"):
        return True
    return isinstance(exc, OSError) and exc.errno == errno.EPIPE


def report(exc: BaseException) -> NoReturn:
    if os.environ.get("COI_DEBUG"):
        raise exc
    message, code = explain(exc)
    fail(message, code)


@contextmanager
def errors() -> Iterator[None]:
    """Turn an error inside the block into its ``coi:`` line now (commands that print part of
    their output first use it; everything else reaches :class:`FailSafeGroup`)."""
    try:
        yield
    except Exception as e:
        if _passes_through(e):
            raise
        report(e)


class FailSafeGroup(TyperGroup):
    """The root group: any exception a command lets out becomes one ``coi:`` line."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as e:
            if _passes_through(e):
                raise
            report(e)
