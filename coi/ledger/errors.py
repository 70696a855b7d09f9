"""The ledger's errors: one small tree, one type for every verification failure."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger core raises on purpose."""


class ProfileError(LedgerError, ValueError):
    """A value does not fit coi's strict JSON profile (see docs/ledger-format.md, section 2)."""


class KeyError_(LedgerError):
    """A private key could not be unwrapped (wrong password or damaged key file)."""


class VerificationError(LedgerError):
    """Something checked is not what it claims to be.

    ``index`` names the first bad ledger index where there is one (None for a checkpoint, a proof
    or a bundle as a whole); ``reason`` says what is wrong in words a person understands.
    """

    def __init__(self, reason: str, *, index: int | None = None) -> None:
        self.reason = reason
        self.index = index
        where = f"entry {index}: " if index is not None else ""
        super().__init__(f"{where}{reason}")
