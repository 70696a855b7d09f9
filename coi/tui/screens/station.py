"""A scan station: one process step, recorded for each product scanned, signed on the spot.

Flow: scan the bag's label → the product in large type with its state, the expected next step
and the time left in its window → (receipt: the paperwork; bedside: the wristband) → the step's
fields → the password again (and a witness's when the step needs one) → the service records it
→ the entry's index. An unusable scan, a product not at this step, a second identifier that
does not match, or a refusal fills the screen in red, each recorded before the alert shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from coi.service.errors import Refused
from coi.service.labels import trust_problem
from coi.service.phi_views import identity_line
from coi.service.scans import LabelScan, Scan, ScanRefused, read_scan
from coi.service.steps import FieldSpec, StepSpec
from coi.service.views import (
    ScanTarget,
    arrival_problem,
    compare_second,
    expected_next,
    format_left,
    item_for_step,
    precheck,
    scan_target,
    scanned_values,
    station_steps,
    window_left,
    wristband_text,
)
from coi.tui.base import CoiScreen, serialized
from coi.tui.screens.alert import AlertScreen
from coi.tui.text import PROMPT_SECOND, field_hint, field_label, line, refusal, show
from coi.tui.widgets.big_text import BigText
from coi.tui.widgets.scan_input import ScanInput
from coi.tui.widgets.station_title import StationTitle


class StationPickScreen(CoiScreen):
    """The steps this person may record; Enter opens that station."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text("Pick the step this station records", style="bold"), classes="title")
        yield OptionList(id="station-list")
        yield Footer()

    def on_mount(self) -> None:
        menu = self.query_one("#station-list", OptionList)
        for step in station_steps(self.coi_app.svc.process(), self.coi_app.roles):
            extra = " · witness" if step.witness else ""
            menu.add_option(Option(Text(f"{step.title}  ({step.stage}{extra})"), id=step.name))
        menu.highlighted = 0
        menu.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.app.switch_screen(StationScreen(event.option.id))


@dataclass
class Timings:
    """How long the last round trip took, for the benchmark (milliseconds)."""

    scan_to_ready: float = 0.0
    signing: float = 0.0
    record: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


class StationScreen(CoiScreen):
    """Records one step. ``phase`` is "scan", "second", "fields" or "busy"."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "sign", "Sign", priority=True),
        Binding("escape", "cancel", "Cancel"),
        Binding("f6", "focus_scan", "Scan field"),
    ]

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step = step
        self.phase = "scan"
        self.target: ScanTarget | None = None
        self.first_raw = ""
        self.wristband: str | None = None
        self.paperwork: str | None = None
        self.scan_methods: dict[str, str] = {}  # "first"/"second" scan -> how it was entered
        self.timings = Timings()
        self.last_index: int | None = None
        self._t0 = 0.0
        self._held: ScanInput.Scanned | None = None

    @property
    def spec(self) -> StepSpec:
        spec = self.coi_app.svc.process().step(self.step)
        if spec is None:
            raise Refused(f"unknown step {self.step!r}")
        return spec

    def typed_fields(self) -> list[FieldSpec]:
        return [f for f in self.spec.fields.values() if not f.scanned]

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        spec = self.spec
        yield Header()
        who = self.coi_app.display_name()
        yield StationTitle(spec.title, who, self.step,
                           self.coi_app.svc.arrivals_at(self.step, limit=StationTitle.SHOWN),
                           id="station-title")
        yield ScanInput(id="scan")
        with VerticalScroll(id="station-body"):
            yield BigText(id="identity")
            yield Static("", id="product-info")
            yield Static(Text(self.first_prompt()), id="prompt")
            with Vertical(id="form"):
                for f in self.typed_fields():
                    yield Label(field_label(f), classes="field-label")
                    if f.type == "enum":
                        yield Select([(v, v) for v in f.values], id=f"field-{f.name}",
                                     prompt=f"choose ({'required' if f.required else 'optional'})",
                                     allow_blank=True, compact=True)
                    else:
                        yield Input(id=f"field-{f.name}", placeholder=field_hint(f), compact=True)
                if spec.witness:
                    yield Label("Witness (a second person co-signs here)", classes="field-label")
                    with Horizontal(classes="pair"):
                        yield Input(placeholder="witness user id", id="witness-user", compact=True)
                        yield Input(placeholder="witness password", password=True,
                                    id="witness-password", compact=True)
                yield Label(f"Your password (signs as {who})", classes="field-label")
                yield Input(placeholder="password", password=True, id="password", compact=True)
            yield Static("", id="confirm")
        with Horizontal(classes="actions", id="station-actions"):  # always in sight at 80x24
            yield Button("Sign and record  (ctrl+s)", id="sign", variant="success", compact=True)
        yield Footer()

    def first_prompt(self) -> str:
        spec = self.spec
        what = ("the final product bag's label" if spec.item == "final" else
                "the collection bag's label" if spec.item == "collection" else
                "the product's label")
        return f"Scan {what} to record '{spec.title}'."

    def show_form(self, shown: bool) -> None:
        self.query_one("#form").display = shown
        self.query_one("#station-actions").display = shown

    def on_mount(self) -> None:
        self.show_form(False)
        self.query_one("#scan", ScanInput).focus()

    def on_screen_resume(self) -> None:
        self.query_one(StationTitle).refresh_arrivals()  # a hand-off received meanwhile
        if self.phase in ("scan", "second"):
            self.query_one("#scan", ScanInput).focus()

    def action_focus_scan(self) -> None:
        self.query_one("#scan", ScanInput).focus()

    # -- phase changes -----------------------------------------------------------------------
    def reset_station(self, *, keep_confirmation: bool = True) -> None:
        self.phase = "scan"
        self.target = None
        self.wristband = None
        self.paperwork = None
        self.scan_methods = {}
        self.first_raw = ""
        self.show_form(False)
        for inp in self.query("#form Input").results(Input):
            inp.value = ""
        for sel in self.query("#form Select").results(Select):
            sel.clear()
        self.query_one("#identity", BigText).update("")
        self.query_one("#product-info", Static).update("")
        self.query_one("#prompt", Static).update(Text(self.first_prompt()))
        if not keep_confirmation:
            self.query_one("#confirm", Static).update("")
        self.query_one("#scan", ScanInput).focus()

    def action_cancel(self) -> None:
        if self.phase == "scan":
            self.app.pop_screen()
        elif self.phase != "busy":
            self.reset_station(keep_confirmation=False)

    def take_held(self) -> None:
        """A scan that came while the station was busy, now that it is ready for one."""
        held, self._held = self._held, None
        if held is not None:
            self.scanned(held)

    def raise_alert(self, title: str, reason: str, *, scanned: str | None = None,
              recorded_index: int | None = None) -> None:
        if self._held is not None:
            self.notify("A scan that came while this one was refused was not used: scan it "
                        "again.", severity="warning")
            self._held = None
        self.reset_station(keep_confirmation=False)
        self.app.push_screen(AlertScreen(title, reason, scanned=scanned,
                                         recorded_index=recorded_index))

    # -- scans --------------------------------------------------------------------------------
    @on(ScanInput.Escaped)
    def escaped(self, event: ScanInput.Escaped) -> None:
        event.stop()
        self.action_cancel()

    @on(ScanInput.Scanned)
    def scanned(self, event: ScanInput.Scanned) -> None:
        event.stop()
        if self.phase == "busy":  # e.g. the wristband scanned while the bag is still loading:
            self._held = event  # taken as soon as the station is ready for it, never dropped
            return
        self._t0 = time.perf_counter()
        if self.phase == "second" and self.target is not None:
            self.second_scan(event.raw, event.method)
            return
        if self.phase == "fields":
            self.notify("Finish or cancel (Esc) this product before scanning the next.",
                        severity="warning")
            return
        self.query_one("#confirm", Static).update("")
        try:
            target = scan_target(read_scan(event.raw))
        except ScanRefused as e:
            self.refuse_scan(event.raw, "The scan cannot be used: " + e.reason, None)
            return
        if target is None:
            self.refuse_scan(event.raw, "This code names no product: scan the coi label on "
                             "the bag (or the CoI identifier's ISBT 128 barcode).", None)
            return
        self.phase = "busy"
        self.first_raw = event.raw
        self.scan_methods = {"first": event.method}
        self.load_product(target, event.raw, event.method)

    def second_scan(self, raw: str, method: str) -> None:
        assert self.target is not None
        kind = self.spec.second_scan
        self.scan_methods["second"] = method
        if kind == "wristband":
            if method == "typed":
                self.refuse_scan(raw, "The wristband must be scanned, not typed: identity at "
                                 "the bedside is checked by barcode.", self.target.coi)
                return
            self.wristband = wristband_text(raw)
            self.show_fields()
            return
        try:
            scan = read_scan(raw)
        except ScanRefused as e:
            self.refuse_scan(raw, "The paperwork scan cannot be used: " + e.reason,
                             self.target.coi)
            return
        mismatch = compare_second(self.target, kind or "", scan)
        if mismatch:
            self.refuse_scan(raw, "MISMATCH: " + mismatch, self.target.coi)
            return
        self.phase = "busy"
        self.check_paperwork(scan, raw, self.target.coi)

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    @serialized
    def check_paperwork(self, scan: Scan, raw: str, coi: str) -> None:
        """A signed paperwork label is verified like the bag's (the ledger is read here)."""
        untrusted = trust_problem(self.coi_app.svc, scan)
        if untrusted is not None:
            self.app.call_from_thread(self.refuse_scan, raw, "The paperwork scan cannot be "
                                      "trusted: " + untrusted, coi)
        else:
            self.app.call_from_thread(self.paperwork_accepted, scan)

    def paperwork_accepted(self, scan: Scan) -> None:
        self.paperwork = scan.label.item if isinstance(scan, LabelScan) else None
        self.show_fields()
        self.take_held()

    def refuse_scan(self, raw: str, reason: str, expected: str | None) -> None:
        self.phase = "busy"
        self.record_scan_refusal(raw, reason, expected)

    @work(thread=True, exclusive=True, exit_on_error=False, group="scan-refusal")
    @serialized
    def record_scan_refusal(self, raw: str, reason: str, expected: str | None) -> None:
        app = self.coi_app
        idx = app.svc.record_scan_refusal(station=self.step, by=app.session.user or "(nobody)",
                                          raw=raw, reason=reason, expected=expected)
        app.call_from_thread(self.raise_alert, "Scan refused", reason, scanned=raw,
                             recorded_index=idx)

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    @serialized
    def load_product(self, target: ScanTarget, raw: str, method: str) -> None:
        app = self.coi_app
        svc = app.svc
        spec = self.spec
        item = item_for_step(spec, target.item)
        reasons = precheck(svc, self.step, target.coi, user=app.session.user or "", item=item)
        untrusted = trust_problem(svc, read_scan(raw)) or arrival_problem(svc, self.step, target)
        if untrusted is not None:
            reasons = [untrusted]
        product = svc.chain().product(target.coi)
        info: dict[str, Any] = {
            "state": product.state if product else "not enrolled",
            "next": expected_next(svc.process(), product) if product else [],
            "window": window_left(svc, product, svc.clock.now_ms()),
            "custodian": product.custodian if product else None,
            "patient": identity_line(svc, target.coi) if spec.second_scan == "wristband" else None,
        }
        if reasons:
            reason = (f"'{spec.title}' cannot be recorded for {target.coi}"
                      f"{' ' + target.item if target.item else ''}: " + "; ".join(reasons))
            idx = svc.record_scan_refusal(station=self.step, by=app.session.user or "(nobody)",
                                          raw=raw, reason=reason, expected=target.coi)
            app.call_from_thread(self.raise_alert, "Not at this step", reason, scanned=raw,
                                 recorded_index=idx)
            return
        app.call_from_thread(self.show_product, target, info, method)

    def show_product(self, target: ScanTarget, info: dict[str, Any], method: str) -> None:
        self.target = target
        self.query_one("#identity", BigText).show_text(
            target.coi, f"{target.coi}  ·  item {target.item or '—'}  ·  {method}")
        t = Text()
        t.append("State: ", style="bold")
        t.append_text(show(info["state"]))
        t.append("   Next: ", style="bold")
        t.append_text(show(", ".join(info["next"]) or "—"))
        if info["window"] is not None:
            title, left = info["window"]
            t.append("\nWindow: ", style="bold")
            t.append_text(show(f"{title}: ", ""))
            t.append_text(show(format_left(left), "bold red" if left < 0 else
                               "yellow" if left < 6 * 3_600_000 else "green"))
        if info["custodian"]:
            t.append("   Custodian: ", style="bold")
            t.append_text(show(info["custodian"]))
        if info["patient"] is not None:  # the bedside: compare with the patient (PHI store)
            t.append("\nPatient: ", style="bold")
            t.append_text(show(info["patient"][0], "bold" if info["patient"][1] else "yellow"))
        if method == "typed":
            t.append("\nTyped by hand: check the label by eye.", style="yellow")
        self.query_one("#product-info", Static).update(t)
        self.timings.scan_to_ready = (time.perf_counter() - self._t0) * 1000
        kind = self.spec.second_scan
        if kind:
            self.phase = "second"
            self.query_one("#prompt", Static).update(Text(PROMPT_SECOND[kind], style="bold"))
            self.query_one("#scan", ScanInput).focus()
        else:
            self.show_fields()
        self.take_held()

    def show_fields(self) -> None:
        self.phase = "fields"
        self.query_one("#prompt", Static).update(
            Text("Fill in the fields, then your password; ctrl+s signs and records.",
                 style="bold"))
        form = self.query_one("#form")
        self.show_form(True)
        first = form.query("Input, Select").first()
        first.focus(scroll_visible=False)
        # Once the form is laid out, scroll only as far as its first field: the identity in
        # large type stays in sight while the fields are filled in.
        self.call_after_refresh(first.scroll_visible, animate=False)

    # -- signing ------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "password":
            self.action_sign()
        elif self.phase == "fields":
            self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "sign":
            self.action_sign()

    def collect(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        for f in self.typed_fields():
            widget = self.query_one(f"#field-{f.name}")
            if isinstance(widget, Select):
                value = "" if widget.is_blank() else str(widget.value)
            else:
                value = widget.value.strip() if isinstance(widget, Input) else ""
            if value or f.required:
                fields[f.name] = value
        if self.target is not None:
            fields.update(scanned_values(self.spec, self.target, paperwork=self.paperwork,
                                         wristband=self.wristband))
        return fields

    def entry_methods(self, fields: dict[str, str]) -> dict[str, str]:
        """How each scanned field's value was entered: "scanner" (a burst), "pasted" or
        "typed". The first scan fills the product's fields; the second, the wristband or the
        paperwork. This is the station's answer to "was it scanned?" for the service."""
        assert self.target is not None
        second = {"wristband", "paperwork"}
        return {name: self.scan_methods.get("second" if name in second else "first", "typed")
                for name in scanned_values(self.spec, self.target, paperwork=self.paperwork,
                                           wristband=self.wristband) if name in fields}

    def action_sign(self) -> None:
        if self.phase != "fields" or self.target is None:
            return
        password = self.query_one("#password", Input).value
        if not password:
            self.notify("Enter your password to sign.", severity="warning")
            self.query_one("#password", Input).focus()
            return
        witness: tuple[str, str] | None = None
        if self.spec.witness:
            wu = self.query_one("#witness-user", Input).value.strip()
            wp = self.query_one("#witness-password", Input).value
            if not wu or not wp:
                self.notify("This step needs a witness: their user id and password.",
                            severity="warning")
                self.query_one("#witness-user", Input).focus()
                return
            witness = (wu, wp)
        self.phase = "busy"
        self.query_one("#confirm", Static).update(Text("Signing…", style="bold"))
        fields = self.collect()
        self.record(self.target, fields, self.entry_methods(fields), password, witness)

    @work(thread=True, exclusive=True, exit_on_error=False, group="record")
    @serialized
    def record(self, target: ScanTarget, fields: dict[str, str], methods: dict[str, str],
               password: str, witness: tuple[str, str] | None) -> None:
        """Sign and record. ``methods`` says how each scanned field was entered (see
        ``entry_methods``): the one place it meets the service."""
        app = self.coi_app
        svc = app.svc
        t0 = time.perf_counter()
        try:
            actor = app.session.sign(password)
            wkey = svc.ledger.unlock(*witness) if witness else None
        except Refused as e:
            app.call_from_thread(self.signature_refused, e)
            return
        t1 = time.perf_counter()
        try:
            rec = svc.record(self.step, target.coi, actor=actor, witness=wkey,
                             item=item_for_step(self.spec, target.item), fields=fields,
                             entry_methods=methods)
        except Refused as e:
            app.call_from_thread(self.raise_alert, "Refused", e.reason, scanned=self.first_raw,
                                 recorded_index=e.recorded_index)
            return
        t2 = time.perf_counter()
        signers = [(s.name, s.meaning) for s in rec.entry.statement.signers]
        when = svc.local_time(rec.entry.statement.time_ms)
        app.call_from_thread(self.recorded, target, rec.entry.index, signers, when,
                             list(rec.auto_deviations), (t1 - t0) * 1000, (t2 - t1) * 1000)

    def signature_refused(self, e: Refused) -> None:
        self.phase = "fields"
        self.take_held()
        pw = self.query_one("#password", Input)
        pw.value = ""
        pw.focus()
        self.query_one("#confirm", Static).update(
            refusal("Signature refused: ", e.reason, e.recorded_index))
        self.lock_if_signed_out()

    def recorded(self, target: ScanTarget, index: int, signers: list[tuple[str, str]],
                 when: str, deviations: list[int], signing_ms: float, record_ms: float) -> None:
        self.last_index = index
        self.timings.signing, self.timings.record = signing_ms, record_ms
        self.timings.history.append({"scan_to_ready": self.timings.scan_to_ready,
                                     "record": record_ms})
        t = Text()
        t.append(f"✔ RECORDED as entry {index}\n", style="bold green")
        t.append_text(line(f"{self.spec.title} · {target.coi}"
                           f"{' · ' + target.item if target.item else ''}"))
        for name, meaning in signers:
            t.append_text(line(f"  {meaning} by {name}"))
        t.append_text(line(f"  at {when}"))
        for d in deviations:
            t.append(f"  Deviation opened automatically: entry {d}\n", style="bold yellow")
        self.reset_station()
        self.query_one("#confirm", Static).update(t)
        self.query_one(StationTitle).refresh_arrivals()  # the product taken in leaves the list
        self.take_held()
