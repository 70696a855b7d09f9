"""The service layer's errors; front ends map them to exit codes and messages.

``Refused`` (exit 1): the action is not allowed and nothing was changed (the refusal itself may
have been recorded). ``ConfigError`` (exit 2): the site, database or an argument is unusable.
``VerificationError`` (exit 1) comes from the ledger core unchanged. ``DatabaseUnreachable``
(exit 2): the database server could not be reached (appends wait for it a bounded time first).
"""

from __future__ import annotations

from coi.db.errors import DatabaseUnreachable
from coi.db.url import ConfigError
from coi.ledger.errors import VerificationError


class Refused(Exception):
    """An action was refused; ``reason`` says why in words for the person at the keyboard."""

    def __init__(self, reason: str, *, recorded_index: int | None = None) -> None:
        self.reason = reason
        self.recorded_index = recorded_index
        super().__init__(reason)


__all__ = ["ConfigError", "DatabaseUnreachable", "Refused", "VerificationError"]
