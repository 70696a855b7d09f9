"""What the ledger says about hand-offs: sent, received, expected (read from the entries alone).

Owns reading the ``handoff.sent`` and ``handoff.received`` entries back (docs/federation.md):
the checkpoints this site sent to a partner, the last checkpoint it accepted from one, whether a
shipment was received already, and what is shown of the products expected here (received by
hand-off, no process step recorded here since): which products those are is a column of the
product_state projection (``expected_index``, rebuilt from the ledger like every column), and
only their own ``handoff.received`` entries are read.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from coi.domain.handoff_import import HANDOFF_RECEIVED as HANDOFF_RECEIVED  # re-exported
from coi.ledger.entry import StoredEntry, read_statement
from coi.ledger.errors import ProfileError, VerificationError
from coi.service.ledger import LedgerService

HANDOFF_SENT = "handoff.sent"
HANDOFF_REFUSED = "system.handoff_refused"


@dataclass(frozen=True)
class Seen:
    """A checkpoint of a partner's log accepted here, at ``index``."""

    size: int
    root: bytes
    index: int


def _data(row: StoredEntry) -> Mapping[str, Any]:
    try:
        return read_statement(row.statement).data
    except ProfileError as e:
        raise VerificationError(f"stored hand-off entry is damaged: {e}", index=row.index) from None


def _rows(svc: LedgerService, type_: str, tx: Any = None) -> Iterable[StoredEntry]:
    return svc.store.rows_of_types({type_}, tx=tx)


def _checkpoint(d: Mapping[str, Any]) -> tuple[int, bytes]:
    cp = d["checkpoint"]
    return int(cp["size"]), base64.b64decode(cp["root"])


def sent_checkpoints(svc: LedgerService, origin: str) -> list[tuple[int, bytes]]:
    """(size, root) of every checkpoint sent to the partner of ``origin``, by size."""
    out: dict[int, bytes] = {}
    for row in _rows(svc, HANDOFF_SENT):
        d = _data(row)
        if d.get("to_origin") == origin:
            size, root = _checkpoint(d)
            out[size] = root
    return sorted(out.items())


def last_seen(svc: LedgerService, origin: str, tx: Any = None) -> Seen | None:
    """The newest checkpoint accepted from the partner of ``origin``, if any."""
    best: Seen | None = None
    for row in _rows(svc, HANDOFF_RECEIVED, tx):
        d = _data(row)
        if d.get("sender_origin") == origin:
            size, root = _checkpoint(d)
            if best is None or size >= best.size:
                best = Seen(size, root, row.index)
    return best


def received_at(svc: LedgerService, origin: str, shipment_hash: str, tx: Any = None
                ) -> int | None:
    """The index of the ``handoff.received`` entry for this shipment of that sender, if any."""
    for row in _rows(svc, HANDOFF_RECEIVED, tx):
        d = _data(row)
        ship = d.get("shipment")
        if d.get("sender_origin") == origin and isinstance(ship, dict) \
                and ship.get("hash") == shipment_hash:
            return row.index
    return None


def expected(svc: LedgerService, page: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
    """The products expected here (received by hand-off and not taken in: no step recorded
    on them here since), from ``page``: (CoI, index of the ``handoff.received`` entry that made
    it expected) as the product table lists them (``ChainStore.expected``, newest first).
    Reads those entries only, in one query. Newest first."""
    wanted = dict(page)
    by_index = {row.index: row for row in svc.store.rows_at(wanted.values(), replica=True)}
    out = []
    for coi, index in wanted.items():
        row = by_index.get(index)
        if row is None or row.type != HANDOFF_RECEIVED or row.subject != coi:
            raise VerificationError(f"the product_state table says {coi} is expected by the "
                                    f"{HANDOFF_RECEIVED} entry {index}, which the ledger does "
                                    "not hold: run `coi verify`, then `coi migrate`",
                                    index=index)
        out.append(arrival(row))
    return sorted(out, key=lambda e: -int(e["index"]))


def expected_on(rows: Iterable[StoredEntry], here: int | None) -> dict[str, Any] | None:
    """The product expected here, from its own entries ``rows`` (in index order), when its
    latest ``handoff.received`` is not older than ``here``, the index of its newest entry in
    this site's product table (None when it has none)."""
    latest = None
    for row in rows:
        if row.type == HANDOFF_RECEIVED:
            latest = row
    if latest is None or (here is not None and here > latest.index):
        return None  # never received, or a step recorded here since: taken in
    return arrival(latest)


def arrival(row: StoredEntry) -> dict[str, Any]:
    """What the station and ``coi status`` show of a product expected by ``row`` (a
    ``handoff.received`` entry): from whom, which items, in what state, which shipment."""
    d = _data(row)
    return {"coi": row.subject, "from": d.get("from"), "items": d.get("items"),
            "index": row.index, "time_ms": row.time_ms, "state": _state(d),
            "shipment": d.get("shipment")}


def _state(d: Mapping[str, Any]) -> str | None:
    """The state the hand-off carried (None from a receiver that carried none)."""
    state = d.get("state")
    got = state.get("state") if isinstance(state, Mapping) else None
    return got if isinstance(got, str) else None
