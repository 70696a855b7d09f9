"""Export an audit bundle from the audit screen: a product, a period or the whole ledger.

The scope is checked here as typed (``coi.service.exporting``: the CoI identifier through the
domain parser, dates in the site's time zone); the export runs in a thread worker with a
progress bar (``exporting.prepare_export`` under the service lock, then ``ExportJob.run``
without it). An existing file is replaced only after the person confirms it. On success the
screen shows the file, its SHA-256, the log key and the exact ``coi verify-export`` command an
auditor runs offline; on failure what was wrong and what to do. The service refuses roles that
may not export, whatever this screen shows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import (
    Button,
    Checkbox,
    Footer,
    Header,
    Input,
    ProgressBar,
    RadioButton,
    RadioSet,
    Static,
)
from textual.worker import get_current_worker

from coi.service import exporting
from coi.service.errors import ConfigError, Refused
from coi.service.exporting import EmptyScope, ExportError, ExportResult, OutputExists, Scope
from coi.tui.base import CoiModal, CoiScreen, serialized
from coi.tui.text import line, show

MODES = ("coi", "period", "all")


class _Cancelled(Exception):
    """The screen went away while its export ran: stop (the writer leaves no file)."""


def may_export(roles: frozenset[str]) -> bool:
    return bool(roles & exporting.EXPORT_ROLES)


class ConfirmOverwrite(CoiModal):
    """``ConfirmOverwrite(paths)`` → True to replace the files, False to keep them."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "keep", "Keep the file")]

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self.paths = paths

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text("This file already exists", style="bold"), id="confirm-title")
            t = Text()
            for p in self.paths:
                t.append_text(line(p))
            t.append("Replace it with the new export? The old file is lost.")
            yield Static(t, id="confirm-message")
            with Horizontal(id="confirm-buttons"):
                yield Button("Keep it  (esc)", id="confirm-keep", variant="primary")
                yield Button("Replace it", id="confirm-replace", variant="error")

    def on_mount(self) -> None:
        self.query_one("#confirm-keep", Button).focus()

    def action_keep(self) -> None:
        self.dismiss(False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-replace")


class ExportScreen(CoiScreen):
    """The export form; ``ctrl+s`` exports. ``result`` / ``error`` hold the last outcome."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "export", "Export", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tz = "UTC"
        self.allowed = False
        self.busy = False
        self.result: ExportResult | None = None
        self.error: str | None = None
        self._auto_path = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="export-box"):
            yield Static(Text("A signed bundle that anyone can verify offline with the site's "
                              "log key."), classes="hint")
            with RadioSet(id="export-scope"):
                yield RadioButton("One product", value=True, id="scope-coi")
                yield RadioButton("A period", id="scope-period")
                yield RadioButton("Whole ledger", id="scope-all")
            with Horizontal(id="export-product", classes="export-row"):
                yield Static("Product", classes="export-label")
                yield Input(placeholder="CoI identifier (CHA999926000001) or scan the label",
                            id="export-coi")
            with Vertical(id="export-period"):
                with Horizontal(classes="export-row"):
                    yield Static("Period", classes="export-label")
                    yield Input(placeholder="from YYYY-MM-DD", id="export-since")
                    yield Input(placeholder="until YYYY-MM-DD (included)", id="export-until")
                yield Static("", id="export-tz")
            with Horizontal(classes="export-row"):
                yield Static("File", classes="export-label")
                yield Input(placeholder="the bundle file to write", id="export-path")
            with Horizontal(id="export-actions"):
                yield Checkbox("HTML report beside it", id="export-html")
                yield Button("Export  (ctrl+s)", id="export-go", variant="primary",
                             disabled=True)
            yield ProgressBar(id="export-progress", show_eta=False)
            yield Static("", id="export-result")
            yield Button("Copy the verify command", id="export-copy")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#export-progress", ProgressBar).display = False
        self.query_one("#export-copy", Button).display = False
        self._show_mode()
        self.refresh_default()
        self.query_one("#export-coi", Input).focus()
        self.load_site()

    @work(thread=True, exclusive=True, exit_on_error=False, group="export-site")
    @serialized
    def load_site(self) -> None:
        app = self.coi_app
        tz = app.svc.ledger.genesis_tz
        self.app.call_from_thread(self.ready, tz, may_export(app.roles))

    def ready(self, tz: str, allowed: bool) -> None:
        self.tz, self.allowed = tz, allowed
        zone = Text("In the site's time zone, ")
        zone.append_text(show(tz, "bold"))
        self.query_one("#export-tz", Static).update(zone)
        self.refresh_default()
        self.query_one("#export-go", Button).disabled = not allowed
        if not allowed:
            self._fail("Your roles may not export the ledger: exporting needs the auditor, qa "
                       "or admin role. Ask an administrator.")

    # -- the form -------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        index = self.query_one("#export-scope", RadioSet).pressed_index
        return MODES[index] if 0 <= index < len(MODES) else "coi"

    def _show_mode(self) -> None:
        self.query_one("#export-product", Horizontal).display = self.mode == "coi"
        self.query_one("#export-period", Vertical).display = self.mode == "period"

    def on_radio_set_changed(self, _event: RadioSet.Changed) -> None:
        self._show_mode()
        self.refresh_default()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("export-coi", "export-since", "export-until"):
            self.refresh_default()

    def _draft_scope(self) -> Scope:
        """The scope as far as it can be read yet (for the default file name)."""
        try:
            return self._scope()
        except ConfigError:
            return Scope(self.mode)

    def refresh_default(self) -> None:
        """Keep the file name in step with the scope, unless the person typed their own."""
        path = self.query_one("#export-path", Input)
        name = exporting.default_name(self._draft_scope(), self.tz,
                                      self.coi_app.svc.clock.now_ms())
        if path.value in ("", self._auto_path):
            self._auto_path = name
            path.value = name

    def _scope(self) -> Scope:
        if self.mode == "coi":
            return exporting.product_scope(self.query_one("#export-coi", Input).value)
        if self.mode == "period":
            since = self.query_one("#export-since", Input).value.strip()
            until = self.query_one("#export-until", Input).value.strip()
            if not since or not until:
                raise ConfigError("enter both dates of the period (from and until, YYYY-MM-DD)")
            scope = exporting.period_scope(since, until, self.tz)
            assert scope.since_ms is not None and scope.until_ms is not None
            if scope.since_ms >= scope.until_ms:
                raise ConfigError(f"the period ends ({until}) before it starts ({since}): "
                                  "swap the dates")
            return scope
        return Scope("all")

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_export()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-go":
            self.action_export()
        elif event.button.id == "export-copy" and self.result is not None:
            self.app.copy_to_clipboard(self.result.verify_command)
            self.notify("The verify command is on the clipboard.")

    # -- exporting ------------------------------------------------------------------------------
    def action_export(self, overwrite: bool = False) -> None:
        if self.busy:
            return
        if not self.allowed:
            self._fail("Your roles may not export the ledger: exporting needs the auditor, qa "
                       "or admin role. Ask an administrator.")
            return
        try:
            scope = self._scope()
        except ConfigError as e:
            self._fail(f"{e} Nothing was written.",
                       "#export-coi" if self.mode == "coi" else "#export-since")
            return
        text = self.query_one("#export-path", Input).value.strip()
        if not text:
            self._fail("Enter the file to write.", "#export-path")
            return
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        html = (exporting.report_path(path)
                if self.query_one("#export-html", Checkbox).value else None)
        self.busy = True
        self.result, self.error = None, None
        self.query_one("#export-copy", Button).display = False
        self.query_one("#export-go", Button).disabled = True
        self.query_one("#export-result", Static).update(Text("Exporting…", style="bold"))
        bar = self.query_one("#export-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self.run_export(scope, path, html, overwrite)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def run_export(self, scope: Scope, path: Path, html: Path | None, overwrite: bool) -> None:
        app = self.coi_app
        worker = get_current_worker()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if worker.is_cancelled:
                raise _Cancelled
            now = time.monotonic()
            if done == total or now - last[0] > 0.1:
                last[0] = now
                app.call_from_thread(self.step, done, total)

        try:
            with app.service_lock:  # the checkpoint and the caches; the rows need no lock
                job = exporting.prepare_export(app.svc.ledger, scope, path,
                                               by=app.session.user or "", overwrite=overwrite,
                                               html=html)
            result = job.run(progress)
        except _Cancelled:
            return
        except OutputExists:
            app.call_from_thread(self.ask_overwrite, [p for p in (path, html)
                                                      if p is not None and p.exists()])
            return
        except (ExportError, Refused, ConfigError) as e:
            app.call_from_thread(self._fail, self._explain(e, scope))
            return
        app.call_from_thread(self.done, result)

    def _explain(self, e: Exception, scope: Scope) -> str:
        if isinstance(e, Refused):
            return f"Refused: {e.reason}. Ask an administrator for the auditor or qa role."
        if isinstance(e, EmptyScope):
            if scope.mode == "coi":
                return (f"No entry in this ledger is about product {scope.coi}. Check the "
                        "identifier (or scan the product's label). Nothing was written.")
            if scope.mode == "period":
                since = self.query_one("#export-since", Input).value.strip()
                until = self.query_one("#export-until", Input).value.strip()
                return (f"No entry was recorded from {since} to {until} ({self.tz}). Choose "
                        "another period. Nothing was written.")
            return "The ledger holds no entry to export. Nothing was written."
        if isinstance(e, ExportError):
            return (f"{e}. Nothing was written: choose a folder that exists and that you may "
                    "write to, and export again.")
        return f"{e}. Nothing was written."

    def step(self, done: int, total: int) -> None:
        if not self.is_attached:
            return
        self.query_one("#export-progress", ProgressBar).update(total=total, progress=done)

    def ask_overwrite(self, paths: list[Path]) -> None:
        if not self.is_attached:
            return
        self._idle()
        self.query_one("#export-progress", ProgressBar).display = False
        self.query_one("#export-result", Static).update(Text(""))

        def answer(replace: bool | None) -> None:
            if replace:
                self.action_export(overwrite=True)
            else:
                self._fail("The existing file was kept. Choose another file name to export.",
                           "#export-path")

        self.app.push_screen(ConfirmOverwrite(paths), answer)

    def _idle(self) -> None:
        self.busy = False
        self.query_one("#export-go", Button).disabled = not self.allowed

    def _fail(self, message: str, focus: str | None = None) -> None:
        if not self.is_attached:
            return
        self._idle()
        self.error = message
        self.query_one("#export-progress", ProgressBar).display = False
        t = Text()
        t.append("✗ NOT EXPORTED\n", style="bold red")
        t.append_text(show(message, "red"))
        self.query_one("#export-result", Static).update(t)
        if focus is not None:
            self.query_one(focus, Input).focus()

    def done(self, r: ExportResult) -> None:
        if not self.is_attached:
            return
        self._idle()
        self.result = r
        s = r.summary
        self.query_one("#export-progress", ProgressBar).update(total=s.tree_size,
                                                               progress=s.tree_size)
        t = Text()
        t.append("✓ EXPORTED ", style="bold green")
        t.append(f"{s.entries} entries ({s.in_scope} in scope) against the checkpoint of "
                 f"{s.tree_size} entries\n")
        t.append("Verify it offline with:\n", style="bold")
        t.append_text(line(r.verify_command, "cyan"))
        for label, value in (("file    ", f"{s.path}"), ("sha256  ", s.file_sha256),
                             ("manifest", s.bundle_sha256), ("log key ", r.log_verifier_key)):
            t.append(f"{label} ", style="bold")
            t.append_text(line(value))
        if r.report is not None:
            t.append("report   ", style="bold")
            t.append_text(show(r.report, "" if r.report_ok else "red"))
            if not r.report_ok:
                t.append("  (the bundle did not verify: read why in the report)", style="red")
        self.query_one("#export-result", Static).update(t)
        self.notify(f"Exported {s.entries} entries")
        copy = self.query_one("#export-copy", Button)
        copy.display = True
        copy.focus(scroll_visible=False)  # Enter copies the command
        box = self.query_one("#export-box", VerticalScroll)
        self.call_after_refresh(box.scroll_end, animate=False)
