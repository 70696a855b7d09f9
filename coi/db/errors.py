"""The storage adapter's own error, importable without a database library."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (no import at run time: coi --help reads this module and stays light)
    from coi.ledger.entry import SignedEntry


class DatabaseUnreachable(Exception):
    """The database server could not be reached, or the connection to it was lost.

    ``maybe_committed``: the connection was lost while a transaction was being committed, so it
    may or may not have been: the caller must look (an entry by its hash) before it tries again.
    """

    def __init__(self, detail: str, *, maybe_committed: bool = False,
                 entry: SignedEntry | None = None) -> None:
        self.detail = detail
        self.maybe_committed = maybe_committed
        self.entry = entry  # the entry that was being appended, when it had been built
        super().__init__(f"database unreachable: {detail}")
