"""Audit: verify the whole ledger in a thread worker with a progress bar; the latest checkpoint.

Verification re-checks every signature, the hash chain, the Merkle tree, the process replay and
the product_state table (``CoiService.verify``). The UI stays responsive while it runs. ``e``
opens the export form (``coi.tui.screens.export``) for the roles that may export.
"""

from __future__ import annotations

import base64
import time
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Header, ProgressBar, Static

from coi.service.errors import VerificationError
from coi.tui.base import CoiScreen
from coi.tui.screens.export import ExportScreen, may_export
from coi.tui.text import show


class AuditScreen(CoiScreen):
    """``v`` verifies; the result and the signed checkpoint of the verified head are shown.

    ``e`` exports a bundle (shown only to the roles that may export)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("v", "verify", "Verify"),
        Binding("e", "export", "Export"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.outcome: str | None = None  # "ok" or "failed" once a run ends

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="audit-box"):
            yield Static(Text("Verify the ledger: every signature, the hash chain, the Merkle "
                              "tree, the process rules replayed, the state table compared."))
            with Horizontal(id="audit-buttons"):
                yield Button("Verify the whole ledger  (v)", id="audit-go", variant="primary")
                if may_export(self.coi_app.roles):
                    yield Button("Export a bundle  (e)", id="audit-export")
            yield ProgressBar(id="audit-progress", show_eta=False)
            yield Static("", id="audit-result")
            yield Static("", id="audit-checkpoint")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#audit-progress", ProgressBar).display = False
        self.query_one("#audit-go", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "audit-go":
            self.action_verify()
        elif event.button.id == "audit-export":
            self.action_export()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "export":
            return may_export(self.coi_app.roles)  # False hides the key from the footer
        return True

    def action_export(self) -> None:
        if may_export(self.coi_app.roles):
            self.app.push_screen(ExportScreen())

    def action_verify(self) -> None:
        self.outcome = None
        self.query_one("#audit-go", Button).disabled = True
        self.query_one("#audit-result", Static).update(Text("Verifying…", style="bold"))
        bar = self.query_one("#audit-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self.verify()

    @work(thread=True, exclusive=True, exit_on_error=False, group="verify")
    def verify(self) -> None:
        svc = self.coi_app.svc
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done == total or now - last[0] > 0.1:
                last[0] = now
                self.app.call_from_thread(self.step, done, total)

        t0 = time.perf_counter()
        try:  # not under the service lock: verification builds its own state from the rows
            result = svc.verify(progress=progress)
        except VerificationError as e:
            self.app.call_from_thread(self.failed, str(e))
            return
        seconds = time.perf_counter() - t0
        with self.coi_app.service_lock:
            checkpoint = svc.ledger.checkpoint()
        root = base64.b64encode(result.root).decode()  # as the checkpoint writes it
        self.app.call_from_thread(self.passed, result.size, root, seconds, checkpoint)

    def step(self, done: int, total: int) -> None:
        self.query_one("#audit-progress", ProgressBar).update(total=total, progress=done)

    def failed(self, message: str) -> None:
        self.outcome = "failed"
        self.query_one("#audit-go", Button).disabled = False
        t = Text("✗ VERIFICATION FAILED\n", style="bold red")
        t.append_text(show(message, "red"))
        self.query_one("#audit-result", Static).update(t)

    def passed(self, size: int, root: str, seconds: float, checkpoint: str) -> None:
        self.outcome = "ok"
        self.query_one("#audit-go", Button).disabled = False
        bar = self.query_one("#audit-progress", ProgressBar)
        bar.update(total=size, progress=size)
        t = Text("✓ VERIFIED ", style="bold green")
        t.append(f"{size} entries\n")
        self.notify(f"Verified {size} entries in {seconds:.1f} s")
        t.append("root ", style="bold")
        t.append_text(show(root))
        self.query_one("#audit-result", Static).update(t)
        cp = Text("Latest checkpoint (signed note):\n", style="bold")
        cp.append_text(show(checkpoint, keep_newlines=True))
        self.query_one("#audit-checkpoint", Static).update(cp)
