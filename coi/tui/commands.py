"""Command-palette entries (ctrl+p): the sections and stations this person may open."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from coi.service.views import station_steps
from coi.tui.host import CoiHost


class CoiCommands(Provider):
    """Open a scan station, QA review, audit or users; lock; log out."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app = cast(CoiHost, self.app)
        run_action = self.app.run_action
        out: list[tuple[str, str, Callable[[], Any]]] = []
        if app.session.user is None:
            return out
        if app.may("station"):
            for step in station_steps(app.svc.process(), app.roles):
                out.append((f"Station: {step.title}", f"Scan and sign '{step.title}'",
                            partial(run_action, f"station('{step.name}')")))
        for section, title, help_ in (
                ("review", "QA review", "Products, timelines, deviations, release"),
                ("audit", "Audit: verify the ledger", "Verify every entry and the checkpoint"),
                ("admin", "Users and roles", "Enrol, revoke, reset keys"),
                ("enrol", "Enrol a patient", "A new chain of identity for a patient"),
                ("correct", "Correct an entry", "A signed correction; the original stays")):
            if app.may(section):
                out.append((title, help_, partial(run_action, section)))
        out.append(("Lock the station", "Lock now; log in again to go on",
                    partial(run_action, "lock")))
        out.append(("Log out", "End this signing session", partial(run_action, "logout")))
        return out

    async def discover(self) -> Hits:
        for title, help_, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_)
