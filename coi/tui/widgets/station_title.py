"""A scan station's title: the step, who works the station and, at a receiving station, the
products expected from partners (received by hand-off, not yet taken in).

The list is kept current while the station stays open: a hand-off is often received at another
desk (or by ``coi handoff receive``) while the receipt station waits for the bag. It is read
again when the station comes back to the front, after each recording, and every
:attr:`StationTitle.REFRESH_S` seconds, in a worker under the app's service lock.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.widgets import Static

from coi.tui.base import serialized
from coi.tui.host import CoiHost
from coi.tui.text import arrivals


class StationTitle(Static):
    """``Station: TITLE · NAME`` and the expected arrivals of ``step``."""

    REFRESH_S: ClassVar[float] = 15.0
    SHOWN: ClassVar[int] = 5
    """The newest arrivals named; the others are counted."""

    def __init__(self, title: str, who: str, step: str,
                 arriving: tuple[list[dict[str, Any]], int], *, id: str | None = None) -> None:
        self.station, self.who, self.step = title, who, step
        super().__init__(self.text(arriving), id=id)

    def text(self, arriving: tuple[list[dict[str, Any]], int]) -> Text:
        return Text.assemble(("Station: ", "bold"), (self.station, "bold cyan"),
                             f"  ·  {self.who}", arrivals(*arriving))

    def on_mount(self) -> None:
        self.set_interval(self.REFRESH_S, self.refresh_arrivals)

    @work(thread=True, exclusive=True, exit_on_error=False, group="arrivals")
    @serialized
    def refresh_arrivals(self) -> None:
        """Read the expected arrivals again and show them."""
        app = cast(CoiHost, self.app)
        arriving = app.svc.arrivals_at(self.step, limit=self.SHOWN)
        self.app.call_from_thread(self.update, self.text(arriving))
