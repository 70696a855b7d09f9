"""The error modal: what a failed worker raised, in words, inertly."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Button, Static

from coi.tui.base import CoiModal
from coi.tui.text import show


class ErrorScreen(CoiModal):
    """Shows one error; Enter or Escape closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.error_title = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Static(Text(self.error_title, style="bold"), id="error-title")
            yield Static(show(self.message), id="error-message")
            yield Button("Close", id="error-close", variant="error")

    def on_mount(self) -> None:
        self.query_one("#error-close", Button).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)
