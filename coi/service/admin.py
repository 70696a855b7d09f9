"""Site administration that is not a ledger entry: schema upgrades."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coi.service import phi_store
from coi.service.ledger import LedgerService


@dataclass(frozen=True)
class Upgraded:
    revision: str
    sealed_patients: int  # plain patient rows sealed under the PHI key
    phi_key_created: Path | None


def upgrade_schema(svc: LedgerService) -> Upgraded:
    """``coi migrate``: the newest schema; plain patient rows sealed (``phi_store.migrate``)."""
    revision, sealed, created = phi_store.migrate(svc)
    return Upgraded(revision, sealed, svc.site.phi_key_path if created else None)
