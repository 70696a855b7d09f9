"""The red alert: a mismatch or a refusal fills the screen and must be acknowledged.

Its Acknowledge button is armed only after a short delay, so the Enter that ends a scanner's
burst (or the next scan arriving) cannot dismiss it unseen.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Button, Static

from coi.tui.base import CoiModal
from coi.tui.text import show

ARM_DELAY_S = 0.6


class AlertScreen(CoiModal):
    """A full-screen red alert; dismissed (with None) only by acknowledging it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "nothing", show=False, priority=True),
    ]

    def __init__(self, title: str, reason: str, *, scanned: str | None = None,
                 recorded_index: int | None = None) -> None:
        super().__init__()
        self.alert_title = title
        self.reason = reason
        self.scanned = scanned
        self.recorded_index = recorded_index

    def compose(self) -> ComposeResult:
        with Vertical(id="alert-box"):
            yield Static(Text("⚠  " + self.alert_title.upper(), style="bold"), id="alert-title")
            yield Static(show(self.reason), id="alert-reason")
            if self.scanned is not None:
                yield Static(Text("Scanned: ").append_text(show(self.scanned)),
                             id="alert-scanned")
            recorded = (f"This refusal is recorded in the ledger as entry {self.recorded_index}."
                        if self.recorded_index is not None else
                        "Nothing was recorded.")
            yield Static(recorded, id="alert-recorded")
            yield Button("Acknowledge", id="alert-ack", variant="default", disabled=True)

    def on_mount(self) -> None:
        self.set_timer(ARM_DELAY_S, self.arm)

    def arm(self) -> None:
        ack = self.query_one("#alert-ack", Button)
        ack.disabled = False
        ack.focus()

    def action_nothing(self) -> None:
        """Escape does not dismiss an alert: it must be acknowledged."""

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "alert-ack":
            self.dismiss(None)
