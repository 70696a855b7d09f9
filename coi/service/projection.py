"""The ``product_state`` table as a projection of the ledger: one row per product, each column
computed from the product's replayed state.

``state_row`` is the one place a row is computed: the append path writes it (``ChainCore``),
``coi verify`` compares the whole table with the rows of its own replay (``differences``: any
column, any row missing or not made by an entry; ``count_difference``: the ``state_count``
table, products per state) and ``coi migrate`` writes them back
(``coi.service.admin.rebuild_states``). Pure: reads the process definition and the state.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from coi.domain.process import Process
from coi.domain.state import ProductState
from coi.service.windows import live_windows

COLUMNS = ("state", "data", "last_index", "deadline_ms", "deadline_window", "open_deviations",
           "expected_index")


def state_row(process: Process, product: ProductState) -> dict[str, Any]:
    """The product's row: its state, its state as JSON (sorted keys), its newest entry, the
    first deadline of a window still running, its open deviations, and whether it is expected
    here (``expected_index``, see :func:`expected_index`)."""
    running = live_windows(process, product)  # not those it can no longer be inside
    first = min(running, key=lambda w: w.deadline_ms) if running else None
    return {"state": product.state, "data": json.dumps(product.to_json(), sort_keys=True),
            "last_index": product.last_index,
            "deadline_ms": first.deadline_ms if first else None,
            "deadline_window": first.name if first else None,
            "open_deviations": len(product.open_deviations()),
            "expected_index": expected_index(product)}


def expected_index(product: ProductState) -> int | None:
    """The index of the ``handoff.received`` entry that made the product expected here, None
    when it is not: received by hand-off and no entry that updates its state recorded since
    (docs/federation.md). A receipt carrying a state is the product's newest entry itself; one
    written before receipts carried a state leaves the product's entries older than it."""
    received = product.received_index
    return received if received is not None and received >= product.last_index else None


def differences(stored: Mapping[str, Mapping[str, Any]],
                expected: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Each product whose stored row is not the expected one, with what differs (sorted)."""
    out: dict[str, str] = {}
    for coi in sorted(set(stored) | set(expected)):
        have, want = stored.get(coi), expected.get(coi)
        if have is None:
            out[coi] = "no row is stored"
        elif want is None:
            out[coi] = "a row is stored for a product no entry made"
        else:
            bad = [c for c in COLUMNS if not _same(c, have.get(c), want[c])]
            if bad:
                out[coi] = f"column {', '.join(bad)} differs"
    return out


def _same(column: str, have: Any, want: Any) -> bool:
    if column != "data":
        return bool(have == want)
    try:
        return bool(json.loads(have) == json.loads(want))
    except (TypeError, ValueError):
        return False


def count_difference(stored: Mapping[str, int], expected: Mapping[str, Mapping[str, Any]]
                     ) -> str | None:
    """What is wrong with the stored ``state_count`` (products per state) against the rows
    ``expected`` (by CoI), or None when every count is right."""
    want = Counter(str(row["state"]) for row in expected.values())
    bad = sorted(s for s in set(stored) | set(want) if stored.get(s, 0) != want.get(s, 0))
    if not bad:
        return None
    return "; ".join(f"state {s}: {stored.get(s, 0)} counted, {want.get(s, 0)} products"
                     for s in bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
