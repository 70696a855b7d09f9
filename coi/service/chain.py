"""Chain-of-identity glue between the ledger service and the process definition.

Owns what the ledger CLI needs from the domain before the full chain service exists: the
genesis's site and process data, role names, the refusal of process entry types through the
generic append, and verification with the process replay.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from coi.domain.process import load_process
from coi.ledger.verify import VerifiedLog
from coi.service.errors import ConfigError, Refused
from coi.service.ledger import LedgerService

_FIN = re.compile(r"^[A-NP-Z1-9][0-9]{4}$")


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
    if not _FIN.match(fin):
        raise ConfigError(f"--fin {fin!r} is not an ISBT 128 facility identification number "
                          "(a letter or digit other than O/0, then 4 digits; A9990–A9999 for "
                          "tests and demos)")
    p = load_process()
    return {"fin": fin}, {"name": p.name, "version": p.version, "sha256": p.sha256}


def process_in_force(svc: LedgerService) -> Mapping[str, Any] | None:
    g = svc.registry().genesis
    return g.process if g is not None else None


def refuse_process_types(svc: LedgerService, type_: str) -> None:
    """Once a process is in force, its own entry types go only through `coi record`."""
    if process_in_force(svc) is None:
        return
    p = load_process()
    if type_ in p.entry_types:
        raise Refused(f"{type_!r} belongs to the process {p.name} {p.version}: record it with "
                      "`coi record`, which checks the process rules")


def verify_all(svc: LedgerService, *, jobs: int = 1, checkpoints: Sequence[str] = ()
               ) -> VerifiedLog:
    return svc.verify(jobs=jobs, checkpoints=checkpoints)
