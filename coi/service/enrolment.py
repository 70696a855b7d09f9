"""Enrolment and patient data: a new CoI identifier, the patient kept outside the ledger.

Owns the chain service's part about patients (``CoiService`` is made of this class and the
others of ``chain``): enrolling a patient under a new CoI identifier (the FIN's next sequence
number, never given twice), the patient's identifiers and a random secret sealed in the
``patient`` table under the patient's own key (``coi.service.phi``) while the ledger holds only
a keyed commitment to the patient id; ``patient_identity``, the name and date of birth a person
compares with the bag (labels, bedside), from the PHI store and never from the ledger; and
erasure, a signed and witnessed ``patient.erased`` entry that destroys the patient's key, which
leaves the ledger fully verifiable but unlinkable to the person. The patient file given at
enrolment is hostile input: checked here field by field.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from coi.db.repo import AppendContext
from coi.db.tx import Tx, write
from coi.domain import isbt
from coi.domain.facts import patient_commitment
from coi.ledger.entry import SignedEntry, Statement
from coi.ledger.registry import KeyRegistry
from coi.service.chain_core import ChainCore, Recorded, norm_id
from coi.service.errors import ConfigError, Refused, VerificationError
from coi.service.ledger import Party, Unlocked
from coi.service.phi import ERASED, Identity
from coi.service.phi_store import open_patient, phi_key

FIN = re.compile(r"[A-NP-Z1-9][0-9]{4}")
"""An ISBT 128 facility identification number (matched whole)."""
PATIENT_KEYS_MAX = 20
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ERASED_TYPE = "patient.erased"
PHI_VIEWERS = frozenset({"apheresis", "manufacturing", "treatment", "physician"})
"""Roles whose work compares a bag with the patient (labels, bedside): they may see a patient's
name and date of birth on request (``show_patient``); couriers and auditors may not."""


class Enrolment(ChainCore):
    def enrol(self, *, actor: Unlocked, patient: Mapping[str, Any], treatment_site: str,
              manufacturing_slot: str, witness: Unlocked | None = None) -> tuple[str, Recorded]:
        """Enrol a patient under a new CoI identifier; only a keyed commitment enters the ledger."""
        pid = _patient_id(patient, self.clock.now_ms())
        fin = str(self.site().get("fin", ""))
        if not FIN.fullmatch(fin):
            raise ConfigError("the site has no valid FIN in its genesis: re-create it with --fin")
        key = phi_key(self.ledger)  # before a CoI number is taken: no key, nothing consumed
        year = dt.datetime.fromtimestamp(self.clock.now_ms() / 1000, dt.UTC).year
        seq = self.store.next_coi_sequence(fin, year % 100)
        coi = isbt.assign_coi_id(fin, year, seq).text
        secret = os.urandom(32)
        sealed = key.seal(coi, secret, {k: str(v) for k, v in patient.items()})

        def keep_patient(tx: Tx, e: SignedEntry) -> None:
            self.store.put_patient(tx=tx, coi=coi, phi_key_id=sealed.key_id,
                                   wrapped_key=sealed.wrapped_key, sealed=sealed.sealed,
                                   enrolled_index=e.index)

        rec = self.record("enrolment", coi, actor=actor, witness=witness, after=keep_patient,
                          fields={"patient_commitment": patient_commitment(secret, pid),
                                  "treatment_site": treatment_site,
                                  "manufacturing_slot": manufacturing_slot})
        return coi, rec

    def patient_identity(self, coi: str) -> Identity | Literal["erased"]:
        """The name and date of birth of the patient of ``coi``, for a person comparing the bag
        with the patient (final-product label, bedside check): from the PHI store, never from
        the ledger. ``"erased"`` once the patient's key was destroyed. Refused when no patient
        is enrolled under ``coi`` or none was given at enrolment; ConfigError without the PHI
        key."""
        coi = norm_id(coi)
        found = open_patient(self.ledger, self.store, coi)
        if found is None:
            raise Refused(f"no patient is enrolled under {coi}")
        if found == ERASED:
            return ERASED
        assert not isinstance(found, str)
        name = found.identifiers.get("name", "").strip()
        dob = found.identifiers.get("date_of_birth", "").strip()
        if not name or not dob:
            raise Refused(f"the patient of {coi} was enrolled without \"name\" and "
                          "\"date_of_birth\": the bag cannot be compared with the patient by "
                          "name and date of birth; check the wristband against the hospital's "
                          "record")
        return Identity(name=name, date_of_birth=dob)

    def show_patient(self, viewer: Unlocked, coi: str) -> Identity | Literal["erased"]:
        """``patient_identity`` on request of a signed-in person (``coi patient show``): only
        for the roles in ``PHI_VIEWERS``; a refusal is recorded."""
        if not self.ledger.registry().roles_of(viewer.user) & PHI_VIEWERS:
            why = ("only staff who compare a bag with the patient ("
                   + ", ".join(sorted(PHI_VIEWERS)) + ") may see a patient's name and date "
                   "of birth")
            idx = self._record_refusal("patient_identity", norm_id(coi), viewer, None, None,
                                       [why])
            raise Refused(why, recorded_index=idx)
        return self.patient_identity(coi)

    def patient_secret(self, coi: str) -> bytes | None:
        """The secret behind the ledger's commitment (None when erased or never enrolled)."""
        found = open_patient(self.ledger, self.store, coi)
        return None if found is None or isinstance(found, str) else found.secret

    def keep_received_patient(self, coi: str, secret: bytes, patient: Mapping[str, Any]) -> None:
        """Keep, in this site's PHI store, the patient of a product that came by hand-off: the
        hospital that collected holds the patient's record (often the very hospital that treats);
        the bedside check here compares the wristband with the commitment the hand-off carried.
        Refused unless the product is here without a patient, and the secret and patient id
        make that very commitment (a record of another patient, or a wrong secret, is refused).
        Nothing enters the ledger: the enrolment at the collecting site is the signed act."""
        coi = norm_id(coi)
        product = self.chain().product(coi)
        if product is None or product.patient_commitment is None:
            raise Refused(f"{coi} has not come here by hand-off: no patient to keep for it")
        pid = _patient_id(patient, self.clock.now_ms())
        if not secret or patient_commitment(secret, pid) != product.patient_commitment:
            raise Refused(f"this patient record does not match {coi}'s commitment: it is another "
                          "patient's, or the secret is not the one of its enrolment")
        if self.store.patient(coi) is not None:
            raise Refused(f"a patient is already kept here for {coi}")
        sealed = phi_key(self.ledger).seal(coi, secret, {k: str(v) for k, v in patient.items()})
        with write(self.ledger.engine) as tx:
            self.store.put_patient(tx=tx, coi=coi, phi_key_id=sealed.key_id,
                                   wrapped_key=sealed.wrapped_key, sealed=sealed.sealed,
                                   enrolled_index=product.enrolled_index)

    def erase_patient(self, admin: Unlocked, coi: str, reason: str, *,
                      witness: Unlocked) -> int:
        """Destroy the patient's key: a ``patient.erased`` entry signed by an administrator and
        witnessed; the ledger stays fully verifiable. Refusals are recorded."""
        coi = norm_id(coi)
        reason = reason.strip()

        def refuse(why: str) -> Refused:
            idx = self._record_refusal("patient_erasure", coi, admin, witness, None, [why])
            return Refused(why, recorded_index=idx)

        if not self.ledger.registry().is_admin(admin.user):
            raise refuse("only an administrator may erase a patient's identifiers")
        if not reason or len(reason) > 500 or not reason.isprintable():
            raise refuse("give the reason for the erasure (1–500 printable characters, e.g. "
                         "the reference of the patient's request)")
        found = open_patient(self.ledger, self.store, coi)
        if found is None:
            raise refuse(f"no patient record for {coi}")
        if isinstance(found, str):
            raise refuse(f"the identifiers of the patient of {coi} are already erased")
        folded = reason.casefold()
        if any(len(v.strip()) >= 3 and v.strip().casefold() in folded
               for v in found.identifiers.values()):
            raise refuse("the reason must not contain the patient's identifiers (the ledger "
                         "holds no patient data): give the request's reference instead")

        def still_admin(_ctx: AppendContext, reg: KeyRegistry) -> None:
            if not reg.is_admin(admin.user):
                raise Refused("only an administrator may erase a patient's identifiers")

        def destroy(tx: Tx, e: SignedEntry) -> None:
            if not self.store.erase_patient(tx=tx, coi=coi, now_ms=e.statement.time_ms):
                raise Refused(f"the identifiers of the patient of {coi} are already erased")

        e = self.ledger.append(ERASED_TYPE, coi, {"reason": reason},
                               [Party(admin, "authored"), Party(witness, "witnessed")],
                               check=still_admin, after=destroy)
        self.store.scrub_log()
        return e.index


def _patient_id(patient: Mapping[str, Any], now_ms: int) -> str:
    if not isinstance(patient, Mapping) or not patient:
        raise Refused("the patient file must be a JSON object with at least \"patient_id\"")
    if len(patient) > PATIENT_KEYS_MAX:
        raise Refused(f"the patient file has more than {PATIENT_KEYS_MAX} fields")
    for k, v in patient.items():
        if not isinstance(k, str) or not isinstance(v, str) or len(v) > 200 or not v.isprintable():
            raise Refused(f"patient field {str(k)[:40]!r} must be printable text up to 200 "
                          "characters")
    if "name" in patient and not str(patient["name"]).strip():
        raise Refused("patient field \"name\" is empty")
    if "date_of_birth" in patient:
        _check_birth_date(str(patient["date_of_birth"]), now_ms)
    pid = patient.get("patient_id")
    if not isinstance(pid, str) or not pid.strip():
        raise Refused("the patient file needs \"patient_id\" (the hospital's identifier, as "
                      "printed on the wristband)")
    return pid.strip()


def _check_birth_date(text: str, now_ms: int) -> None:
    try:
        if not DATE.fullmatch(text):
            raise ValueError
        born = dt.date.fromisoformat(text)
    except ValueError:
        raise Refused(f"patient field \"date_of_birth\" {text[:20]!r} is not a date: write it "
                      "as YYYY-MM-DD, e.g. 1961-02-03") from None
    if born > dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date():
        raise Refused("patient field \"date_of_birth\" is in the future")


def check_erasure(st: Statement, reg: KeyRegistry) -> None:
    """``coi verify``: a ``patient.erased`` entry was authored by an administrator (at its
    index) and witnessed by someone else, and says why."""
    who = [(s.user, s.meaning) for s in st.signers]
    if (len(who) != 2 or who[0][1] != "authored" or who[1][1] != "witnessed"
            or who[0][0] == who[1][0] or not reg.is_admin(who[0][0])
            or not isinstance(st.data.get("reason"), str)):
        raise VerificationError("a patient erasure must be authored by an administrator, "
                                "witnessed by another person and give a reason", index=st.index)
