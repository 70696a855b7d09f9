"""What a screen may ask of the app that hosts it, as a ``typing.Protocol``.

The screens, their base classes and the command palette need a few things from the coi app:
the service, the signing session, the lock that serialises service calls, the person's roles
and name, role-aware navigation, locking, and the one error handler. They see the app only
through :class:`CoiHost`, so nothing below :mod:`coi.tui.app` imports it (no cycle, not even
one for type checking); ``CoiApp`` implements the protocol, which mypy checks where the app is
defined.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from coi.service.chain import CoiService
from coi.service.session import SigningSession

R = TypeVar("R")


class CoiHost(Protocol):
    """The coi app as its screens see it (implemented by ``coi.tui.app.CoiApp``)."""

    @property
    def svc(self) -> CoiService:
        """The chain-of-identity service every screen works through."""
        ...

    @property
    def session(self) -> SigningSession:
        """The Part 11 signing session: who is logged in, and signing with their password."""
        ...

    @property
    def service_lock(self) -> AbstractContextManager[Any]:
        """Held around every service call made from a worker thread (see ``serialized``)."""
        ...

    @property
    def printer(self) -> str | None:
        """The station's label printer (``HOST[:PORT]`` or ``cups:QUEUE``), if configured."""
        ...

    @property
    def roles(self) -> frozenset[str]:
        """The logged-in person's roles (empty when nobody is)."""
        ...

    def display_name(self) -> str:
        """The logged-in person's printed name ("" when nobody is)."""
        ...

    def may(self, section: str) -> bool:
        """Whether the person may open a section (navigation only; the service decides)."""
        ...

    def logged_in(self, locked_user: str | None) -> None:
        """A login succeeded; ``locked_user`` is who the lock screen was waiting for, if any."""
        ...

    def action_lock(self) -> None:
        """Lock the station now: the session ends; the same person logs in to go on."""
        ...

    def action_correct(self, coi: str | None = None, index: int | None = None
                       ) -> Awaitable[None]:
        """Open the correction form, for an entry of a product when given."""
        ...

    def show_error(self, error: BaseException) -> None:
        """The one error handler: what a worker raised, in the error modal."""
        ...

    def call_from_thread(self, callback: Callable[..., R | Awaitable[R]], *args: Any,
                         **kwargs: Any) -> R:
        """Run ``callback`` on the UI thread (from a worker thread) and return its result."""
        ...
