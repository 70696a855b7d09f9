"""The handle of a transaction in progress, as the layers above the database hold it.

The service never sees a connection: while an entry is appended it holds a ``Tx`` (given to
the entry builder and to the callbacks that write beside the entry) and passes it back to the
repository functions of ``coi.db``, so that what they write commits or rolls back with the
entry. Only ``coi.db`` looks inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine


class Tx:
    """A transaction in progress (opaque outside ``coi.db``)."""

    __slots__ = ("connection",)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection  # for coi.db's repository functions only


@contextmanager
def connection(engine: Engine, tx: Tx | None) -> Iterator[Connection]:
    """``tx``'s connection, or a new one (no transaction held) for the ``with`` block."""
    if tx is not None:
        yield tx.connection
        return
    with engine.connect() as conn:
        yield conn


@contextmanager
def write(engine: Engine) -> Iterator[Tx]:
    """A write transaction of its own, committed at the end of the ``with`` block."""
    with engine.connect().execution_options(coi_write=True) as conn, conn.begin():
        yield Tx(conn)
