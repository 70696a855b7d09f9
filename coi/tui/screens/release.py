"""Release or reject a product with an e-signature (QA only; the service decides).

The gate's state is shown before signing. Signing is always possible to attempt: if the signer
may not release (wrong role, gate not met, separation of duties) the service refuses, records the
refusal, and this screen shows why, in red, until acknowledged.

After an out-of-specification QC result the release is exceptional (``docs/process.md``): the
screen then shows the failed results and QA's dispositions of the OOS deviations, lists the
treating physician's exceptional release requests (printed name, local time, justification) to
pick from, and names the one picked in the release's ``physician_request``; the gate is checked
with that request.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Button, Footer, Header, Input, Select, Static

from coi.service.errors import Refused
from coi.service.release_views import (
    ExceptionalRelease,
    PhysicianRequest,
    exceptional_release,
)
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
        self.exceptional: ExceptionalRelease | None = None
        self.physician_request: int | None = None  # the request the release names, if any
        self._offered: tuple[int, ...] | None = None

    def compose(self) -> ComposeResult:
        step, _field, title, meaning = KINDS[self.kind]
        yield Header()
        with Vertical(id="release-box"):
            head = Text(f"QA {self.kind}: ", style="bold")
            head.append_text(show(self.coi, "bold cyan"))
            yield Static(head)
            yield Static("Checking the release gate…", id="release-gate")
            oos = Static("", id="release-oos")
            oos.display = False
            yield oos
            pick: Select[int] = Select([], id="release-request", allow_blank=True, compact=True,
                                       prompt="the physician's exceptional release request")
            pick.display = False
            yield pick
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
            ex = exceptional_release(svc, self.coi)
            named = self.physician_request
            if ex is not None and self._offered is None:
                named = ex.newest_usable()  # first look: the newest request QA may name
            reasons = release_blockers(svc, self.coi, user, named if ex is not None else None)
            self.app.call_from_thread(self.show_exceptional, ex, named)
        else:
            from coi.service.views import precheck

            reasons = precheck(svc, KINDS[self.kind][0], self.coi, user=user, item=None)
        self.app.call_from_thread(self.show_gate, reasons)

    def show_exceptional(self, ex: ExceptionalRelease | None, named: int | None) -> None:
        """The OOS picture and the physician's requests (hidden without an OOS result)."""
        if self.result_index is not None:
            return
        self.exceptional = ex
        box = self.query_one("#release-oos", Static)
        pick: Select[int] = self.query_one("#release-request", Select)
        box.display = pick.display = ex is not None
        if ex is None:
            self.physician_request = None
            return
        box.update(oos_text(ex))
        offered = tuple(r.index for r in ex.requests)
        self.physician_request = named
        if offered != self._offered:
            self._offered = offered
            pick.set_options([(request_text(r), r.index) for r in reversed(ex.requests)])
        if named is not None and named in offered:
            pick.value = named
        else:
            pick.clear()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "release-request" or self.result_index is not None:
            return
        value = event.value if isinstance(event.value, int) else None
        if value != self.physician_request:
            self.physician_request = value
            self.load_gate()

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
        fields = {field: value}
        if self.kind == "release" and self.exceptional is not None \
                and self.physician_request is not None:
            fields["physician_request"] = str(self.physician_request)
        try:
            rec = app.svc.record(step, self.coi, actor=actor, fields=fields)
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
        self.query_one("#release-request", Select).disabled = True
        t = Text(f"✔ {KINDS[self.kind][3].upper()} as entry {index}\n", style="bold green")
        t.append_text(show(f"signed by {self.coi_app.display_name()} at {when}"))
        named = self.physician_request if self.exceptional is not None else None
        request = next((r for r in self.exceptional.requests if r.index == named), None) \
            if self.exceptional is not None else None
        if request is not None:
            t.append("\nEXCEPTIONAL RELEASE", style="bold yellow")
            t.append_text(show(f" on the request of {request.name} ({request.user}), entry "
                               f"{request.index}, {request.when}: {request.justification}"))
        self.query_one("#release-result", Static).update(t)
        self.query_one("#release-sign", Button).disabled = True


def oos_text(ex: ExceptionalRelease) -> Text:
    """The failed results and QA's dispositions of the OOS deviations, for the release screen."""
    t = Text("Exceptional release: ", style="bold yellow")
    t.append("a QC result was out of specification; the release must name the treating "
             "physician's request.\n")
    for f in ex.failed:
        t.append_text(show(f"  ✗ {f.test} FAIL {f.value} (entry {f.index}"
                           + (f", retest of {f.retest_of})" if f.retest_of is not None else ")"),
                           "bold red"))
        t.append("\n")
    for d in ex.deviations:
        if d.disposition == "proceed":
            t.append_text(show(f"  ✓ OOS deviation {d.index}: QA disposition proceed", "green"))
        elif d.disposition is None:
            t.append_text(show(f"  • OOS deviation {d.index}: no QA disposition yet "
                               "(exceptional release needs 'proceed')", "bold red"))
        else:
            t.append_text(show(f"  • OOS deviation {d.index}: QA disposition {d.disposition} "
                               "(blocks release)", "bold red"))
        t.append("\n")
    if not ex.requests:
        t.append("No exceptional release request yet: the treating physician records one "
                 "(station 'Exceptional release request', F2).", style="bold red")
    elif not ex.usable():
        t.append("Every request came before the last OOS result: the physician must record a "
                 "new one.", style="bold red")
    else:
        t.append("The physician's request the release names:", style="bold")
    return t


def request_text(r: PhysicianRequest) -> Text:
    """One request as the list shows it: entry, printed name, time, justification."""
    note = "" if r.after_last_oos else "  (before the last OOS result: not accepted)"
    why = r.justification if len(r.justification) <= 40 else r.justification[:39] + "…"
    return show(f"entry {r.index} · {r.name} ({r.user}) · {r.when} · {why}{note}",
                "" if r.after_last_oos else "red")
