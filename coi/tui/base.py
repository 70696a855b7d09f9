"""What every coi screen shares: the one handler for failed workers (an error modal), the
host app seen through :class:`coi.tui.host.CoiHost`, and ``serialized`` for service calls."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from coi.tui.host import CoiHost


class WorkerErrors:
    """Mixin: a worker that raised is shown in the error modal (never a crash, never silence)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.coi_app.show_error(event.worker.error)

    def lock_if_signed_out(self) -> None:
        """After a refused signature: a session that ended (lockout, timeout) locks the app."""
        if self.coi_app.session.user is None:
            self.coi_app.action_lock()

    @property
    def coi_app(self) -> CoiHost:
        """The app hosting this screen, as the screens see it (:class:`CoiHost`)."""
        return cast(CoiHost, self.app)  # type: ignore[attr-defined]


class CoiScreen(WorkerErrors, Screen[Any]):
    """A full screen of the coi app."""


class CoiModal(WorkerErrors, ModalScreen[Any]):
    """A modal screen of the coi app."""


P = ParamSpec("P")
R = TypeVar("R")


def serialized(fn: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
    """Run a worker's body under the app's service lock.

    The service caches the chain state and key registry in memory and catches them up on
    demand; two threads doing that at once would corrupt them, so the TUI's workers take turns
    (each call is short; the UI thread never waits on this lock).
    """

    def wrapper(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.app.service_lock:
            return fn(self, *args, **kwargs)

    functools.update_wrapper(wrapper, fn)
    return wrapper
