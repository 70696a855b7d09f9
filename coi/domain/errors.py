"""The domain's errors, in a module that imports nothing else of the domain.

Every other module of :mod:`coi.domain` may import this one, so no two of them need each other
for an exception type (which is how ``isbt``, ``payload`` and ``scan`` once formed a cycle):

* :class:`ScanError` — a scan coi cannot use (``isbt`` and ``payload`` raise it, or a subclass);
* :class:`ProcessError` — a process definition that cannot be used;
* :class:`ReplayError` — a ledger fact that does not follow the process it was recorded under,
  a :class:`~coi.ledger.errors.VerificationError` naming the entry.
"""

from __future__ import annotations

from coi.ledger.errors import VerificationError

__all__ = ["ProcessError", "ReplayError", "ScanError"]


class ScanError(ValueError):
    """A scan coi cannot use. ``reason`` says what was wrong and what to do, in one or two
    sentences for the person at the scan station."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ProcessError(ValueError):
    """The process definition is not usable; the message names the file and the key at fault."""


class ReplayError(VerificationError):
    """A ledger fact does not follow the process definition it was recorded under."""
