"""Signed labels (``COS1``): who signs them, and how a scan of one is verified.

Owns the signing side of coi's label payload (``docs/labels.md``, "Signed labels"): a signed
label is signed by **the issuing person's registered Ed25519 key** (the key that signs the
``label_issue`` or ``label_reprint`` entry), named in the payload by its **label key id**, the
first 4 bytes of the SHA-256 of the 32-byte public key (8 hexadecimal digits: the first 8 of
the key id the ledger prints). A partner that holds the public keys (from a hand-off file) can
verify the label offline with :func:`coi.domain.payload.verify_signed`.

Verifying a scan (:func:`signature_problem`) uses the ledger's key registry, caught up with the
stored ledger, and the entry that issued the label. In this order, each refusal with its own
message:

1. the key id names no key in the registry: **unknown key**;
2. the key was not valid when the label was issued (revoked or replaced before, or enrolled
   after): **revoked key**;
3. the signature does not verify with that key: **bad signature** (altered or forged);
4. the key is valid and the signature good, but it is not the key that issued this label: the
   label was made by someone else's key;
5. a plain (``COI1``) scan of a label that was issued signed: a signed label is never accepted
   without its signature (a forger cannot fall back to the plain payload).

A label that came from a partner (its issuing entry here is the ``handoff.received`` that
brought the product) is verified against the issuer the receiving person recorded in that entry
(``label_issuers``, docs/federation.md): the key of the partner's person who issued it, taken
from the hand-off file verified against the partner's pinned log key. A signed scan must carry
that key's id and a good signature by it; a plain scan of a label recorded as signed is refused
(:func:`_partner_problem`). A ``handoff.received`` written before that record existed keeps the
checks above.

What a hand-off brings of the labels (``label_issuers``) is derived by
:mod:`coi.domain.handoff_carry` (one derivation, for the receiver and ``coi verify-chain``).
The COS1 text itself is parsed only by :mod:`coi.domain.payload` (one parser).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coi.domain import payload as payload_mod
from coi.domain.errors import ScanError
from coi.domain.handoff_carry import (  # the first three re-exported: they were defined here
    LABEL_ISSUERS,
    SIGNED_MARK,
    carried_issuers,
    issuer_record,
)
from coi.domain.handoff_import import HANDOFF_RECEIVED
from coi.domain.state import Label
from coi.ledger.entry import Statement, check_entry
from coi.ledger.errors import VerificationError
from coi.ledger.registry import KeyRecord
from coi.service import partners
from coi.service.chain import CoiService
from coi.service.ledger import Unlocked
from coi.service.text import inert

__all__ = [
    "LABEL_ISSUERS",
    "LABEL_KEY_ID_BYTES",
    "SIGNED_MARK",
    "Issued",
    "carried_issuers",
    "issued",
    "label_key_id",
    "sign_label",
    "signature_problem",
]

LABEL_KEY_ID_BYTES: Final = 4


def label_key_id(public_key: bytes) -> bytes:
    """A public key's id in a signed label: the first 4 bytes of its SHA-256."""
    return hashlib.sha256(public_key).digest()[:LABEL_KEY_ID_BYTES]


def sign_label(actor: Unlocked, coi: str, code: str) -> str:
    """The ``COS1`` payload for label code ``code`` of ``coi``, signed by ``actor``'s key."""
    return payload_mod.sign(coi, code, label_key_id(actor.public_key), actor.key)


@dataclass(frozen=True)
class Issued:
    """The entry that issued a label: its index, the key that signed it, and whether the label
    was printed signed. For a label brought by a hand-off (``partner`` set), ``index`` is the
    ``handoff.received`` entry and the rest is the issuer that entry records (``key`` empty when
    it records none for this label)."""

    index: int
    user: str
    key: bytes
    signed: bool
    partner: str | None = None  # who issued it: the partner's name here (or its origin)
    template: str = ""  # the template its entry recorded ("" for a partner's label)


def issued(svc: CoiService, label: Label) -> Issued:
    """The facts of the entry that issued ``label`` (its signatures checked)."""
    if not label.events:
        raise VerificationError("the label has no issuing entry", index=-1)
    index = label.events[0]
    row = svc.ledger.store.row(index)
    if row is None:
        raise VerificationError("the entry is missing", index=index)
    st = check_entry(row, svc.ledger.origin()).statement
    if st.type == HANDOFF_RECEIVED and LABEL_ISSUERS in st.data:
        return _from_partner(svc, st, label.id)
    template = str(st.data.get("template", ""))
    return Issued(index, st.author.user, st.author.key, SIGNED_MARK in template.split(),
                  template=template)


def _from_partner(svc: CoiService, st: Statement, label_id: str) -> Issued:
    recorded = st.data[LABEL_ISSUERS]
    if not isinstance(recorded, Mapping):
        raise VerificationError(f"its {LABEL_ISSUERS} is not an object", index=st.index)
    rec = recorded.get(label_id)
    sender = str(st.data.get("from", st.data.get("sender_origin", "")))
    if rec is None:
        return Issued(st.index, "", b"", False, sender)
    issuer = issuer_record(rec)
    if issuer is None:
        raise VerificationError(f"its issuer of {label_id} is malformed", index=st.index)
    origin = str(issuer["origin"])
    if origin != st.data.get("sender_origin"):
        p = partners.replay(svc.ledger).by_origin(origin)
        sender = p.name if p is not None else origin
    return Issued(st.index, str(issuer["user"]), base64.b64decode(str(issuer["key"])),
                  bool(issuer["signed"]), sender)


def _hex(key_id: bytes) -> str:
    return key_id.hex().upper()


_DO_NOT_USE: Final = "Do not use the item; quarantine it and report the label."


def signature_problem(svc: CoiService, label_id: str, label: Label,
                      scanned: payload_mod.LabelPayload) -> str | None:
    """Why a scan of ``label`` (an issued label) cannot be trusted, or None when it can.

    A plain scan is refused when the label was issued signed; a signed scan must be signed by
    the key that issued it, valid in the registry at that entry (see the module docstring).
    """
    try:
        facts = issued(svc, label)
    except VerificationError as e:
        return f"the entry that issued label {label_id} fails verification ({e.reason})"
    if facts.partner is not None:
        return _partner_problem(facts, label_id, scanned)
    if not scanned.signed:
        if facts.signed:
            return (f"label {label_id} was printed signed, but this scan carries no signature: "
                    f"it is not the label coi printed. {_DO_NOT_USE}")
        return None
    assert scanned.key_id is not None
    named = _hex(scanned.key_id)
    reg = svc.ledger.registry()
    candidates = [(pk, rec) for pk, rec in reg.keys.items() if label_key_id(pk) == scanned.key_id]
    if not candidates:
        return (f"the label is signed with key {named}, which is not in this site's key "
                f"registry: coi here did not print it. {_DO_NOT_USE}")
    valid = [(pk, rec) for pk, rec in candidates if rec.valid_at(facts.index)]
    if not valid:
        return _revoked(named, candidates[0][1], label_id, facts.index)
    good = [(pk, rec) for pk, rec in valid if _verifies(scanned, pk)]
    if not good:
        return (f"the label's signature does not verify with key {named} "
                f"({valid[0][1].user}): the label was altered or forged. {_DO_NOT_USE}")
    if all(pk != facts.key for pk, _ in good):
        return (f"label {label_id} was issued by {facts.user} (key "
                f"{_hex(label_key_id(facts.key))}), but this one is signed with key {named} of "
                f"{good[0][1].user}: it is not the label coi printed. {_DO_NOT_USE}")
    return None


def _partner_problem(facts: Issued, label_id: str, scanned: payload_mod.LabelPayload
                     ) -> str | None:
    """A scan of a label a partner issued, against the issuer recorded at its receipt here."""
    who = inert(facts.partner)
    if not facts.key:
        if not scanned.signed:
            return None
        return (f"label {label_id} came from partner {who} (hand-off received at entry "
                f"{facts.index}), which recorded no issuer for it: its signature cannot be "
                f"checked. {_DO_NOT_USE}")
    if not scanned.signed:
        if facts.signed:
            return (f"label {label_id} was printed signed by partner {who}, but this scan "
                    f"carries no signature: it is not the label {who} printed. {_DO_NOT_USE}")
        return None
    assert scanned.key_id is not None
    named, own = _hex(scanned.key_id), _hex(label_key_id(facts.key))
    if scanned.key_id != label_key_id(facts.key):
        return (f"the label is signed with key {named}, but label {label_id} was issued at "
                f"partner {who} by {inert(facts.user)} with key {own} (recorded at its receipt, "
                f"entry {facts.index}): it is not the label {who} printed. {_DO_NOT_USE}")
    if not _verifies(scanned, facts.key):
        return (f"the label's signature does not verify with key {own} of {inert(facts.user)} "
                f"at partner {who}: the label was altered or forged. {_DO_NOT_USE}")
    return None


def _revoked(named: str, rec: KeyRecord, label_id: str, at: int) -> str:
    if rec.revoked_at is not None and rec.revoked_at < at:
        why = rec.revoked_reason or "no reason given"
        return (f"the label is signed with key {named} of {rec.user}, revoked at entry "
                f"{rec.revoked_at} ({why}), before label {label_id} was issued at entry {at}: a "
                f"revoked key signs no label. {_DO_NOT_USE}")
    return (f"the label is signed with key {named} of {rec.user}, which was not valid when "
            f"label {label_id} was issued at entry {at}. {_DO_NOT_USE}")


def _verifies(scanned: payload_mod.LabelPayload, public_key: bytes) -> bool:
    try:
        payload_mod.verify_signed(scanned, Ed25519PublicKey.from_public_bytes(public_key))
    except (ScanError, ValueError):
        return False
    return True
