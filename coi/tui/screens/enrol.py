"""Enrol a patient: a new Chain of Identity identifier, with only a keyed commitment in the ledger.

The patient identifier (typed, or scanned from the wristband), and the name and date of birth
that the bedside and the final label show, go sealed to the PHI store, never to the ledger
(21 CFR 1271.290); the service assigns the CoI identifier from the site's FIN and
records the enrolment signed by this person. Refusals are recorded by the service and shown in
red; the form keeps what was typed so it can be put right.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Static

from coi.service.errors import ConfigError, Refused
from coi.service.views import first_item
from coi.tui.base import CoiScreen, serialized
from coi.tui.text import line, refusal
from coi.tui.widgets.big_text import BigText

FIELDS = (
    ("patient", "Patient identifier (medical record number; scan the wristband or type it)"),
    ("name", "Patient's name (optional; sealed, shown at the bedside and on labels)"),
    ("dob", "Date of birth (optional; YYYY-MM-DD)"),
    ("site", "Treatment centre (e.g. A9999-HEMATOLOGY)"),
    ("slot", "Manufacturing slot booked"),
)
OPTIONAL = frozenset({"name", "dob"})


class EnrolScreen(CoiScreen):
    """The enrolment form; ctrl+s signs and records, then shows the new CoI identifier."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "sign", "Sign & enrol", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.enrolled: str | None = None
        self.entry_index: int | None = None
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="enrol-box"):
            yield Static(Text("Enrol a patient: a new chain of identity", style="bold"))
            for key, title in FIELDS:
                yield Label(title, classes="field-label")
                yield Input(id=f"enrol-{key}", compact=True)
            who = self.coi_app.display_name()
            yield Label(f"Your password (signs as {who}, authored)", classes="field-label")
            yield Input(password=True, id="enrol-password", compact=True)
            yield Static("", id="enrol-result")
            yield BigText(id="enrol-coi")
        with Horizontal(classes="actions"):  # outside the scroll: always in sight at 80x24
            yield Button("Sign and enrol  (ctrl+s)", id="enrol-sign", variant="success",
                         compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#enrol-patient", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "enrol-password":
            self.action_sign()
        else:
            self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "enrol-sign":
            self.action_sign()

    def value(self, key: str) -> str:
        return self.query_one(f"#enrol-{key}", Input).value.strip()

    def action_sign(self) -> None:
        if self.busy:
            return
        missing = [title.split(" (")[0] for key, title in FIELDS
                   if key not in OPTIONAL and not self.value(key)]
        password = self.query_one("#enrol-password", Input).value
        if missing or not password:
            self.say(Text("Fill in: " + ", ".join(missing + ([] if password else
                                                              ["your password"])),
                          style="bold yellow"))
            return
        self.busy = True
        self.say(Text("Signing…", style="bold"))
        patient = {"patient_id": self.value("patient"), "name": self.value("name"),
                   "date_of_birth": self.value("dob")}
        self.enrol({k: v for k, v in patient.items() if v}, self.value("site"),
                   self.value("slot"), password)

    def say(self, text: Text) -> None:
        self.query_one("#enrol-result", Static).update(text)

    @work(thread=True, exclusive=True, exit_on_error=False, group="enrol")
    @serialized
    def enrol(self, patient: dict[str, str], site: str, slot: str, password: str) -> None:
        app = self.coi_app
        svc = app.svc
        try:
            actor = app.session.sign(password)
            coi, rec = svc.enrol(actor=actor, patient=patient,
                                 treatment_site=site, manufacturing_slot=slot)
        except (Refused, ConfigError) as e:
            app.call_from_thread(self.refused, e)
            return
        st = rec.entry.statement
        signer = st.signers[0]
        app.call_from_thread(self.done, coi, rec.entry.index, signer.name,
                             svc.local_time(st.time_ms))

    def refused(self, e: Any) -> None:
        self.busy = False
        self.query_one("#enrol-password", Input).value = ""
        if isinstance(e, Refused):
            self.say(refusal("✗ Not enrolled: ", e.reason, e.recorded_index))
        else:
            self.say(refusal("✗ Not enrolled: ", str(e)))
        self.lock_if_signed_out()

    def label_command(self, coi: str) -> list[str] | None:
        """The ``coi label`` command that prints the first bag's label once it exists."""
        first = first_item(self.coi_app.svc.process())
        if first is None:
            return None
        url = self.coi_app.svc.ledger.db.url
        db = url.display
        if url.sqlite_path is not None:  # relative to here when it is below here: shorter
            path = Path(url.sqlite_path).resolve()
            db = str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
        item = first[1]
        return ["coi", "label", coi, "--item", item, "--format", "pdf",
                "-o", f"{coi}-{item}.pdf", "--as", self.coi_app.session.user or "", "--db", db]

    def next_steps(self, coi: str) -> list[str]:
        first = first_item(self.coi_app.svc.process())
        command = self.label_command(coi)
        if first is None or command is None:
            return ["  Next: record the first step of the process for this product."]
        step, item = first
        return [f"  Next: record '{step.title}' (it creates the bag {item}),",
                "  then print its label:", f"    {shlex.join(command)}"]

    def done(self, coi: str, index: int, name: str, when: str) -> None:
        self.busy = False
        self.enrolled, self.entry_index = coi, index
        for key, _title in FIELDS:  # the patient's identifier leaves the screen
            self.query_one(f"#enrol-{key}", Input).value = ""
        self.query_one("#enrol-password", Input).value = ""
        t = Text()
        t.append(f"✔ ENROLLED as entry {index}\n", style="bold green")
        t.append_text(line(f"  authored by {name} at {when}"))
        for text in self.next_steps(coi):
            t.append_text(line(text))
        self.say(t)
        big = self.query_one("#enrol-coi", BigText)
        big.show_text(coi, f"{coi}  ·  new chain of identity")
        self.query_one("#enrol-patient", Input).focus()
        self.call_after_refresh(big.scroll_visible, animate=False)
