"""What the ledger says about hand-offs: sent, received, expected (read from the entries alone).

Owns reading the ``handoff.sent`` and ``handoff.received`` entries back (docs/federation.md):
the checkpoints this site sent to a partner, the last checkpoint it accepted from one, whether a
shipment was received already, and what is shown of the products expected here (received by
hand-off, no process step recorded here since): which products those are is a column of the
product_state projection (``expected_index``, rebuilt from the ledger like every column), and
only their own ``handoff.received`` entries are read. None of these reads grows with the number
of hand-offs: a shipment's receipts are read on its product only, the last checkpoint seen and
the checkpoints sent from the newest entries back, as far as they need (docs/federation.md).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
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


FIRST_PAGE, MAX_PAGE = 4, 256  # rows per query walking one type back from the head (doubling)


def _newest_first(svc: LedgerService, type_: str, tx: Any = None) -> Iterator[StoredEntry]:
    """The entries of ``type_``, newest first, a page at a time (the first small, each next
    twice as large): a caller that stops early reads and parses only as far back as it needed,
    and the usual caller (the newest entry is the one wanted) reads one small page."""
    below: int | None = None
    size = FIRST_PAGE
    while True:
        page = svc.store.rows_of_type_before(type_, below, size, tx=tx)
        yield from page
        if len(page) < size:
            return
        below, size = page[-1].index, min(size * 2, MAX_PAGE)


def _checkpoint(d: Mapping[str, Any]) -> tuple[int, bytes]:
    cp = d["checkpoint"]
    return int(cp["size"]), base64.b64decode(cp["root"])


def sent_checkpoints(svc: LedgerService, origin: str, limit: int) -> list[tuple[int, bytes]]:
    """(size, root) of the ``limit`` largest checkpoints sent to the partner of ``origin``, by
    size (what the next file to it proves consistency from: ``previous``).

    Read newest first, and no further back than needed: a ``handoff.sent`` entry records the
    checkpoint of the head before it was appended, so its size is at most its own index; once
    ``limit`` sizes are held and the smallest of them is at least the index of the next (older)
    entry, no older entry can hold a larger one. Of one size sent twice, the newest root is
    kept (as reading them all in index order kept the last)."""
    out: dict[int, bytes] = {}
    if limit <= 0:
        return []
    for row in _newest_first(svc, HANDOFF_SENT):
        if len(out) >= limit and sorted(out)[-limit] >= row.index:
            break
        d = _data(row)
        if d.get("to_origin") == origin:
            size, root = _checkpoint(d)
            out.setdefault(size, root)
    return sorted(out.items())[-limit:]


def last_seen(svc: LedgerService, origin: str, tx: Any = None) -> Seen | None:
    """The newest checkpoint accepted from the partner of ``origin``, if any.

    That is the one of its newest ``handoff.received`` entry: a receipt is refused unless its
    checkpoint is at least as large as the last one accepted from that origin (same size: same
    root), so per partner the sizes only grow with the index. Read newest first, stopping at
    the first entry of that partner; a partner that never sent reads back through them all."""
    for row in _newest_first(svc, HANDOFF_RECEIVED, tx):
        d = _data(row)
        if d.get("sender_origin") == origin:
            size, root = _checkpoint(d)
            return Seen(size, root, row.index)
    return None


def received_at(svc: LedgerService, origin: str, coi: str, shipment_hash: str, tx: Any = None
                ) -> int | None:
    """The index of the ``handoff.received`` entry for this shipment of that sender, if any.

    Only the entries on the product ``coi`` are read: a shipment is an entry of the product the
    file carries (its hash is checked against the file's in-scope entry, whose subject is the
    file's CoI), and every receipt of it was recorded on that CoI."""
    for row in svc.store.rows_of_type_on(HANDOFF_RECEIVED, coi, tx=tx):
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
