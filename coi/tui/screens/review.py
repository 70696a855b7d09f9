"""QA review: the products table (filter by state, window, open deviation; sort; search).

One page at a time straight from the product_state table, so the first page shows at once even
with 100,000 products. Enter opens the product's timeline; Enter in the search field opens the
only match (or moves to the table when there are several).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input, Select, Static

from coi.service.views import format_left, product_page
from coi.tui.base import CoiScreen, serialized
from coi.tui.text import show

PAGE = 100
FILTER_TITLES = (("all products", "all"), ("window running out", "window_soon"),
                 ("window exceeded", "window_exceeded"), ("open deviation", "deviation"))
ORDER_TITLES = (("sort: CoI", "coi"), ("sort: state", "state"), ("sort: deadline", "deadline"),
                ("sort: deviations", "deviations"), ("sort: most recent", "recent"))


class ReviewScreen(CoiScreen):
    """The products table; Enter opens a product."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+f", "search", "Search"),
        Binding("ctrl+n", "page(1)", "Next page"),
        Binding("ctrl+b", "page(-1)", "Prev page"),
    ]

    def __init__(self) -> None:
        super().__init__()
        # Keyset pages: where each page visited so far starts (None: the first page).
        self.page_starts: list[dict[str, Any] | None] = [None]
        self.rows: list[dict[str, Any]] = []
        self.open_only = False  # Enter in the search field: open the one match once loaded

    def compose(self) -> ComposeResult:
        yield Header()
        states = self.coi_app.svc.process().states
        with Horizontal(id="review-filters"):
            yield Select([(s, s) for s in states if s != "none"], prompt="any state",
                         id="f-state")
            yield Select(FILTER_TITLES, value="all", allow_blank=False, id="f-filter")
            yield Select(ORDER_TITLES, value="coi", allow_blank=False, id="f-order")
            yield Input(placeholder="search CoI", id="f-search")
        yield DataTable(id="products", cursor_type="row", zebra_stripes=True)
        yield Static("", id="review-count")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#products", DataTable)
        table.add_columns("CoI", "State", "Window", "Time left", "Dev.", "Last")
        table.focus()
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    def action_search(self) -> None:
        self.query_one("#f-search", Input).focus()

    def action_page(self, step: int) -> None:
        if step > 0:
            if len(self.rows) < PAGE:
                return
            self.page_starts.append(self.rows[-1])
        elif len(self.page_starts) > 1:
            self.page_starts.pop()
        else:
            return
        self.load()

    @on(Select.Changed)
    @on(Input.Changed, "#f-search")
    def filters_changed(self) -> None:
        self.page_starts = [None]
        self.load()

    @on(Input.Submitted, "#f-search")
    def search_submitted(self) -> None:
        self.page_starts = [None]
        self.open_only = True
        self.load()  # the page for exactly what the field holds now, then show_rows decides

    def query_args(self) -> dict[str, Any]:
        state = self.query_one("#f-state", Select)
        return {
            "state": None if state.is_blank() else str(state.value),
            "flt": str(self.query_one("#f-filter", Select).value),
            "order": str(self.query_one("#f-order", Select).value),
            "search": self.query_one("#f-search", Input).value.strip() or None,
        }

    def load(self) -> None:
        self.load_page(self.query_args(), self.page_starts[-1])

    @work(thread=True, exclusive=True, exit_on_error=False, group="page")
    @serialized
    def load_page(self, args: dict[str, Any], after: dict[str, Any] | None) -> None:
        svc = self.coi_app.svc
        rows = product_page(svc, limit=PAGE, after=after, **args)
        windows = {k: w.title for k, w in svc.process().windows.items()}
        self.app.call_from_thread(self.show_rows, rows, windows, svc.clock.now_ms())

    def show_rows(self, rows: list[dict[str, Any]], windows: dict[str, str], now: int) -> None:
        self.rows = rows
        table = self.query_one("#products", DataTable)
        table.clear()
        for r in rows:
            left: Text | str = ""
            if r["deadline_ms"] is not None:
                ms = r["deadline_ms"] - now
                left = show(format_left(ms), "bold red" if ms < 0 else
                            "yellow" if ms < 6 * 3_600_000 else "")
            devs = r["open_deviations"]
            table.add_row(show(r["coi"]), show(r["state"]),
                          show(windows.get(r["deadline_window"] or "", "")), left,
                          show(devs, "bold yellow") if devs else "", str(r["last_index"]),
                          key=r["coi"])
        skipped = (len(self.page_starts) - 1) * PAGE
        first = skipped + 1 if rows else 0
        last = skipped + len(rows)
        self.query_one("#review-count", Static).update(
            f"products {first}–{last}  ·  Enter: open  ·  ctrl+n/ctrl+b: page")
        if self.open_only:
            self.open_only = False
            self.after_search(rows)

    def after_search(self, rows: list[dict[str, Any]]) -> None:
        from coi.tui.screens.product import ProductScreen

        if len(rows) == 1:
            self.app.push_screen(ProductScreen(str(rows[0]["coi"])))
        elif rows:
            self.query_one("#products", DataTable).focus()
            self.notify(f"{len(rows)} products match: pick one and press Enter.")
        else:
            self.notify("No product matches the search.", severity="warning")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        from coi.tui.screens.product import ProductScreen

        if event.row_key.value:
            self.app.push_screen(ProductScreen(str(event.row_key.value)))
