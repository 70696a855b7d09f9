"""What a hand-off brings to its receiver, derived from the sender's entries: one function.

A ``handoff.received`` entry (docs/federation.md, "The product goes on at the receiver" and
"The partner's labels at the receiver") carries, signed by the receiving person, the product's
``state`` as the sender's shipment left it and ``label_issuers``, who issued each of its labels.
Both are derived from the hand-off file, never taken from a claim: :func:`carry` replays the
sender's in-scope entries up to the shipping entry, in index order, under the **receiver's**
process definition, and exports the product (:func:`~coi.domain.handoff_import.exported`) and
the issuer of each label (:func:`carried_issuers`).

The receiving site calls it when it records the receipt (``coi.service.handoff_receive``);
``coi verify-chain`` calls it again from the sender's file to check that what the receiver
signed is what the sender's entries imply (``coi.export.chain_carried``). One function, so the
two cannot drift apart.

Pure and deterministic: the entries' signatures were verified before (against the sender's
pinned log key, or the key an auditor trusts); nothing here reads a database.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from coi.domain.facts import Fact, Signer
from coi.domain.handoff_import import HANDOFF_RECEIVED, exported
from coi.domain.process import Process
from coi.domain.product import Label
from coi.domain.state import ChainState
from coi.ledger.entry import Statement, b64

__all__ = [
    "ISSUER_KEYS",
    "LABEL_ISSUERS",
    "SIGNED_MARK",
    "Carried",
    "carried_issuers",
    "carry",
    "issuer_record",
]

SIGNED_MARK: Final = "signed"
"""The word in a label's recorded template that says it was printed with a signed payload."""
LABEL_ISSUERS: Final = "label_issuers"
"""The key of a ``handoff.received`` entry's data recording who issued each label it brings."""
ISSUER_KEYS: Final = frozenset({"key", "origin", "signed", "user"})


@dataclass(frozen=True)
class Carried:
    """What the receiver records of a shipped product: its ``state`` and ``label_issuers``
    (JSON objects, as the ``handoff.received`` entry's data holds them)."""

    state: dict[str, Any]
    label_issuers: dict[str, dict[str, Any]]


def carry(process: Process, entries: Mapping[int, Statement], shipment_index: int, coi: str,
          sender_origin: str) -> Carried | None:
    """The product ``coi`` as the sender's shipment (entry ``shipment_index``) left it: the
    sender's in-scope ``entries`` up to that index, applied in order under ``process`` (the
    receiver's), exported; and who issued each of its labels. None when the entries hold no
    process step of ``coi`` (no product to take over). Entries that do not follow ``process``
    raise :class:`~coi.ledger.errors.VerificationError` (a ``ReplayError``)."""
    sent = ChainState(process)
    for index in sorted(entries):
        if index > shipment_index:
            break
        st = entries[index]
        sent.apply(Fact(index=index, time_ms=st.time_ms, type=st.type, subject=st.subject,
                        data=st.data, signers=tuple(
                            Signer(user=s.user, name=s.name, meaning=s.meaning,
                                   roles=frozenset()) for s in st.signers)))
    product = sent.product(coi)
    if product is None:
        return None
    return Carried(exported(product), carried_issuers(product.labels, entries, sender_origin))


def issuer_record(rec: Any) -> Mapping[str, Any] | None:
    """``rec`` if it is a well-formed issuer record (``{"key","origin","signed","user"}``, the
    key 32 bytes in canonical standard base64), else None."""
    if not isinstance(rec, Mapping) or set(rec) != ISSUER_KEYS:
        return None
    if not isinstance(rec["signed"], bool) or not all(
            isinstance(rec[k], str) and rec[k] for k in ("key", "origin", "user")):
        return None
    try:
        key = base64.b64decode(rec["key"], validate=True)
    except (binascii.Error, ValueError):
        return None
    return rec if len(key) == 32 and b64(key) == rec["key"] else None


def carried_issuers(labels: Mapping[str, Label], entries: Mapping[int, Statement],
                    sender_origin: str) -> dict[str, dict[str, Any]]:
    """Who issued each of ``labels`` (a product rebuilt from a sender's hand-off file, whose
    in-scope ``entries`` were verified against its log key): the author of the entry that
    issued it at the sender (its key, and whether its template says signed), or, for a label
    the sender itself took over by hand-off, the issuer that its ``handoff.received`` records.
    A label whose issuer cannot be told is left out."""
    out: dict[str, dict[str, Any]] = {}
    for label_id, label in sorted(labels.items()):
        st = entries.get(label.events[0]) if label.events else None
        if st is None:
            continue
        if st.type == HANDOFF_RECEIVED:
            recorded = st.data.get(LABEL_ISSUERS)
            rec = issuer_record(recorded.get(label_id)) if isinstance(recorded, Mapping) \
                else None
            if rec is not None:
                out[label_id] = dict(rec)
            continue
        template = str(st.data.get("template", ""))
        out[label_id] = {"key": b64(st.author.key), "origin": sender_origin,
                         "signed": SIGNED_MARK in template.split(), "user": st.author.user}
    return out
