"""Scanned means scanned: how a scan-only field was entered, and what keying it by hand needs.

Owns the entry rule. A field the process declares ``scan_only`` records how its value was
entered (``entry``: ``scanner``, ``pasted`` or ``typed`` at a scan station, which read the value
as a scan; ``keyed`` by hand otherwise, e.g. at the command line). A keyed scan-only field needs
a witness (who checked the label against the value) and a reason (``keyed_reason``). The
check character of a keyed identifier is verified before the attempt is made (see
:mod:`coi.domain.keyed`), as a station's scan parser verifies a scan's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coi.domain import messages_history as said
from coi.domain.fields import parse_field
from coi.domain.process import ENTRY_METHODS, FieldSpec, StepSpec
from coi.domain.rules.evaluation import Evaluation

__all__ = ["entry"]

_REASON = FieldSpec(name="keyed_reason", title="Why it was keyed by hand", type="text",
                    max_length=200)


def entry(ev: Evaluation, step: StepSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The data the entry rule adds (``entry``, ``keyed_reason``); reasons go to ``ev``."""
    attempt = ev.attempt
    scan_only = [n for n, s in step.fields.items() if s.scan_only and n in values]
    methods = {n: attempt.entry.get(n, "keyed") for n in scan_only}
    for name, method in methods.items():
        if method not in ENTRY_METHODS:
            ev.refuse(said.unknown_entry_method(name, method, ENTRY_METHODS))
    keyed = [n for n, m in methods.items() if m == "keyed"]
    reason = attempt.keyed_reason
    out: dict[str, Any] = {}
    if methods:
        out["entry"] = methods
    if keyed and attempt.witness is None:
        ev.refuse(said.keyed_needs_witness(keyed))
    if reason is None:
        if keyed:
            ev.refuse(said.keyed_needs_reason(keyed))
        return out
    if not keyed:
        ev.refuse(said.REASON_WITHOUT_KEYED)
        return out
    try:  # read as text: trimmed, no control characters, at most 200 characters
        out["keyed_reason"] = parse_field(_REASON, reason, attempt.now_ms)
    except ValueError as exc:
        ev.refuse(str(exc))
    return out
