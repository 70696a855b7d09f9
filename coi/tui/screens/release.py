"""Release or reject a product with an e-signature (QA only; the service decides).

The gate's state is shown before signing. Signing is always possible to attempt: if the signer
may not release (wrong role, gate not met, separation of duties) the service refuses, records the
refusal, and this screen shows why, in red, until acknowledged.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Button, Footer, Header, Input, Static

from coi.service.errors import Refused
from coi.service.views import release_blockers
from coi.tui.base import CoiScreen, serialized
from coi.tui.screens.alert import AlertScreen
from coi.tui.text import line, show

KINDS = {
    # kind: (step effect or name, field, field title, meaning)
    "release": ("qa_release", "certificate_id", "Certificate of analysis id", "released"),
    "reject": ("qa_reject", "grounds", "Grounds for rejection", "rejected"),
}


class ReleaseScreen(CoiScreen):
    """``ReleaseScreen(coi, "release" | "reject")``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "sign", "Sign", priority=True),
    ]

    def __init__(self, coi: str, kind: str = "release") -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        self.coi = coi
        self.kind = kind
        self.result_index: int | None = None
        self.refused: Refused | None = None

    def compose(self) -> ComposeResult:
        step, _field, title, meaning = KINDS[self.kind]
        yield Header()
        with Vertical(id="release-box"):
            head = Text(f"QA {self.kind}: ", style="bold")
            head.append_text(show(self.coi, "bold cyan"))
            yield Static(head)
            yield Static("Checking the release gate…", id="release-gate")
            yield Input(placeholder=title, id="release-field")
            yield Input(placeholder=f"your password (signs as {meaning})", password=True,
                        id="release-password")
            yield Button(f"Sign: {self.kind}  (ctrl+s)", id="release-sign",
                         variant="success" if self.kind == "release" else "error")
            yield Static("", id="release-result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#release-field", Input).focus()
        self.load_gate()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gate")
    @serialized
    def load_gate(self) -> None:
        svc = self.coi_app.svc
        user = self.coi_app.session.user or ""
        if self.kind == "release":
            reasons = release_blockers(svc, self.coi, user)
        else:
            from coi.service.views import precheck

            reasons = precheck(svc, KINDS[self.kind][0], self.coi, user=user, item=None)
        self.app.call_from_thread(self.show_gate, reasons)

    def show_gate(self, reasons: list[str]) -> None:
        if self.result_index is not None:  # signed meanwhile: done() shows the new state
            return
        t = Text()
        if reasons:
            t.append(f"{self.kind.capitalize()} is blocked:\n", style="bold red")
            for r in reasons:
                t.append_text(line(f"  • {r}", "red"))
            t.append("Signing will be refused (and the refusal recorded).", style="italic")
        else:
            t.append(f"Gate met: you may {self.kind} this product.", style="bold green")
        self.query_one("#release-gate", Static).update(t)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "release-field":
            self.query_one("#release-password", Input).focus()
        else:
            self.action_sign()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "release-sign":
            self.action_sign()

    def action_sign(self) -> None:
        value = self.query_one("#release-field", Input).value.strip()
        password = self.query_one("#release-password", Input).value
        if not password:
            self.notify("Enter your password to sign.", severity="warning")
            self.query_one("#release-password", Input).focus()
            return
        self.query_one("#release-result", Static).update(Text("Signing…", style="bold"))
        self.sign(value, password)

    @work(thread=True, exclusive=True, exit_on_error=False, group="sign")
    @serialized
    def sign(self, value: str, password: str) -> None:
        app = self.coi_app
        step, field, _title, _meaning = KINDS[self.kind]
        try:
            actor = app.session.sign(password)
        except Refused as e:
            app.call_from_thread(self.signature_refused, e)
            return
        try:
            rec = app.svc.record(step, self.coi, actor=actor, fields={field: value})
        except Refused as e:
            app.call_from_thread(self.was_refused, e)
            return
        app.call_from_thread(self.done, rec.entry.index,
                             app.svc.local_time(rec.entry.statement.time_ms))

    def signature_refused(self, e: Refused) -> None:
        pw = self.query_one("#release-password", Input)
        pw.value = ""
        pw.focus()
        self.query_one("#release-result", Static).update(
            show("Signature refused: " + e.reason, "bold red"))

    def was_refused(self, e: Refused) -> None:
        self.refused = e
        self.query_one("#release-password", Input).value = ""
        msg = Text(f"REFUSED — not {KINDS[self.kind][3]}:\n", style="bold red")
        msg.append_text(show(e.reason, "red"))
        if e.recorded_index is not None:
            msg.append(f"\nThe refusal is recorded as entry {e.recorded_index}.")
        self.query_one("#release-result", Static).update(msg)
        self.app.push_screen(AlertScreen(f"{self.kind} refused", e.reason,
                                         recorded_index=e.recorded_index))
        self.load_gate()

    def done(self, index: int, when: str) -> None:
        self.result_index = index
        self.query_one("#release-password", Input).value = ""
        # The gate was about signing; after it, the screen says what the product now is.
        state = Text(f"{self.coi} is now {KINDS[self.kind][3]} (entry {index}).",
                     style="bold green" if self.kind == "release" else "bold red")
        self.query_one("#release-gate", Static).update(state)
        for field in self.query(Input).results(Input):
            field.disabled = True
        t = Text(f"✔ {KINDS[self.kind][3].upper()} as entry {index}\n", style="bold green")
        t.append_text(show(f"signed by {self.coi_app.display_name()} at {when}"))
        self.query_one("#release-result", Static).update(t)
        self.query_one("#release-sign", Button).disabled = True
