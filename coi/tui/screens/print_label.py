"""Print a product's label on the station printer: signed (COS1), 4x2, ZPL, with an e-signature.

Opened with ``p`` on a product's page when the app was given a station printer
(``coi tui --printer HOST[:PORT]`` or ``--printer cups:QUEUE``). The person picks the bag, types
their password and signs; the service issues the label, sends it, and records it printed only
once the printer took every byte. A refusal or a printer failure shows in red (the label then
stays issued, not printed, as ``coi labels list`` shows).

A final product bag (``F`` item) gets the final-product label by default (``coi label …
--final``, ``docs/labels.md`` "Final-product labels"): ISBT 128, with the product name and code
(the site's settings, if any, filled in), the expiry, the storage temperature, and the
patient's name and date of birth, which the service takes from the PHI store, never from the
ledger. Everything is checked before anything is recorded.

The list ends with the product's next shipping document never labelled (``D00001``, …): the
paperwork that goes with a shipment gets its signed label here too.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Button, Checkbox, Footer, Header, Input, Label, Select, Static

from coi.service import labels as label_svc
from coi.service.errors import ConfigError, Refused
from coi.service.label_final import FinalLabel
from coi.tui.base import CoiScreen, serialized
from coi.tui.screens.alert import AlertScreen
from coi.tui.text import show

FINAL_FIELDS = (  # the final-product label's inputs: (name, title, what to type)
    ("expiry", "Expiry date", "YYYY-MM-DD"),
    ("product_name", "Product name", "e.g. CD19 CAR-T CELLS"),
    ("product_code", "ISBT 128 product code", "e.g. S1234100"),
    ("storage", "Storage temperature", "e.g. <= -150 C"),
)


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
            final = Checkbox("Final-product label (patient name, DOB: from the PHI store)",
                             True, id="print-final", compact=True)
            final.display = False
            yield final
            with Vertical(id="print-final-form"):
                for name, title, hint in FINAL_FIELDS:
                    yield Label(title, classes="field-label")
                    yield Input(placeholder=hint, id=f"print-{name}", compact=True)
            yield Input(placeholder="your password (signs the label's issue)", password=True,
                        id="print-password", compact=True)
            yield Button("Sign and print  (ctrl+s)", id="print-sign", variant="success",
                         compact=True)
            yield Static("", id="print-result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#print-final-form").display = False
        self.load_items()

    @work(thread=True, exclusive=True, exit_on_error=False, group="items")
    @serialized
    def load_items(self) -> None:
        svc = self.coi_app.svc
        items = label_svc.unlabelled_items(svc, self.coi, document=True)
        site = svc.site()
        defaults = {k: str(site.get(k) or "") for k in ("product_name", "product_code")}
        defaults["storage"] = FinalLabel("", "").storage
        self.app.call_from_thread(self.show_items, items, defaults)

    def show_items(self, items: list[str], defaults: dict[str, str]) -> None:
        for name, value in defaults.items():
            field = self.query_one(f"#print-{name}", Input)
            if not field.value:
                field.value = value
        select = self.query_one("#print-item", Select)
        select.set_options([(f"{i}  (shipping document)" if i.startswith("D") else i, i)
                            for i in items])
        if items:
            select.value = items[0]
        self.show_final()
        self.query_one("#print-password", Input).focus()

    def final_wanted(self) -> bool:
        """A final-product label: a final bag is picked and the box is ticked."""
        item = self.query_one("#print-item", Select).value
        return isinstance(item, str) and item.startswith("F") and self.query_one(
            "#print-final", Checkbox).value

    def show_final(self) -> None:
        item = self.query_one("#print-item", Select).value
        self.query_one("#print-final", Checkbox).display = isinstance(item, str) and \
            item.startswith("F")
        self.query_one("#print-final-form").display = self.final_wanted()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self.show_final()

    def on_checkbox_changed(self, _event: Checkbox.Changed) -> None:
        self.show_final()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "print-password":
            self.action_sign()
        else:
            self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "print-sign":
            self.action_sign()

    def action_sign(self) -> None:
        item = self.query_one("#print-item", Select).value
        password = self.query_one("#print-password", Input).value
        if not isinstance(item, str) or not password:
            self.notify("Pick the bag and enter your password to sign.", severity="warning")
            return
        final: dict[str, str] | None = None
        if self.final_wanted():
            final = {name: self.query_one(f"#print-{name}", Input).value.strip()
                     for name, _title, _hint in FINAL_FIELDS}
            missing = [title.lower() for name, title, _hint in FINAL_FIELDS if not final[name]]
            if missing:
                self.notify(f"A final-product label needs: {'; '.join(missing)}.",
                            severity="warning")
                return
        self.query_one("#print-result", Static).update(Text("Printing…", style="bold"))
        self.sign_and_print(item, password, final)

    @work(thread=True, exclusive=True, exit_on_error=False, group="print")
    @serialized
    def sign_and_print(self, item: str, password: str, final: dict[str, str] | None) -> None:
        app = self.coi_app
        try:
            actor = app.session.sign(password)
            to = label_svc.destination(*label_svc.station_printer(self.printer))
            facts = code = None
            if final is not None:  # checked (code, dates, text) before anything is recorded
                code = label_svc.parse_product_code(final["product_code"])
                facts = FinalLabel(final["product_name"], final["expiry"], final["storage"])
            new, _ = label_svc.issue_and_print(app.svc, actor, self.coi, item, "zpl", "4x2",
                                               None, final is not None, None,
                                               product_code=code, final=facts, signed=True,
                                               send_to=to)
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
