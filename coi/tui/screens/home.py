"""Home: the sections this person's roles use, and the site at a glance (svc.status)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from coi.tui.base import CoiScreen, serialized
from coi.tui.text import show

SECTIONS = (
    ("station", "Scan station", "F2"),
    ("review", "QA review and release", "F3"),
    ("audit", "Audit: verify the ledger", "F4"),
    ("admin", "Users and roles", "F5"),
    ("enrol", "Enrol a patient", "F6"),
    ("correct", "Correct an entry", "F7"),
)


class HomeScreen(CoiScreen):
    """The sections as a menu (Enter opens one) beside the site's status."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="home"):
            yield OptionList(id="home-menu")
            yield Static("Loading…", id="home-status")
        yield Footer()

    def on_mount(self) -> None:
        menu = self.query_one("#home-menu", OptionList)
        for key, title, fkey in SECTIONS:
            if self.coi_app.may(key):
                menu.add_option(Option(Text(f"{title}  ({fkey})"), id=key))
        menu.add_option(Option(Text("Lock  (F9)"), id="lock"))
        menu.add_option(Option(Text("Log out  (F10)"), id="logout"))
        menu.highlighted = 0
        menu.focus()
        self.load_status()

    def on_screen_resume(self) -> None:
        self.load_status()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.run_worker(self.app.run_action(event.option.id), exclusive=False)

    @work(thread=True, exclusive=True, exit_on_error=False, group="status")
    @serialized
    def load_status(self) -> None:
        status = self.coi_app.svc.status()
        self.app.call_from_thread(self.show_status, status)

    def show_status(self, status: dict[str, Any]) -> None:
        t = Text()
        t.append("Products by state\n", style="bold")
        for state, n in status["by_state"].items():
            t.append_text(show(f"  {state:<16} {n:>5}"))
            t.append("\n")
        windows = status["windows"]
        t.append("\nWindows running out or exceeded\n", style="bold")
        if not windows:
            t.append("  none\n")
        for w in windows[:6]:
            style = "bold red" if w["exceeded"] else "yellow"
            t.append_text(show(f"  {w['coi']} {w['window']}", style))
            t.append("\n")
        devs = status["open_deviations"]
        t.append("\nOpen deviations\n", style="bold")
        if not devs:
            t.append("  none\n")
        for d in devs[:6]:
            t.append_text(show(f"  {d['coi']} ({d['state']}): {d['count']}", "yellow"))
            t.append("\n")
        self.query_one("#home-status", Static).update(t)
