"""The ledger service: every write and every check of the ledger goes through here.

``LedgerService`` is what the CLI and the TUI call; they hold no rules of their own. It is made
of parts, each owning its methods in its own module over the core's append path:

- ``ledger_core``: opening a site, ``init`` (schema, log key, genesis), the schema checks, the
  key registry, ``append`` and the site's own ``record_system`` entries; ``Unlocked`` and
  ``Party`` (who signs);
- ``people``: ``unlock`` (failed attempts counted, lockout, each recorded), ``enrol``,
  ``revoke``, ``reset``, ``rotate``, ``unlock_account``, ``users``;
- ``proofs``: ``checkpoint``, ``root_at``, ``prove_inclusion``, ``prove_consistency``;
- ``verification``: ``verify`` (optionally in several processes).
"""

from __future__ import annotations

from coi.service.ledger_core import AfterAppend, Party, Unlocked
from coi.service.people import MAX_FAILED_LOGINS, People
from coi.service.proofs import Proofs
from coi.service.verification import Verification

__all__ = ["MAX_FAILED_LOGINS", "AfterAppend", "LedgerService", "Party", "Unlocked"]


class LedgerService(People, Proofs, Verification):
    """A site's ledger service (see the module docstring for where each method lives)."""
