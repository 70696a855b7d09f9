"""Print a product's label on the station printer: signed (COS1), 4x2, ZPL, with an e-signature.

Opened with ``p`` on a product's page when the app was given a station printer
(``coi tui --printer HOST[:PORT]`` or ``--printer cups:QUEUE``). The person picks the bag, types
their password and signs; the service issues the label, sends it, and records it printed only
once the printer took every byte. A refusal or a printer failure shows in red (the label then
stays issued, not printed, as ``coi labels list`` shows).
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Button, Footer, Header, Input, Select, Static

from coi.service import labels as label_svc
from coi.service.errors import ConfigError, Refused
from coi.tui.base import CoiScreen, serialized
from coi.tui.screens.alert import AlertScreen
from coi.tui.text import show


class PrintLabelScreen(CoiScreen):
    """``PrintLabelScreen(coi, printer)``: print one bag's signed label on ``printer``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "sign", "Sign and print", priority=True),
    ]

    def __init__(self, coi: str, printer: str) -> None:
        super().__init__()
        self.coi = coi
        self.printer = printer
        self.result: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="print-box"):
            head = Text("Print a signed label: ", style="bold")
            head.append_text(show(self.coi, "bold cyan"))
            head.append_text(show(f"  on {self.printer}"))
            yield Static(head)
            yield Select([], id="print-item", prompt="bag to label", allow_blank=True,
                         compact=True)
            yield Input(placeholder="your password (signs the label's issue)", password=True,
                        id="print-password", compact=True)
            yield Button("Sign and print  (ctrl+s)", id="print-sign", variant="success",
                         compact=True)
            yield Static("", id="print-result")
        yield Footer()

    def on_mount(self) -> None:
        self.load_items()

    @work(thread=True, exclusive=True, exit_on_error=False, group="items")
    @serialized
    def load_items(self) -> None:
        items = label_svc.unlabelled_items(self.coi_app.svc, self.coi)
        self.app.call_from_thread(self.show_items, items)

    def show_items(self, items: list[str]) -> None:
        select = self.query_one("#print-item", Select)
        select.set_options([(i, i) for i in items])
        if items:
            select.value = items[0]
        self.query_one("#print-password", Input).focus()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_sign()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "print-sign":
            self.action_sign()

    def action_sign(self) -> None:
        item = self.query_one("#print-item", Select).value
        password = self.query_one("#print-password", Input).value
        if not isinstance(item, str) or not password:
            self.notify("Pick the bag and enter your password to sign.", severity="warning")
            return
        self.query_one("#print-result", Static).update(Text("Printing…", style="bold"))
        self.sign_and_print(item, password)

    @work(thread=True, exclusive=True, exit_on_error=False, group="print")
    @serialized
    def sign_and_print(self, item: str, password: str) -> None:
        app = self.coi_app
        try:
            actor = app.session.sign(password)
            to = label_svc.destination(*label_svc.station_printer(self.printer))
            new, _ = label_svc.issue_and_print(app.svc, actor, self.coi, item, "zpl", "4x2",
                                               None, False, None, signed=True, send_to=to)
        except (Refused, ConfigError) as e:
            app.call_from_thread(self.refused, e)
            return
        app.call_from_thread(self.done, new)

    def refused(self, e: Refused | ConfigError) -> None:
        self.query_one("#print-password", Input).value = ""
        recorded = e.recorded_index if isinstance(e, Refused) else None
        reason = e.reason if isinstance(e, Refused) else str(e)
        self.query_one("#print-result", Static).update(show("NOT PRINTED: " + reason,
                                                            "bold red"))
        self.app.push_screen(AlertScreen("Label not printed", reason, recorded_index=recorded))

    def done(self, label: str) -> None:
        self.result = label
        self.query_one("#print-password", Input).value = ""
        t = Text("✔ PRINTED ", style="bold green")
        t.append_text(show(f"label {label} on {self.printer}: apply it, then confirm by "
                           "scanning it"))
        self.query_one("#print-result", Static).update(t)
        self.load_items()
