"""Enrolment and patient data: a new CoI identifier, the patient kept outside the ledger.

Owns the chain service's part about patients (``CoiService`` is made of this class and the
others of ``chain``): enrolling a patient under a new CoI identifier (the FIN's next sequence
number, never given twice), the patient's identifiers and a random secret kept in the
``patient`` table while the ledger holds only a keyed commitment to the patient id, and erasing
the secret and identifiers, which leaves the ledger fully verifiable but unlinkable to the
person. The patient file given at enrolment is hostile input: checked here field by field.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from coi.db.tx import Tx
from coi.domain import isbt
from coi.domain.facts import patient_commitment
from coi.ledger.entry import SignedEntry
from coi.service.chain_core import ChainCore, Recorded, clip, norm_id
from coi.service.errors import ConfigError, Refused
from coi.service.ledger import Unlocked

FIN = re.compile(r"[A-NP-Z1-9][0-9]{4}")
"""An ISBT 128 facility identification number (matched whole)."""
PATIENT_KEYS_MAX = 20


class Enrolment(ChainCore):
    def enrol(self, *, actor: Unlocked, patient: Mapping[str, Any], treatment_site: str,
              manufacturing_slot: str, witness: Unlocked | None = None) -> tuple[str, Recorded]:
        """Enrol a patient under a new CoI identifier; only a keyed commitment enters the ledger."""
        pid = _patient_id(patient)
        fin = str(self.site().get("fin", ""))
        if not FIN.fullmatch(fin):
            raise ConfigError("the site has no valid FIN in its genesis: re-create it with --fin")
        year = dt.datetime.fromtimestamp(self.clock.now_ms() / 1000, dt.UTC).year
        seq = self.store.next_coi_sequence(fin, year % 100)
        coi = isbt.assign_coi_id(fin, year, seq).text
        secret = os.urandom(32)
        identifiers = json.dumps({k: str(v) for k, v in patient.items()}, sort_keys=True)

        def keep_patient(tx: Tx, e: SignedEntry) -> None:
            self.store.put_patient(tx=tx, coi=coi, secret=secret, identifiers=identifiers,
                                   enrolled_index=e.index)

        rec = self.record("enrolment", coi, actor=actor, witness=witness, after=keep_patient,
                          fields={"patient_commitment": patient_commitment(secret, pid),
                                  "treatment_site": treatment_site,
                                  "manufacturing_slot": manufacturing_slot})
        return coi, rec

    def erase_patient(self, admin: Unlocked, coi: str, reason: str) -> int:
        """Erase the patient's secret and identifiers; the ledger stays fully verifiable."""
        if not self.ledger.registry().is_admin(admin.user):
            raise Refused("only an administrator may erase patient data")
        if not self.store.erase_patient(norm_id(coi), self.clock.now_ms()):
            raise Refused(f"no patient record for {coi}")
        return self.ledger.record_system("system.patient_erased", norm_id(coi),
                                         {"by": admin.user, "reason": clip(reason, 500)})


def _patient_id(patient: Mapping[str, Any]) -> str:
    if not isinstance(patient, Mapping) or not patient:
        raise Refused("the patient file must be a JSON object with at least \"patient_id\"")
    if len(patient) > PATIENT_KEYS_MAX:
        raise Refused(f"the patient file has more than {PATIENT_KEYS_MAX} fields")
    for k, v in patient.items():
        if not isinstance(k, str) or not isinstance(v, str) or len(v) > 200 or not v.isprintable():
            raise Refused(f"patient field {str(k)[:40]!r} must be printable text up to 200 "
                          "characters")
    pid = patient.get("patient_id")
    if not isinstance(pid, str) or not pid.strip():
        raise Refused("the patient file needs \"patient_id\" (the hospital's identifier, as "
                      "printed on the wristband)")
    return pid.strip()
