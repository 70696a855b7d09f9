"""What the ledger says about hand-offs: sent, received, expected (read from the entries alone).

Owns reading the ``handoff.sent`` and ``handoff.received`` entries back (docs/federation.md):
the checkpoints this site sent to a partner, the last checkpoint it accepted from one, whether a
shipment was received already, and the products expected here (received by hand-off, no
process step recorded here since). Nothing is cached in a table: the ledger is the record.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
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


def expected(svc: LedgerService, last_index: Callable[[str], int | None]
             ) -> list[dict[str, Any]]:
    """The products received by hand-off and not (yet) taken in here: no process step since
    their latest ``handoff.received`` (``last_index(coi)``: the index of the product's latest
    entry in this site's product table, None when it has none). Expected at the receiving
    station. Newest first."""
    latest: dict[str, StoredEntry] = {}
    for row in _rows(svc, HANDOFF_RECEIVED):
        if row.subject not in latest or row.index > latest[row.subject].index:
            latest[row.subject] = row
    out = []
    for coi, row in latest.items():
        here = last_index(coi)
        if here is not None and here > row.index:
            continue  # a step recorded here since: taken in
        d = _data(row)
        out.append({"coi": row.subject, "from": d.get("from"), "items": d.get("items"),
                    "index": row.index, "time_ms": row.time_ms, "state": _state(d),
                    "shipment": d.get("shipment")})
    return sorted(out, key=lambda e: -int(e["index"]))


def _state(d: Mapping[str, Any]) -> str | None:
    """The state the hand-off carried (None from a receiver that carried none)."""
    state = d.get("state")
    got = state.get("state") if isinstance(state, Mapping) else None
    return got if isinstance(got, str) else None
