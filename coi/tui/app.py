"""The coi terminal UI: scan stations, QA review and release, audit, administration.

Dependencies in (a ``CoiService`` and the station, given by the caller), CSS out (``app.tcss``),
every service call in a thread worker, one error modal for whatever a worker raises. The app holds
the Part 11 signing session and the idle lock; what a person may do is the service's to decide
(navigation only hides what their roles cannot use). The screens see the app through
:class:`coi.tui.host.CoiHost` and are imported when first opened.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from coi.service.chain import CoiService
from coi.service.errors import ConfigError, Refused, VerificationError
from coi.service.exporting import EXPORT_ROLES
from coi.service.session import DEFAULT_IDLE_TIMEOUT_S, SigningSession
from coi.service.views import may_correct, may_enrol, station_steps
from coi.tui.commands import CoiCommands
from coi.tui.host import CoiHost
from coi.tui.keys import KeyRouter
from coi.tui.screens.error import ErrorScreen
from coi.tui.screens.login import LoginScreen

# Who sees which section (navigation only: the service refuses what a role may not do).
REVIEW_ROLES = frozenset({"qa", "auditor", "admin", "qc", "manufacturing"})
AUDIT_ROLES = EXPORT_ROLES  # who audits is who may export: one list, the service's
ADMIN_ROLES = frozenset({"admin"})


class CoiApp(App[None]):
    """``CoiApp(svc, station=None)``; run it with ``.run()`` or drive it with ``.run_test()``."""

    CSS_PATH = "app.tcss"
    TITLE = "coi"
    SUB_TITLE = "chain of identity"
    COMMANDS = App.COMMANDS | {CoiCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        # The sections' keys are on the home menu and the palette; the footer keeps room (at
        # 80 columns) for the screen's own keys, Lock and Log out.
        Binding("f2", "station", "Station", show=False),
        Binding("f3", "review", "Review", show=False),
        Binding("f4", "audit", "Audit", show=False),
        Binding("f5", "admin", "Users", show=False),
        Binding("f6", "enrol", "Enrol", show=False),
        Binding("f7", "correct", "Correct", show=False),
        Binding("f9", "lock", "Lock"),
        Binding("f10", "logout", "Log out"),
        Binding("ctrl+q", "quit", "Quit", priority=True, show=False),  # in the palette
    ]

    def __init__(self, svc: CoiService, *, station: str | None = None,
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 idle_check_s: float = 1.0, printer: str | None = None) -> None:
        super().__init__()
        self.svc = svc
        self.station = station
        self.printer = printer
        self.session = SigningSession(svc.ledger, svc.clock, idle_timeout_s)
        self.idle_check_s = idle_check_s
        self.service_lock = threading.RLock()  # see coi.tui.base.serialized
        self._locked = False
        self.keys = KeyRouter(self)  # every key and paste, one at a time (see coi.tui.keys)
        svc.ledger.on_retry = self.say_retrying

    def say_retrying(self, message: str) -> None:
        """The database went away and an append waits for it: one line on the screen, from
        whichever thread the append runs in."""
        if threading.get_ident() == getattr(self, "_thread_id", None):
            self.notify(message, severity="warning", timeout=3, markup=False)
        else:
            self.call_from_thread(self.notify, message, severity="warning", timeout=3,
                                  markup=False)

    # -- start, login, lock -----------------------------------------------------------------
    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.show_clock()
        if self.session.user is not None:  # a session opened by the caller (tests, kiosks)
            self.sub_title = self.session_title()
            self.call_later(self.open_start, first=True)
        else:
            self.push_screen(LoginScreen())
        self.set_interval(self.idle_check_s, self.check_idle_lock)

    async def on_event(self, event: events.Event) -> None:
        if self.keys.is_current(event):  # a key handed back by the router, in its turn
            try:
                await super().on_event(event)
            finally:
                self.keys.handled(event)
            return
        if isinstance(event, events.Key | events.MouseDown | events.Paste):
            self.session.touch()
        if self.keys.take(event):  # queued: handled in order, each once the last has settled
            return
        await super().on_event(event)

    @property
    def roles(self) -> frozenset[str]:
        return self.session.roles if self.session.user else frozenset()

    def display_name(self) -> str:
        user = self.session.user
        if user is None:
            return ""
        rec = self.svc.ledger.registry().user(user)
        return rec.name if rec else user

    def session_title(self) -> str:
        return f"{self.display_name()} ({self.session.user}) · {', '.join(sorted(self.roles))}"

    def logged_in(self, locked_user: str | None) -> None:
        user = self.session.user or ""
        self.sub_title = self.session_title()
        self.refresh_bindings()
        if locked_user is not None and locked_user == user:
            self._locked = False
            self.pop_screen()
            return
        self._locked = False
        self.call_later(self.open_start)

    async def open_start(self, first: bool = False) -> None:
        from coi.tui.screens.home import HomeScreen
        from coi.tui.screens.station import StationScreen

        if first:
            await self.push_screen(HomeScreen())
        else:
            await self._reset_stack()
            await self.switch_screen(HomeScreen())
        if self.station:
            steps = {s.name for s in station_steps(self.svc.process(), self.roles)}
            if self.station in steps:
                await self.push_screen(StationScreen(self.station))
            else:
                self.notify(f"Your roles may not record the station's step {self.station!r};"
                            " pick another from the list.", severity="warning")

    async def _reset_stack(self) -> None:
        while len(self.screen_stack) > 2:
            await self.pop_screen()

    def show_clock(self) -> None:
        """The site's local date and time with its zone, in the header of every screen (from
        the service's clock, so tests see a fixed time)."""
        now = dt.datetime.fromtimestamp(self.svc.clock.now_ms() // 1000, self.svc.tz())
        self.title = f"coi · {now:%Y-%m-%d %H:%M %Z}"

    def check_idle_lock(self) -> None:
        self.show_clock()
        if self._locked or self.session.user is None:
            return
        if self.session.expired():
            user = self.session.user
            self.session.logout()
            self._locked = True
            self.refresh_bindings()
            self.push_screen(LoginScreen(locked_user=user))

    def action_lock(self) -> None:
        if self.session.user is None or self._locked:
            return
        user = self.session.user
        self.session.logout()
        self._locked = True
        self.refresh_bindings()
        self.push_screen(LoginScreen(locked_user=user))

    async def action_logout(self) -> None:
        if self.session.user is None:
            return
        self.session.logout()
        self._locked = False
        self.sub_title = "chain of identity"
        await self._reset_stack()
        await self.switch_screen(LoginScreen())
        self.refresh_bindings()

    # -- navigation (role-aware) ---------------------------------------------------------------
    def may(self, section: str) -> bool:
        if self.session.user is None or self._locked:
            return False
        roles = self.roles
        if section == "station":
            return bool(station_steps(self.svc.process(), roles))
        if section == "enrol":
            return may_enrol(self.svc.process(), roles)
        if section == "correct":
            return may_correct(self.svc.process(), roles)
        need = {"review": REVIEW_ROLES, "audit": AUDIT_ROLES, "admin": ADMIN_ROLES}.get(section)
        return need is not None and bool(roles & need)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("station", "review", "audit", "admin", "enrol", "correct"):
            return self.may(action)  # False hides the key from the footer
        if action in ("lock", "logout"):
            return self.session.user is not None and not self._locked
        return True

    async def goto(self, screen: Screen[Any]) -> None:
        """Open a section: back to the home screen, then the section on top."""
        await self._reset_stack()
        await self.push_screen(screen)

    async def action_station(self, step: str | None = None) -> None:
        from coi.tui.screens.station import StationPickScreen, StationScreen

        if not self.may("station"):
            return
        await self.goto(StationScreen(step) if step else StationPickScreen())

    async def action_review(self) -> None:
        from coi.tui.screens.review import ReviewScreen

        if self.may("review"):
            await self.goto(ReviewScreen())

    async def action_audit(self) -> None:
        from coi.tui.screens.audit import AuditScreen

        if self.may("audit"):
            await self.goto(AuditScreen())

    async def action_admin(self) -> None:
        from coi.tui.screens.admin import AdminScreen

        if self.may("admin"):
            await self.goto(AdminScreen())

    async def action_enrol(self) -> None:
        from coi.tui.screens.enrol import EnrolScreen

        if self.may("enrol"):
            await self.goto(EnrolScreen())

    async def action_correct(self, coi: str | None = None, index: int | None = None) -> None:
        from coi.tui.screens.correct import CorrectionScreen

        if self.may("correct"):
            await self.push_screen(CorrectionScreen(coi, index))

    # -- the one error handler ---------------------------------------------------------------
    def show_error(self, error: BaseException) -> None:
        if isinstance(error, Refused):
            title, text = "Refused", error.reason
        elif isinstance(error, ConfigError):
            title, text = "Configuration problem", str(error)
        elif isinstance(error, VerificationError):
            title, text = "Verification failed", str(error)
        else:
            title, text = "Unexpected error", f"{type(error).__name__}: {error}"
        self.push_screen(ErrorScreen(title, text))


if TYPE_CHECKING:
    def _implements_host(app: CoiApp) -> CoiHost:
        return app  # mypy: CoiApp is what the screens expect of their host
