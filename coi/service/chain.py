"""The chain-of-identity service: the one place the process rules are enforced.

``CoiService`` is what the CLI and the TUI call; neither holds a rule. It is made of parts,
each owning its methods in its own module over the core:

- ``chain_core``: the process in force, the chain state caught up with the ledger, the product
  state table kept in step with it, ``record`` (steps checked under the ledger's write lock;
  refusals, and refused scans, recorded as signed site entries; deviations opened
  automatically when a window is exceeded);
- ``enrolment``: ``enrol`` (CoI identifier assignment, the patient kept outside the ledger as a
  keyed commitment, their identifiers sealed in the PHI store), ``patient_identity`` (name and
  date of birth for the person comparing bag and patient) and ``erase_patient``;
- ``chain_views``: ``show`` (the timeline), ``status``, ``products``, ``local_time``.

This module adds the replay of every process entry during ``coi verify`` (``CoiService.verify``,
``verify_all``) and the helpers the ledger commands use (roles, the genesis's process and FIN,
process entry types refused outside ``coi record``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from coi.db.chain_repo import ChainStore
from coi.db.tx import Tx
from coi.domain.handoff_import import HANDOFF_RECEIVED
from coi.domain.loader import load_process
from coi.domain.replay import Replayer
from coi.domain.state import ChainState
from coi.ledger.entry import CheckedEntry
from coi.ledger.errors import VerificationError
from coi.ledger.registry import KeyRegistry
from coi.ledger.verify import VerifiedLog
from coi.service.chain_core import (
    AUTHOR_MEANING,
    ChainCore,
    Recorded,
    definition_in_force,
    fact_of,
    process_in_force,
    signer_of,
    subject_of,
)
from coi.service.chain_views import SOON_MS, ChainViews
from coi.service.enrolment import ERASED_TYPE, FIN, PATIENT_KEYS_MAX, Enrolment, check_erasure
from coi.service.errors import ConfigError, Refused
from coi.service.ledger import LedgerService
from coi.service.projection import count_difference, differences, state_row

__all__ = ["AUTHOR_MEANING", "PATIENT_KEYS_MAX", "SOON_MS", "ChainCore", "CoiService",
           "Recorded", "check_roles", "definition_in_force", "fact_of", "genesis_extras",
           "process_in_force", "process_roles", "refuse_process_types", "signer_of",
           "verify_all"]


# ------------------------------------------------------------------ helpers for the ledger CLI
def process_roles() -> frozenset[str]:
    return frozenset(load_process().roles)


def check_roles(roles: Iterable[str]) -> None:
    known = process_roles()
    bad = sorted(set(roles) - known)
    if bad:
        raise Refused(f"unknown role(s) {', '.join(bad)}; roles are {', '.join(sorted(known))}")


def genesis_extras(fin: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The genesis's site data (FIN) and the process definition in force (by hash)."""
    fin = fin.strip().upper()
    if not FIN.fullmatch(fin):
        raise ConfigError(f"--fin {fin!r} is not an ISBT 128 facility identification number "
                          "(a letter or digit other than O/0, then 4 digits; A9990–A9999 for "
                          "tests and demos)")
    p = load_process()
    return {"fin": fin}, {"name": p.name, "version": p.version, "sha256": p.sha256}


def refuse_process_types(svc: LedgerService, type_: str, *, subject: str = "",
                         by: str = "") -> None:
    """Once a process is in force, its own entry types go only through `coi record`; a
    patient's erasure goes only through `coi patient erase`."""
    if type_ == ERASED_TYPE:
        reason = ("a patient's erasure is recorded only by `coi patient erase`, which destroys "
                  "the patient's key")
        idx = svc.record_system("system.refusal", subject_of(subject),
                                {"attempted": type_, "by": by, "reasons": [reason],
                                 "via": "coi append"})
        raise Refused(reason, recorded_index=idx)
    if process_in_force(svc) is None:
        return
    found = definition_in_force(svc)
    p = found[0] if found is not None else load_process()
    if type_ in p.entry_types:
        reason = (f"{type_!r} belongs to the process {p.name} {p.version}: record it with "
                  "`coi record`, which checks the process rules")
        idx = svc.record_system("system.refusal", subject_of(subject),
                                {"attempted": type_, "by": by, "reasons": [reason],
                                 "via": "coi append"})
        raise Refused(reason, recorded_index=idx)


def verify_all(svc: LedgerService, *, jobs: int = 1, checkpoints: Sequence[str] = (),
               replica: bool = False) -> VerifiedLog:
    """`coi verify`: the ledger, plus the process replay and the state table when in force
    (``replica``: read from the read replica, as ``LedgerService.verify``; ``svc.read_from``
    says which database was read)."""
    svc.require_initialised()
    if process_in_force(svc) is None:
        return svc.verify(jobs=jobs, checkpoints=checkpoints, replica=replica)
    return CoiService(svc).verify(jobs=jobs, checkpoints=checkpoints, replica=replica)


# ------------------------------------------------------------------------------- the service
class CoiService(Enrolment, ChainViews):
    """A site's chain-of-identity service (see the module docstring for where each method
    lives)."""

    # -- verification --------------------------------------------------------------------------
    def verify(self, *, jobs: int = 1, checkpoints: Sequence[str] = (),
               progress: Any = None, replica: bool = False) -> VerifiedLog:
        """The ledger verified with every process entry replayed, and the product_state table
        (read in the same snapshot as the head) compared with what the replay makes.
        ``replica``: as ``LedgerService.verify``."""
        replayer, hook = self._replay_hook()

        def compare(_result: VerifiedLog, store: ChainStore, tx: Tx) -> None:
            self._compare_tables(replayer.chain, store.state_rows(tx=tx),
                                 store.state_counts(tx=tx))

        return self.ledger.verify(jobs=jobs, checkpoints=checkpoints, hook=hook,
                                  progress=progress, replica=replica, beside=compare)

    def replay(self, *, jobs: int = 1, progress: Any = None) -> tuple[VerifiedLog, ChainState]:
        """Verify the whole ledger on the primary, replaying every process entry: the
        verified log and the state of every product it makes (what the product_state table
        must hold)."""
        replayer, hook = self._replay_hook()
        result = self.ledger.verify(jobs=jobs, hook=hook, progress=progress)
        return result, replayer.chain

    def _replay_hook(self) -> tuple[Replayer, Callable[[CheckedEntry, KeyRegistry], None]]:
        replayer = Replayer(self.process())

        def hook(c: CheckedEntry, reg: KeyRegistry) -> None:
            """The domain's replay, fed each process entry (a ReplayError names the entry)."""
            if replayer.owns(c.statement.type) or c.statement.type == HANDOFF_RECEIVED:
                replayer.feed(fact_of(c.statement, reg))
            elif c.statement.type == ERASED_TYPE:
                check_erasure(c.statement, reg)

        return replayer, hook

    def expected_rows(self, replayed: ChainState) -> dict[str, dict[str, Any]]:
        """The product_state rows the replayed ledger makes, by CoI."""
        process = self.process()
        return {coi: state_row(process, p) for coi, p in replayed.products.items()}

    def _compare_tables(self, replayed: ChainState, stored: dict[str, dict[str, Any]],
                        counts: dict[str, int]) -> None:
        expected = self.expected_rows(replayed)
        diff = differences(stored, expected)
        if diff:
            coi, what = next(iter(diff.items()))
            more = f" (and {len(diff) - 1} other products)" if len(diff) > 1 else ""
            raise VerificationError(
                f"the product_state table disagrees with the ledger for {coi}{more}: {what}; "
                "the table was changed outside coi: the entries themselves verified, so run "
                "`coi migrate` to rebuild the table from them")
        wrong = count_difference(counts, expected)
        if wrong is not None:
            raise VerificationError(
                f"the state_count table disagrees with the ledger ({wrong}): it was changed "
                "outside coi; the entries themselves verified, so run `coi migrate` to count "
                "again from them")
