"""One product for QA: its timeline, deviations, labels and QC results, and the release gate.

The timeline shows every entry about the product with each signer's printed name and meaning,
the local time with its zone, whether the signature verifies, and corrections. ``r``/``x`` open
the release/reject screen (the service decides whether the signer may).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from coi.service.release_views import exceptional_release
from coi.service.views import entry_data_shown, format_left, release_blockers, windows_left
from coi.tui.base import CoiScreen, serialized
from coi.tui.text import show

_SKIP_DATA = {"item"}


def summarise(data: dict[str, Any], limit: int = 60) -> str:
    """An entry's data in one line: ``key=value`` pairs, cut at ``limit`` characters."""
    text = ", ".join(f"{k}={v}" for k, v in sorted(data.items()) if k not in _SKIP_DATA)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ProductScreen(CoiScreen):
    """Timeline, deviations, labels, QC; the release gate for the person looking."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "release('release')", "Release"),
        Binding("x", "release('reject')", "Reject"),
        Binding("c", "correct", "Correct"),
        Binding("p", "print_label", "Print label"),
    ]

    def __init__(self, coi: str) -> None:
        super().__init__()
        self.coi = coi

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(show(self.coi), id="product-head")
        yield Static("", id="gate")
        with TabbedContent(id="product-tabs"):
            with TabPane("Timeline", id="tab-timeline"):
                yield DataTable(id="timeline", cursor_type="row", zebra_stripes=True)
            with TabPane("Deviations", id="tab-deviations"):
                yield DataTable(id="deviations", cursor_type="row")
            with TabPane("Labels", id="tab-labels"):
                yield DataTable(id="labels", cursor_type="row")
            with TabPane("QC", id="tab-qc"):
                yield DataTable(id="qc", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#timeline", DataTable).add_columns(
            "#", "Local time", "Step", "Signed by (meaning)", "Sig.", "Data")
        self.query_one("#deviations", DataTable).add_columns(
            "#", "Kind", "Description", "Item", "Opened by", "Disposition", "Closed")
        self.query_one("#labels", DataTable).add_columns(
            "Label", "Item", "Status", "Entries", "Replaces")
        self.query_one("#qc", DataTable).add_columns("Test", "Result", "Value", "Specification")
        self.query_one("#timeline", DataTable).focus()
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    def action_release(self, kind: str) -> None:
        from coi.tui.screens.release import ReleaseScreen

        self.app.push_screen(ReleaseScreen(self.coi, kind))

    def action_print_label(self) -> None:
        printer = self.coi_app.printer
        if printer is None:
            self.notify("No station printer is configured (coi tui --printer HOST[:PORT] or "
                        "--printer cups:QUEUE).", severity="warning")
            return
        from coi.tui.screens.print_label import PrintLabelScreen

        self.app.push_screen(PrintLabelScreen(self.coi, printer))

    def action_correct(self) -> None:
        """Correct the highlighted timeline entry (if this person may correct at all)."""
        table = self.query_one("#timeline", DataTable)
        index: int | None = None
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            index = int(key) if key and key.isdigit() else None
        if not self.coi_app.may("correct"):
            self.notify("Your roles may not record corrections.", severity="warning")
            return
        self.run_worker(self.coi_app.action_correct(self.coi, index), exclusive=False)

    @work(thread=True, exclusive=True, exit_on_error=False, group="product")
    @serialized
    def load(self) -> None:
        svc = self.coi_app.svc
        shown = svc.show(self.coi)
        tz = svc.tz()
        for t in shown["timeline"]:  # times as local time with zone, never epoch milliseconds
            t["data"] = entry_data_shown(svc, t["type"], t["data"])
            when = dt.datetime.fromtimestamp(t["time_ms"] // 1000, tz)
            t["time_short"] = f"{when:%Y-%m-%d %H:%M:%S %Z UTC%z}"
        # After an OOS result the gate is the exceptional one, with the physician's newest
        # request that a release may name (the release screen lets QA pick another).
        ex = exceptional_release(svc, self.coi, shown)
        request = ex.newest_usable() if ex is not None else None
        blockers = release_blockers(svc, self.coi, self.coi_app.session.user or "", request)
        specs = {k: t.specification() for k, t in svc.process().qc_tests.items()}
        with svc.lock:
            product = svc.chain().product(self.coi)
        windows = windows_left(svc, product, shown["now_ms"])
        shown["exceptional_request"] = request
        self.app.call_from_thread(self.show_product, shown, blockers, specs, windows)

    def show_product(self, shown: dict[str, Any], blockers: list[str],
                     specs: dict[str, str], windows: list[tuple[str, int]]) -> None:
        state = shown["state"] or {}
        head = Text()
        head.append("CoI ", style="bold")
        head.append_text(show(shown["coi"], "bold cyan"))
        head.append("  state ", style="bold")
        head.append_text(show(state.get("state", "—")))
        if state.get("custodian"):
            head.append("  custodian ", style="bold")
            head.append_text(show(state["custodian"]))
        items = state.get("items", {})
        if items:
            head.append("\nItems ", style="bold")
            head.append_text(show(", ".join(f"{k} {v['status']}" for k, v in items.items())))
        for title, left in windows:  # only windows the product can still be inside
            head.append("\nWindow ", style="bold")
            head.append_text(show(f"{title}: "))
            head.append_text(show(format_left(left), "bold red" if left < 0 else ""))
        for x in shown.get("exceptional_releases", []):  # who released, on whose request
            head.append("\nEXCEPTIONAL RELEASE ", style="bold yellow")
            released = ", ".join(s["name"] for s in x["released_by"])
            asked = ", ".join(s["name"] for s in x["requested_by"]) or "?"
            head.append_text(show(f"entry {x['release']} by {released}, on the request of "
                                  f"{asked} (entry {x['request']}): {x['justification'] or ''}"))
        self.query_one("#product-head", Static).update(head)
        gate = Text()
        if state.get("state") == "qc_testing":  # the gate is about releasing: only then
            if blockers:
                gate.append("Release gate not met for you: ", style="bold red")
                gate.append_text(show("; ".join(blockers), "red"))
            else:
                gate.append("Release gate met: QA may release (r).", style="bold green")
                if shown["exceptional_request"] is not None:
                    gate.append(f" Exceptional release, on the physician's request (entry "
                                f"{shown['exceptional_request']}).", style="bold yellow")
        self.query_one("#gate", Static).update(gate)
        self.fill_timeline(shown["timeline"])
        self.fill_deviations(state.get("deviations", {}))
        self.fill_labels(state.get("labels", {}))
        self.fill_qc(state.get("qc_results", {}), specs)

    def fill_timeline(self, timeline: list[dict[str, Any]]) -> None:
        table = self.query_one("#timeline", DataTable)
        table.clear()
        for t in timeline:
            signers = "; ".join(f"{s['name']} ({s['meaning']})" for s in t["signers"])
            mark = Text("✓", style="bold green") if t["signature_ok"] else Text(
                "✗ BAD", style="bold red")
            data = summarise(t["data"])
            if t["corrected_by"]:
                data = f"corrected by {', '.join(map(str, t['corrected_by']))}; " + data
            table.add_row(str(t["index"]), show(t["time_short"]), show(t["step"]),
                          show(signers), mark, show(data), key=str(t["index"]))

    def fill_deviations(self, devs: dict[str, dict[str, Any]]) -> None:
        table = self.query_one("#deviations", DataTable)
        table.clear()
        for idx, d in sorted(devs.items(), key=lambda kv: int(kv[0])):
            closed = d["closed_index"]
            disp = d["disposition"] or Text("none yet", style="yellow")
            table.add_row(idx, show(d["kind"]), show(d["description"]), show(d["item"] or ""),
                          show(d["opened_by"]), disp if isinstance(disp, Text) else show(disp),
                          show(closed) if closed is not None else Text("OPEN", style="bold red"))

    def fill_labels(self, labels: dict[str, dict[str, Any]]) -> None:
        table = self.query_one("#labels", DataTable)
        table.clear()
        for lid, lab in sorted(labels.items()):
            status = lab["status"]
            table.add_row(show(lid), show(lab["item"] or ""),
                          show(status, "bold red" if status == "printed" else ""),
                          show(", ".join(map(str, lab["events"]))), show(lab["replaces"] or ""))
        if not labels:
            table.add_row("—", "no controlled labels recorded", "", "", "")

    def fill_qc(self, results: dict[str, dict[str, Any]], specs: dict[str, str]) -> None:
        table = self.query_one("#qc", DataTable)
        table.clear()
        for _idx, r in sorted(results.items(), key=lambda kv: int(kv[0])):
            unit = f" {r['unit']}" if r.get("unit") else ""
            table.add_row(show(r["test"]),
                          show(r["result"], "green" if r["result"] == "pass" else "bold red"),
                          show(f"{r['value']}{unit}"), show(specs.get(r["test"], "")))
