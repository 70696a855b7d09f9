"""What the ledger says about hand-offs: sent, received, expected (read from the entries alone).

Owns reading the ``handoff.sent`` and ``handoff.received`` entries back (docs/federation.md):
the checkpoints this site sent to a partner, the last checkpoint it accepted from one, whether a
shipment was received already, and the products expected here (received by hand-off, not yet
taken in by a process step). Nothing is cached in a table: the ledger is the record.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from coi.ledger.entry import StoredEntry, read_statement
from coi.ledger.errors import ProfileError, VerificationError
from coi.service.ledger import LedgerService

HANDOFF_SENT = "handoff.sent"
HANDOFF_RECEIVED = "handoff.received"
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


def expected(svc: LedgerService, known: Callable[[str], bool]) -> list[dict[str, Any]]:
    """The products received by hand-off and not (yet) known to this site's product table
    (``known(coi)``): expected at the receiving station. Newest first."""
    out: dict[str, dict[str, Any]] = {}
    here: dict[str, bool] = {}
    for row in _rows(svc, HANDOFF_RECEIVED):
        if row.subject not in here:
            here[row.subject] = known(row.subject)
        if here[row.subject]:
            continue
        d = _data(row)
        out[row.subject] = {"coi": row.subject, "from": d.get("from"), "items": d.get("items"),
                            "index": row.index, "time_ms": row.time_ms,
                            "shipment": d.get("shipment")}
    return sorted(out.values(), key=lambda e: -int(e["index"]))
