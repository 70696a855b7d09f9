"""Site administration that is not a ledger entry: schema upgrades."""

from __future__ import annotations

from coi.service.ledger import LedgerService


def upgrade_schema(svc: LedgerService) -> str:
    return svc.db.upgrade()
