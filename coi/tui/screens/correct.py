"""Correct an entry: a new signed record that names the entry, gives a reason and the new values.

21 CFR Part 11 / Annex 11: a correction never obscures the original. The original entry stays in
the ledger and on the timeline ("corrected by N"); the correction is a separate entry signed by
this person. The form shows each correctable field of the entry with its value as it stands;
only the fields changed here are sent. The service (the domain's rules) decides whether the
correction may be recorded — who may correct what, fields that decide state or identity cannot be
corrected, QC results must still agree with their values — and records a refusal.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Static

from coi.service.errors import Refused
from coi.service.views import CorrectionTarget, correction_target
from coi.tui.base import CoiScreen, serialized
from coi.tui.text import line, refusal, show

TIME_HINT = "local time with its offset, e.g. 2026-01-31T09:30+01:00"


class CorrectionScreen(CoiScreen):
    """``CorrectionScreen(coi=None, index=None)``: Enter on the entry number loads its fields."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "sign", "Sign & record", priority=True),
    ]

    def __init__(self, coi: str | None = None, index: int | None = None) -> None:
        super().__init__()
        self.coi, self.index = coi, index
        self.target: CorrectionTarget | None = None
        self.recorded: int | None = None
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="correct-box"):
            yield Static(Text("Correct an entry (the original stays visible)", style="bold"))
            with Horizontal(classes="pair"):
                yield Input(self.coi or "", placeholder="CoI identifier", id="correct-coi",
                            compact=True)
                yield Input("" if self.index is None else str(self.index),
                            placeholder="entry number (Enter loads it)", id="correct-index",
                            compact=True)
            yield Static("", id="correct-target")
            yield Vertical(id="correct-fields")
            yield Label("Reason for the correction", classes="field-label")
            yield Input(id="correct-reason", compact=True)
            yield Label(f"Your password (signs as {self.coi_app.display_name()})",
                        classes="field-label")
            yield Input(password=True, id="correct-password", compact=True)
            yield Static("", id="correct-result")
        with Horizontal(classes="actions"):  # outside the scroll: always in sight at 80x24
            yield Button("Sign and record the correction  (ctrl+s)", id="correct-sign",
                         variant="warning", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        if self.coi and self.index is not None:
            self.load(self.coi, self.index)
            self.query_one("#correct-reason", Input).focus()
        else:
            self.query_one("#correct-coi" if not self.coi else "#correct-index", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("correct-coi", "correct-index"):
            self.request_load()
        elif event.input.id == "correct-password":
            self.action_sign()
        else:
            self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "correct-sign":
            self.action_sign()

    def say(self, text: Text) -> None:
        self.query_one("#correct-result", Static).update(text)

    def request_load(self) -> None:
        coi = self.query_one("#correct-coi", Input).value.strip()
        raw = self.query_one("#correct-index", Input).value.strip()
        if not coi or not raw.isdigit() or len(raw) > 15:
            self.say(Text("Give the CoI identifier and the entry number (digits) from the "
                          "product's timeline.", style="bold yellow"))
            return
        self.load(coi, int(raw))

    @work(thread=True, exclusive=True, exit_on_error=False, group="correct-load")
    @serialized
    def load(self, coi: str, index: int) -> None:
        try:
            target = correction_target(self.coi_app.svc, coi, index)
        except Refused as e:
            self.app.call_from_thread(self.not_loaded, e.reason)
            return
        self.app.call_from_thread(self.loaded, target)

    def not_loaded(self, reason: str) -> None:
        self.target = None
        self.query_one("#correct-fields", Vertical).remove_children()
        self.query_one("#correct-target", Static).update("")
        self.say(show("✗ " + reason, "bold red"))

    def loaded(self, target: CorrectionTarget) -> None:
        self.target = target
        self.say(Text(""))
        head = Text()
        head.append(f"Entry {target.index}: ", style="bold")
        head.append_text(show(f"{target.step.title} · {target.coi}", "bold cyan"))
        if target.corrected_by:
            earlier = ", ".join(map(str, target.corrected_by))
            head.append_text(show(f"  (corrected before by {earlier})", "yellow"))
        self.query_one("#correct-target", Static).update(head)
        box = self.query_one("#correct-fields", Vertical)
        box.remove_children()
        widgets: list[Any] = []
        readable = target.shown or tuple(current for _spec, current in target.fields)
        for (spec, current), now in zip(target.fields, readable, strict=True):
            timestamp = spec.type == "timestamp"
            unit = f" [{spec.unit}]" if spec.unit and not timestamp else ""
            widgets.append(Label(show(f"{spec.title}{unit} — now: {now or '—'}"),
                                 classes="field-label"))
            widgets.append(Input(current, id=f"fix-{spec.name}", compact=True,
                                 placeholder=TIME_HINT if timestamp else ""))
        box.mount_all(widgets)

    def changes(self) -> dict[str, str]:
        assert self.target is not None
        out: dict[str, str] = {}
        for spec, current in self.target.fields:
            new = self.query_one(f"#fix-{spec.name}", Input).value.strip()
            if new != current:
                out[spec.name] = new
        return out

    def action_sign(self) -> None:
        if self.busy:
            return
        if self.target is None:
            self.say(Text("Load the entry first: its CoI and number, then Enter.",
                          style="bold yellow"))
            return
        changes = self.changes()
        reason = self.query_one("#correct-reason", Input).value.strip()
        password = self.query_one("#correct-password", Input).value
        problems = ([] if changes else ["change at least one value"]) + \
                   ([] if reason else ["give the reason"]) + \
                   ([] if password else ["enter your password"])
        if problems:
            self.say(Text("To record a correction: " + "; ".join(problems) + ".",
                          style="bold yellow"))
            return
        self.busy = True
        self.say(Text("Signing…", style="bold"))
        self.record(self.target, changes, reason, password)

    @work(thread=True, exclusive=True, exit_on_error=False, group="correct")
    @serialized
    def record(self, target: CorrectionTarget, changes: dict[str, str], reason: str,
               password: str) -> None:
        app = self.coi_app
        svc = app.svc
        step = svc.process().step_with_effect("correction")
        assert step is not None
        try:
            actor = app.session.sign(password)
            rec = svc.record(step.name, target.coi, actor=actor,
                             fields={"corrects": str(target.index), "reason": reason, **changes})
        except Refused as e:
            app.call_from_thread(self.refused, e)
            return
        st = rec.entry.statement
        app.call_from_thread(self.done, rec.entry.index, st.signers[0].name,
                             svc.local_time(st.time_ms), sorted(changes))

    def refused(self, e: Refused) -> None:
        self.busy = False
        self.query_one("#correct-password", Input).value = ""
        self.say(refusal("✗ Correction refused: ", e.reason, e.recorded_index))
        self.lock_if_signed_out()

    def done(self, index: int, name: str, when: str, changed: list[str]) -> None:
        self.busy = False
        self.recorded = index
        self.query_one("#correct-password", Input).value = ""
        t = Text()
        t.append(f"✔ CORRECTION RECORDED as entry {index}\n", style="bold green")
        assert self.target is not None
        t.append_text(line(f"  corrects entry {self.target.index} ({', '.join(changed)}); "
                           "the original stays on the timeline"))
        t.append_text(line(f"  authored by {name} at {when}"))
        self.say(t)
