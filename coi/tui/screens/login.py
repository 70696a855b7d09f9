"""Log in (the first signing of a session: user id and password), and the idle lock.

The password's key derivation is slow on purpose, so the check runs in a thread worker. After the
idle timeout the app shows this screen again as a lock: both components are needed again.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Button, Footer, Header, Input, Static

from coi.service.errors import Refused
from coi.tui.base import CoiScreen, serialized
from coi.tui.text import show


class LoginScreen(CoiScreen):
    """User id and password; ``locked`` when shown by the idle lock over a session."""

    def __init__(self, *, locked_user: str | None = None) -> None:
        super().__init__()
        self.locked_user = locked_user

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="login-box"):
            if self.locked_user:
                yield Static(Text("Session locked", style="bold"), id="login-title")
                yield Static(Text(f"{self.locked_user} was idle too long. Enter your user id "
                                  "and password again (Part 11: both after a timeout)."),
                             classes="hint")
            else:
                yield Static(Text("coi — chain of identity", style="bold"), id="login-title")
                yield Static(Text("Log in with your user id and password. Your password also "
                                  "signs: a signature needs both."), classes="hint")
            yield Input(placeholder="user id", id="login-user", value=self.locked_user or "")
            yield Input(placeholder="password", password=True, id="login-password")
            yield Button("Log in", id="login-go", variant="primary")
            yield Static("", id="login-message")
        yield Footer()

    def on_mount(self) -> None:
        target = "#login-password" if self.locked_user else "#login-user"
        self.query_one(target, Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "login-user":
            self.query_one("#login-password", Input).focus()
        else:
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "login-go":
            self.submit()

    def submit(self) -> None:
        user = self.query_one("#login-user", Input).value.strip()
        password = self.query_one("#login-password", Input).value
        if not user or not password:
            self.message("Enter both your user id and your password.")
            return
        self.message("Checking…")
        self.query_one("#login-go", Button).disabled = True
        self.login(user, password)

    def message(self, text: str, *, error: bool = False) -> None:
        self.query_one("#login-message", Static).update(show(text, "bold red" if error else ""))

    @work(thread=True, exclusive=True, exit_on_error=False, group="login")
    @serialized
    def login(self, user: str, password: str) -> None:
        try:
            self.coi_app.session.login(user, password)
        except Refused as e:
            self.app.call_from_thread(self.failed, e)
            return
        finally:
            self.app.call_from_thread(self.enable)
        self.app.call_from_thread(self.coi_app.logged_in, self.locked_user)

    def enable(self) -> None:
        self.query_one("#login-go", Button).disabled = False

    def failed(self, e: Refused) -> None:
        pw = self.query_one("#login-password", Input)
        pw.value = ""
        pw.focus()
        more = f" (recorded as entry {e.recorded_index})" if e.recorded_index is not None else ""
        self.message(e.reason + more, error=True)
