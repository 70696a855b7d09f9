"""The stability windows that cross organisations, checked from the files alone.

Owns the window part of ``coi verify-chain`` (docs/federation.md, "Across the whole chain"): a
window (``[windows.*]`` of the process definition) is started by one step and checked by the
steps inside it or ending it. When the start is on one organisation's ledger and the checking
step on another's, no single site saw both entries on its own clock: the receiver checked the
deadline its hand-off carried (``state.windows``). Here the two **signed** entries are compared
directly: the checking step's time minus the starting step's must be within the window's
maximum and not under its minimum.

How the start is found, for each checking entry on organisation B: walk B's entries of the
product backwards from it; a step that starts the window is B's own (a single-site window, the
site's own replay checks it); a step that ends it means none is running; a ``handoff.received``
that carries the window leads to its sender's entries before the shipment it names, and so on
back. The window's start is the entry found there; the receipt's carried ``start_ms`` must be
that entry's signed time.

A breach is a problem (exit 1) unless it was handled at B as a single site handles a late step:
a deviation opened for that window on B after the receipt and dispositioned ``proceed`` before
the step; then it is reported, not a problem. Too early (under the minimum) is always a problem:
no disposition allows it at a single site either.

The process definition is the one the genesis (entry 0, in every bundle) names by SHA-256: the
definition bundled with the file, or one shipped with coi. Reads no database.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coi.domain.errors import ProcessError
from coi.domain.loader import parse_process, shipped_for
from coi.domain.process import Process, WindowSpec
from coi.domain.state import window_key
from coi.export.records import parse_line
from coi.ledger.entry import Statement, read_statement

__all__ = ["WindowReport", "check_windows", "process_of"]

RECEIVED = "handoff.received"
_MAX_HOPS = 64


def process_of(path: Path) -> Process | str:
    """The process definition a bundle's genesis names, or why it cannot be had."""
    named: str | None = None
    bundled: tuple[str, bytes] | None = None
    with open(path, "rb") as f:
        for line in f:
            obj = parse_line(line)
            if obj.get("kind") == "process":
                bundled = (str(obj["sha256"]), base64.b64decode(obj["toml"]))
            elif obj.get("kind") == "entry" and obj.get("index") == 0:
                g = read_statement(base64.b64decode(obj["statement"]))
                proc = g.data.get("process")
                named = str(proc.get("sha256")) if isinstance(proc, Mapping) else None
                break
    if named is None:
        return "its genesis names no process definition"
    if bundled is not None and bundled[0] == named:
        try:
            return parse_process(bundled[1], origin="its bundled process definition")
        except ProcessError as e:
            return str(e)
    shipped = shipped_for(named)
    if shipped is None:
        return (f"its process definition (SHA-256 {named[:16]}…) is neither bundled nor one "
                "shipped with coi")
    return shipped[0]


@dataclass
class WindowReport:
    checked: list[str]  # one line per cross-organisation window checked (or handled)
    problems: list[str]


@dataclass(frozen=True)
class _At:
    origin: str
    index: int
    st: Statement


def _item(st: Statement) -> str | None:
    item = st.data.get("item")
    return item if isinstance(item, str) else None


def _span(ms: int) -> str:
    """A duration for people, to the second: days (and hours) from 3 days up, else hours,
    minutes and seconds (``20 d 21 h``, ``51 h``, ``20 h 5 min``, ``2 min 45 s``)."""
    sign, ms = ("-", -ms) if ms < 0 else ("", ms)
    secs = (ms + 500) // 1000
    days, secs = divmod(secs, 86_400) if secs >= 3 * 86_400 else (0, secs)
    h, secs = divmod(secs, 3_600)
    m, s = divmod(secs, 60)
    parts = [f"{days} d"] if days else []
    if h:
        parts.append(f"{h} h")
    if not days and (m or not (h or s)):
        parts.append(f"{m} min")
    if s and not days:
        parts.append(f"{s} s")
    return sign + " ".join(parts)


def _where(at: _At) -> str:
    return f"{at.origin} entry {at.index} ({at.st.type})"


def check_windows(entries: Mapping[str, Mapping[int, Statement]],
                  processes: Mapping[str, Process | str]) -> WindowReport:
    """Every window whose start and checking step are on different organisations' ledgers.
    ``entries``: each origin's in-scope entries of the product (index -> statement);
    ``processes``: each origin's process definition, or why it is not known."""
    report = WindowReport([], [])
    for origin in sorted(entries):
        process = processes.get(origin, "no file")
        mine = entries[origin]
        if isinstance(process, str):
            if any(st.type == RECEIVED for st in mine.values()):
                report.problems.append(f"the windows at {origin} are not checked: {process}")
            continue
        for idx in sorted(mine):
            st = mine[idx]
            step = process.step_for_entry_type(st.type)
            if step is None:
                continue
            for name in step.checked_windows():
                spec = process.windows[name]
                item = _item(st)
                if spec.per_item and item is None:
                    continue
                _check(report, entries, process, spec, item, _At(origin, idx, st))
    return report


def _check(report: WindowReport, entries: Mapping[str, Mapping[int, Statement]],
           process: Process, spec: WindowSpec, item: str | None, end: _At) -> None:
    found = _start(entries, process, spec, item, end)
    if found is None:
        return
    start, receipt, carried = found
    title = spec.title
    limits = f"limit {_span(spec.max_ms)}" + (f", minimum {_span(spec.min_ms)}"
                                             if spec.min_ms is not None else "")
    took = end.st.time_ms - start.st.time_ms
    what = (f"{title}{' of ' + item if spec.per_item and item else ''}: started at "
            f"{_where(start)}, checked at {_where(end)}: {_span(took)}, {limits}")
    if carried.get("start_ms") != start.st.time_ms:
        report.problems.append(
            f"{what}; but the receipt at {receipt.origin} entry {receipt.index} carries it as "
            f"started at {carried.get('start_ms')} ms, not the {start.st.time_ms} ms signed by "
            f"{start.origin}")
        return
    if spec.min_ms is not None and took < spec.min_ms:
        report.problems.append(f"{what}: too early, {_span(spec.min_ms - took)} before the "
                               "window opened")
        return
    if took <= spec.max_ms:
        report.checked.append(f"{what}: within")
        return
    over = f"exceeded by {_span(took - spec.max_ms)}"
    handled = _proceed(entries[end.origin], process, spec, item, after=receipt.index,
                       before=end.index)
    if handled is None:
        report.problems.append(f"{what}: {over}, and no deviation for it was dispositioned "
                               f"'proceed' at {end.origin} before the step")
    else:
        report.checked.append(f"{what}: {over}, handled: deviation {handled[0]} at "
                              f"{end.origin}, dispositioned 'proceed' at entry {handled[1]}")


def _start(entries: Mapping[str, Mapping[int, Statement]], process: Process,
           spec: WindowSpec, item: str | None, end: _At
           ) -> tuple[_At, _At, Mapping[str, Any]] | None:
    """The entry on another organisation that started the window running at ``end``, the
    receipt at ``end``'s organisation that brought it, and the window that receipt carries;
    None when the window was started here, ended before, or is not running."""
    key = window_key(spec, item)
    origin, before = end.origin, end.index
    first: tuple[_At, Mapping[str, Any]] | None = None
    for _hop in range(_MAX_HOPS):
        mine = entries.get(origin)
        if mine is None:
            return None  # the sender's file was not given: the link problem says so
        nxt: tuple[str, int] | None = None
        for i in sorted((k for k in mine if k < before), reverse=True):
            st = mine[i]
            step = process.step_for_entry_type(st.type)
            if step is not None and (not spec.per_item or _item(st) == item):
                if spec.name in step.starts:
                    if first is None:
                        return None  # started on the same ledger: that site's own check
                    return _At(origin, i, st), first[0], first[1]
                if spec.name in step.ends:
                    return None
            if st.type == RECEIVED:
                carried = _carried(st, key)
                if carried is None:
                    return None
                if first is None:
                    first = (_At(origin, i, st), carried)
                shipment = st.data.get("shipment")
                sender = st.data.get("sender_origin")
                if not isinstance(shipment, Mapping) or not isinstance(sender, str) or \
                        not isinstance(shipment.get("index"), int):
                    return None
                nxt = (sender, int(shipment["index"]) + 1)
                break
        if nxt is None:
            return None
        origin, before = nxt
    return None


def _carried(st: Statement, key: str) -> Mapping[str, Any] | None:
    state = st.data.get("state")
    windows = state.get("windows") if isinstance(state, Mapping) else None
    w = windows.get(key) if isinstance(windows, Mapping) else None
    return w if isinstance(w, Mapping) else None


def _proceed(mine: Mapping[int, Statement], process: Process, spec: WindowSpec,
             item: str | None, *, after: int, before: int) -> tuple[int, int] | None:
    """A deviation for the window opened on this ledger after the receipt and dispositioned
    ``proceed`` before the step: (its index, the disposition's), as the single-site rule
    allows a late step."""
    opening = process.step_with_effect("deviation_open")
    disposing = process.step_with_effect("deviation_disposition")
    if opening is None or disposing is None:
        return None
    opened = {i for i, st in mine.items()
              if after < i < before and st.type == opening.entry_type
              and st.data.get("window") == spec.name
              and (not spec.per_item or _item(st) == item)}
    for i in sorted(mine):
        st = mine[i]
        dev = st.data.get("deviation")
        if i < before and st.type == disposing.entry_type and isinstance(dev, int) and \
                dev in opened and st.data.get("disposition") == "proceed":
            return dev, i
    return None
