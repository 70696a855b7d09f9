"""Part 11 signing sessions: who is signing at a station, and when they must prove it again.

Rules (21 CFR 11.200(a)): the first signing of a continuous session takes the user id and the
password; later signings in the same session take the password; after ``idle_timeout_s`` without
activity the session is closed and both are needed again. Every password check goes through
``LedgerService.unlock``, so failures are counted, locked out after five, and recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from coi.ledger.clock import Clock
from coi.service.errors import Refused
from coi.service.ledger import LedgerService, Unlocked

DEFAULT_IDLE_TIMEOUT_S = 15 * 60


@dataclass
class SigningSession:
    ledger: LedgerService
    clock: Clock
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    user: str | None = None
    _key: Unlocked | None = None
    _last: float = 0.0

    @property
    def active(self) -> bool:
        return self._key is not None and not self.expired()

    def expired(self) -> bool:
        return self._key is not None and self.clock.monotonic() - self._last > self.idle_timeout_s

    def login(self, user: str, password: str) -> Unlocked:
        """The first signing: user id and password."""
        key = self.ledger.unlock(user.strip(), password)
        self.user, self._key, self._last = key.user, key, self.clock.monotonic()
        return key

    def sign(self, password: str) -> Unlocked:
        """A later signing in the same session: the password again, within the idle timeout."""
        if self._key is None or self.user is None:
            raise Refused("no one is logged in: enter your user id and password")
        if self.expired():
            self.logout()
            raise Refused("the session timed out: enter your user id and password again")
        key = self.ledger.unlock(self.user, password)
        self._key, self._last = key, self.clock.monotonic()
        return key

    def touch(self) -> None:
        """Activity at the station (a scan, a key press) keeps the session alive."""
        if self.active:
            self._last = self.clock.monotonic()

    def logout(self) -> None:
        self.user, self._key = None, None

    @property
    def roles(self) -> frozenset[str]:
        if self.user is None:
            return frozenset()
        return self.ledger.registry().roles_of(self.user)
