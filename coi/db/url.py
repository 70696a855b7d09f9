"""The database a site uses: one typed value, parsed once from ``--db``, ``COI_DATABASE_URL`` or
the default, then passed to everything that opens the database.

Accepted: a file path (SQLite; made absolute), ``sqlite:///path``, ``postgresql://…`` or
``postgres://…`` (PostgreSQL through psycopg 3; ``postgresql+psycopg://…`` too). Anything else
is a ``ConfigError`` that says what was wrong and what to give instead: another database or
driver, an in-memory SQLite database (it would keep nothing), options on a SQLite URL, a URL
that does not parse, control characters. A password in the URL never reaches a message: the
value's ``display`` form (also its ``str`` and ``repr``) hides it.

``DatabaseUrl`` keeps what each user needs, worked out here once: SQLAlchemy's URL (the
engine), psycopg's connection parameters and the SQLite file (read by the verify workers, which
open the database with the driver alone), the database's name (the default log key file's).
This module imports no database library at import time: a verify worker unpickles the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SQLITE = "coi.db"
ENV_VAR = "COI_DATABASE_URL"
READ_ENV_VAR = "COI_READ_DATABASE_URL"
"""A streaming replica of the PostgreSQL primary, for reads that decide no move (review
lists, status, the timeline shown, exports)."""
_EXAMPLES = "give a SQLite file path (e.g. ./coi.db) or postgresql://user@host/dbname"
_PASSWORD = re.compile(r"(?P<head>://[^/@:]*:)[^/]*(?P<tail>@)")


class ConfigError(Exception):
    """The database URL or site configuration is unusable (exit code 2)."""


@dataclass(frozen=True)
class DatabaseUrl:
    """One database, parsed (see the module docstring). Build it with ``DatabaseUrl.parse``."""

    backend: str  # "sqlite" or "postgresql"
    display: str  # the URL with any password hidden: for messages
    driver_url: str = field(repr=False)  # SQLAlchemy's URL, password included
    sqlite_path: Path | None = None  # the SQLite file (absolute)
    database: str | None = None  # the database's name (PostgreSQL)
    connect_params: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """psycopg's keyword arguments (host, port, user, password, dbname, URL options)."""

    @classmethod
    def parse(cls, text: str | None, *, env: Mapping[str, str] | None = None) -> DatabaseUrl:
        """``--db``'s value (or, when it is empty, ``COI_DATABASE_URL``, else ``./coi.db``)."""
        if not text:
            text = (os.environ if env is None else env).get(ENV_VAR) or DEFAULT_SQLITE
        shown = redact(text)
        if not text.isprintable() or text != text.strip():
            raise ConfigError(f"the database {shown!r} holds control characters or surrounding "
                              f"spaces: {_EXAMPLES}")
        if "://" not in text:
            return cls._sqlite_file(text, shown)
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
            return cls._postgresql("postgresql+psycopg://" + rest, shown)
        if scheme.startswith("postgresql+"):
            raise ConfigError(f"{shown!r}: coi reaches PostgreSQL through psycopg 3 only; write "
                              "postgresql://user@host/dbname")
        if scheme == "sqlite":
            if "?" in rest:
                raise ConfigError(f"{shown!r}: options on a SQLite URL are not supported; give "
                                  "the file path alone")
            if not rest.startswith("/") or rest == "/":
                raise ConfigError(f"{shown!r} names no file: write sqlite:///path/to/coi.db or "
                                  "just the path")
            return cls._sqlite_file(rest[1:], shown)
        raise ConfigError(f"unsupported database {scheme[:40]!r} in {shown!r}: {_EXAMPLES}")

    @classmethod
    def _sqlite_file(cls, path_text: str, shown: str) -> DatabaseUrl:
        if path_text in ("", ":memory:"):
            raise ConfigError(f"{shown!r} is not a file: a ledger must be kept in a file; "
                              f"{_EXAMPLES}")
        try:
            path = Path(path_text).expanduser().resolve()
        except (OSError, RuntimeError, ValueError) as e:
            raise ConfigError(f"the database path {shown!r} cannot be used ({e})") from None
        url = f"sqlite:///{path}"
        return cls(backend="sqlite", display=url, driver_url=url, sqlite_path=path)

    @classmethod
    def _postgresql(cls, text: str, shown: str) -> DatabaseUrl:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            u = make_url(text)
            port = u.port  # a port that is not a number fails here
        except (ArgumentError, ValueError):
            raise ConfigError(f"{shown!r} is not a database URL: {_EXAMPLES}") from None
        params = {"host": u.host, "port": None if port is None else str(port),
                  "user": u.username, "password": u.password, "dbname": u.database}
        for k, v in u.query.items():
            params[k] = v if isinstance(v, str) else ",".join(v)
        return cls(backend="postgresql", display=u.render_as_string(hide_password=True),
                   driver_url=u.render_as_string(hide_password=False), database=u.database,
                   connect_params=tuple((k, str(v)) for k, v in params.items() if v is not None))

    def with_database(self, name: str) -> DatabaseUrl:
        """The same PostgreSQL server and credentials, another database (a scratch copy)."""
        from sqlalchemy.engine import make_url

        if self.backend != "postgresql":
            raise ConfigError("only a PostgreSQL URL names a database on a server")
        return DatabaseUrl.parse(make_url(self.driver_url).set(database=name)
                                 .render_as_string(hide_password=False))

    def __str__(self) -> str:
        return self.display


def redact(text: str) -> str:
    """``text`` with the password of a ``scheme://user:password@host`` URL shown as ``***``."""
    return _PASSWORD.sub(r"\g<head>***\g<tail>", text, count=1)
