"""What every coi screen shares: the one handler for failed workers (an error modal)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from coi.tui.app import CoiApp


class WorkerErrors:
    """Mixin: a worker that raised is shown in the error modal (never a crash, never silence)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.coi_app.show_error(event.worker.error)

    @property
    def coi_app(self) -> CoiApp:
        return cast("CoiApp", self.app)  # type: ignore[attr-defined]


class CoiScreen(WorkerErrors, Screen[Any]):
    """A full screen of the coi app."""


class CoiModal(WorkerErrors, ModalScreen[Any]):
    """A modal screen of the coi app."""
