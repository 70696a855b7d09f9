"""Site administration behind ``coi migrate``: schema upgrades, and the product_state table
rebuilt from the verified ledger.

The product_state table is a projection (``coi.service.projection``): ``coi verify`` fails when
it is not what the entries make. ``rebuild_states`` verifies the whole ledger with the process
replay (refusing, with nothing changed, if any entry fails), compares every row, and, if any
differs, writes the rebuilt rows in the transaction that appends a ``system.state_rebuilt``
entry signed by the site's log key (the products named, the verified size and root): the table
is repaired and the audit trail says so, or nothing changes. A ledger whose table already
matches is left as it is, with no entry.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coi.db.tx import Tx
from coi.ledger.entry import SignedEntry
from coi.service import phi_store
from coi.service.chain import CoiService, process_in_force
from coi.service.chain_core import subject_of
from coi.service.errors import Refused
from coi.service.ledger import LedgerService
from coi.service.projection import count_difference, differences

REBUILT_TYPE = "system.state_rebuilt"
REBUILT_SUBJECT = "product_state"
NAMED_MAX = 100  # products named in the entry (the count is always there): it stays small
ATTEMPTS = 3  # the ledger grew between verifying and writing: verify again, this many times


@dataclass(frozen=True)
class Upgraded:
    revision: str
    sealed_patients: int  # plain patient rows sealed under the PHI key
    phi_key_created: Path | None


@dataclass(frozen=True)
class Rebuilt:
    verified_size: int  # entries verified and replayed
    products: int  # rows the rebuilt table holds
    differed: dict[str, str]  # CoI -> what differed (empty: the table was right)
    recorded_index: int | None  # the system.state_rebuilt entry, if rows changed
    miscounted: str | None = None  # what was wrong with the state_count table, if anything


def upgrade_schema(svc: LedgerService) -> Upgraded:
    """``coi migrate``: the newest schema; plain patient rows sealed (``phi_store.migrate``)."""
    revision, sealed, created = phi_store.migrate(svc)
    return Upgraded(revision, sealed, svc.site.phi_key_path if created else None)


class _Moved(Exception):
    """Another writer appended between the verification and the rebuild's transaction."""


def rebuild_states(svc: LedgerService, *, jobs: int = 1,
                   progress: Callable[[int, int], None] | None = None) -> Rebuilt | None:
    """``coi migrate``: the product_state table rebuilt from the verified ledger (see the
    module docstring); None without a ledger, or for one without a process in force (it has
    no product rows). ``VerificationError`` (nothing changed) if the ledger fails verification."""
    if svc.store.head() is None:  # a schema without a ledger yet (before `coi init`)
        return None
    svc.require_initialised()
    if process_in_force(svc) is None:
        return None
    coi = CoiService(svc)
    for _ in range(ATTEMPTS):
        result, replayed = coi.replay(jobs=jobs, progress=progress)
        expected = coi.expected_rows(replayed)
        stored = coi.store.state_rows()
        diff = differences(stored, expected)
        miscounted = count_difference(coi.store.state_counts(), expected)
        if not diff and miscounted is None:
            return Rebuilt(result.size, len(expected), {}, None)
        names = sorted(diff)
        data: dict[str, Any] = {
            "reason": "the product_state table differed from the verified ledger: rebuilt",
            "verified_size": result.size,
            "verified_root": base64.b64encode(result.root).decode("ascii"),
            "products": len(expected), "differed": len(names),
            "named": [subject_of(n)[:40] for n in names[:NAMED_MAX]],
            "counts_differed": miscounted is not None}

        remove = [n for n in names if n in stored]
        rows = {n: expected[n] for n in names if n in expected}

        def write(tx: Tx, entry: SignedEntry, size: int = result.size,
                  remove: list[str] = remove, rows: dict[str, Any] = rows) -> None:
            if entry.statement.index != size:
                raise _Moved
            coi.store.replace_states(tx=tx, remove=remove, rows=rows)

        try:
            index = svc.record_system(REBUILT_TYPE, REBUILT_SUBJECT, data, after=write)
        except _Moved:
            continue
        return Rebuilt(result.size, len(expected), diff, index, miscounted)
    raise Refused(f"the ledger grew while it was being verified, {ATTEMPTS} times: the "
                  "product_state table was not rebuilt; run `coi migrate` again when fewer "
                  "stations are recording")
