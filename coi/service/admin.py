"""Site administration that is not a ledger entry: schema upgrades."""

from __future__ import annotations

from coi.db import migrate
from coi.service.ledger import LedgerService


def upgrade_schema(svc: LedgerService) -> str:
    migrate.upgrade(svc.engine)
    return migrate.current_revision(svc.engine) or "none"
