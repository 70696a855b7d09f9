"""The PHI store as the service reads it: a patient's sealed record opened with the site's key.

``open_patient`` is the one place a sealed patient record is opened (the bedside wristband
match, ``patient_identity``, erasure); ``seal_plain_rows`` is what ``coi migrate`` hands the
migration that seals the rows of a database from before sealing; ``migrate`` runs it.
Identifiers never leave here except to the person comparing the bag with the patient.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

from coi.db.chain_repo import ChainStore
from coi.service.errors import ConfigError
from coi.service.ledger import LedgerService
from coi.service.phi import (
    ERASED,
    Opened,
    PhiKey,
    Sealed,
    new_phi_key,
    read_phi_key,
    write_phi_key,
)


def phi_key(ledger: LedgerService) -> PhiKey:
    """The site's PHI key (the file beside the log key, or ``COI_PHI_KEY``); ConfigError if it
    is missing, readable by group or others, or another ledger's."""
    return read_phi_key(ledger.site.phi_key_path, ledger.origin())


def open_patient(ledger: LedgerService, store: ChainStore, coi: str
                 ) -> Opened | Literal["erased"] | None:
    """The patient's secret and identifiers; ``"erased"`` once their key is destroyed; None if
    no patient is enrolled under ``coi``."""
    row = store.patient(coi)
    if row is None:
        return None
    if row.wrapped_key is None or row.sealed is None or row.phi_key_id is None:
        return ERASED
    return phi_key(ledger).open(coi, Sealed(key_id=row.phi_key_id, wrapped_key=row.wrapped_key,
                                            sealed=row.sealed))


Sealer = Callable[[str, bytes, str | None], tuple[str, bytes, bytes]]


def _sealer(key: PhiKey) -> Sealer:
    def seal(coi: str, secret: bytes, identifiers: str | None) -> tuple[str, bytes, bytes]:
        try:
            obj: Any = json.loads(identifiers) if identifiers else {}
        except ValueError:
            obj = {"identifiers": identifiers}
        ids = {str(k): str(v) for k, v in obj.items()} if isinstance(obj, Mapping) else {}
        s = key.seal(coi, secret, ids)
        return s.key_id, s.wrapped_key, s.sealed
    return seal


def migrate(ledger: LedgerService) -> tuple[str, int, bool]:
    """``coi migrate``: bring the schema up to date, sealing plain patient rows with the PHI key
    (created beside the log key, mode 0600, when a ledger from before sealing has none).

    Returns the revision, how many rows were sealed, and whether the PHI key file was created.
    After sealing, a SQLite file is rebuilt and its WAL truncated so that no page of the plain
    rows remains."""
    attributes: dict[str, Any] = {}
    created = False
    db = ledger.db
    if not db.has_table("ledger_head"):
        raise ConfigError(f"{db.url.display} holds no coi ledger (no ledger tables): `coi "
                          "migrate` only upgrades a ledger made by `coi init`; give the ledger's "
                          "--db, or create one with `coi init`. Nothing was written.")
    if db.has_column("patient", "secret") and ledger.store.head() is not None:
        # a ledger from before sealing: no row is sealed yet, so a new PHI key is safe
        path = ledger.site.phi_key_path
        if not path.exists():
            write_phi_key(path, new_phi_key(ledger.origin()))
            created = True
        attributes["coi_phi_seal"] = _sealer(phi_key(ledger))
    try:
        revision = db.upgrade(attributes)
    except BaseException as e:
        if created:  # nothing was sealed under it (the migration rolled back)
            ledger.site.phi_key_path.unlink(missing_ok=True)
        if isinstance(e, RuntimeError):
            raise ConfigError(str(e)) from None
        raise
    sealed = int(attributes.get("coi_phi_sealed", 0))
    if sealed:
        db.compact()
    return revision, sealed, created
