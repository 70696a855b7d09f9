"""The ``handoff`` record of a hand-off file (docs/federation.md): reading it and its checks.

A hand-off file is an audit bundle of one product (scope ``handoff``) with one more record, after
the checkpoint: who sends (origin, FIN), to whom (the name the sender gives the receiver, its
origin and FIN), the CoI, the shipment entry (index and entry hash), the items shipped, every
signer of the product's entries, and consistency proofs from checkpoints the sender sent to the
receiver before to this one. ``read_handoff`` checks the record on its own (every value matched
whole); ``HandoffCheck`` checks it against the bundle's entries as the verifier reads them, and
at the end against the genesis. Standard library, cryptography and the ledger core only, like
the verifier that uses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coi.export.records import hex64, nonneg_int, unb64
from coi.ledger.entry import Statement, b64, name_problem, valid_user
from coi.ledger.errors import VerificationError
from coi.ledger.merkle import verify_consistency

FIN_RE = re.compile(r"[A-NP-Z1-9][0-9]{4}")
PARTNER_NAME_RE = re.compile(r"[a-z][a-z0-9-]{1,62}")
ORIGIN_RE = re.compile(r"[!-*,-~]{1,255}")  # printable ASCII without space or '+'
ITEM_RE = re.compile(r"[A-Z0-9]{1,32}")
MAX_PREVIOUS = 16


@dataclass(frozen=True)
class Previous:
    """A checkpoint the sender sent this receiver before, and the proof that this one extends it."""

    size: int
    root: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class Handoff:
    sender_origin: str
    sender_fin: str
    receiver_name: str
    receiver_origin: str
    receiver_fin: str
    coi: str
    shipment_index: int
    shipment_hash: str  # lowercase hex
    items: tuple[str, ...]
    signers: tuple[tuple[str, str, str], ...]  # (user, printed name, base64 key), sorted
    previous: tuple[Previous, ...]  # by size, ascending


def _obj(v: Any, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(v, dict) or tuple(v) != keys:
        raise VerificationError(f"handoff {what} must be an object with exactly "
                                f"{', '.join(keys)} in that order")
    return v


def _match(v: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(v, str) or pattern.fullmatch(v) is None:
        raise VerificationError(f"handoff {what} {v!r} is not valid")
    return v


COI_TEXT = re.compile(r"CH[A-NP-Z1-9][0-9]{4}[0-9]{2}[0-9A-Z]{6}")
"""A CoI identifier as ISBT 128 writes it (coi.domain.isbt's pattern; the offline verifier
imports no domain module)."""


def read_handoff(obj: dict[str, Any]) -> Handoff:
    """The record's values, each checked on its own (the bundle checks come later)."""
    sender = _obj(obj["sender"], ("origin", "fin"), "sender")
    receiver = _obj(obj["receiver"], ("name", "origin", "fin"), "receiver")
    ship = _obj(obj["shipment"], ("index", "hash"), "shipment")
    items = obj["items"]
    if not isinstance(items, list) or not items or len(set(map(str, items))) != len(items):
        raise VerificationError("handoff items must be a non-empty list without repeats")
    signers_in = obj["signers"]
    if not isinstance(signers_in, list) or not signers_in:
        raise VerificationError("handoff signers must be a non-empty list")
    signers = []
    for s in signers_in:
        s = _obj(s, ("user", "name", "key"), "signer")
        if not (isinstance(s["user"], str) and valid_user(s["user"])
                and isinstance(s["name"], str) and name_problem(s["name"]) is None):
            raise VerificationError("handoff signer has an invalid user or name")
        if len(unb64(s["key"], "handoff signer key")) != 32:
            raise VerificationError("handoff signer key is not 32 bytes")
        signers.append((s["user"], s["name"], s["key"]))
    if signers != sorted(set(signers)):
        raise VerificationError("handoff signers must be sorted and without repeats")
    prev_in = obj["previous"]
    if not isinstance(prev_in, list) or len(prev_in) > MAX_PREVIOUS:
        raise VerificationError(f"handoff previous must be a list of at most {MAX_PREVIOUS}")
    previous = []
    for p in prev_in:
        p = _obj(p, ("size", "root", "proof"), "previous checkpoint")
        root = unb64(p["root"], "handoff previous root")
        if not isinstance(p["proof"], list):
            raise VerificationError("handoff previous proof is not a list")
        previous.append(Previous(nonneg_int(p["size"], "handoff previous size"), root,
                                 tuple(unb64(h, "handoff proof hash") for h in p["proof"])))
    if [p.size for p in previous] != sorted({p.size for p in previous}):
        raise VerificationError("handoff previous checkpoints must be by size, without repeats")
    coi = obj["coi"]
    if not isinstance(coi, str) or not COI_TEXT.fullmatch(coi):
        raise VerificationError("handoff coi is not a Chain of Identity Identifier (CH, the "
                                "FIN, the year and 6 letters or digits)")
    return Handoff(
        sender_origin=_match(sender["origin"], ORIGIN_RE, "sender origin"),
        sender_fin=_match(sender["fin"], FIN_RE, "sender FIN"),
        receiver_name=_match(receiver["name"], PARTNER_NAME_RE, "receiver name"),
        receiver_origin=_match(receiver["origin"], ORIGIN_RE, "receiver origin"),
        receiver_fin=_match(receiver["fin"], FIN_RE, "receiver FIN"),
        coi=coi, shipment_index=nonneg_int(ship["index"], "handoff shipment index"),
        shipment_hash=hex64(ship["hash"], "handoff shipment hash"),
        items=tuple(_match(i, ITEM_RE, "item") for i in items),
        signers=tuple(signers), previous=tuple(previous))


def handoff_json(h: Handoff) -> dict[str, Any]:
    """The record for ``h``, keys in the format's order (what the writer encodes)."""
    return {
        "kind": "handoff",
        "sender": {"origin": h.sender_origin, "fin": h.sender_fin},
        "receiver": {"name": h.receiver_name, "origin": h.receiver_origin,
                     "fin": h.receiver_fin},
        "coi": h.coi,
        "shipment": {"index": h.shipment_index, "hash": h.shipment_hash},
        "items": list(h.items),
        "signers": [{"user": u, "name": n, "key": k} for u, n, k in h.signers],
        "previous": [{"size": p.size, "root": b64(p.root), "proof": [b64(x) for x in p.proof]}
                     for p in h.previous],
    }


@dataclass
class HandoffCheck:
    """The handoff record against the bundle: fed the checkpoint, then each entry in scope."""

    h: Handoff
    signers: set[tuple[str, str, str]] = field(default_factory=set)
    shipment_seen: bool = False

    def checkpoint(self, origin: str, scope_coi: str, size: int, root: bytes) -> None:
        h = self.h
        if h.sender_origin != origin:
            raise VerificationError("the handoff's sender is not the bundle's origin")
        if h.coi != scope_coi:
            raise VerificationError("the handoff's CoI is not the bundle's product")
        for p in h.previous:
            if p.size > size:
                raise VerificationError(f"a previous checkpoint of size {p.size} is larger than "
                                        f"this one ({size})")
            try:
                verify_consistency(p.size, size, p.root, root, list(p.proof))
            except VerificationError as e:
                raise VerificationError(f"the checkpoint does not extend the one of size "
                                        f"{p.size} sent before: {e.reason}") from None

    def entry(self, index: int, entry_hash: bytes, st: Statement) -> None:
        for s in st.signers:
            self.signers.add((s.user, s.name, b64(s.key)))
        if index == self.h.shipment_index:
            if entry_hash.hex() != self.h.shipment_hash:
                raise VerificationError("the shipment entry's hash is not the one the handoff "
                                        "names", index=index)
            receiver = st.data.get("receiver")
            if not isinstance(receiver, str) or receiver.lower() != self.h.receiver_name:
                raise VerificationError(f"the shipment entry does not name the receiver "
                                        f"{self.h.receiver_name} (its data.receiver)",
                                        index=index)
            self.shipment_seen = True

    def finish(self, site: Any) -> None:
        if not self.shipment_seen:
            raise VerificationError(f"the shipment entry {self.h.shipment_index} is not among "
                                    "the product's entries in the bundle")
        if tuple(sorted(self.signers)) != self.h.signers:
            raise VerificationError("the handoff's signers are not exactly those of the "
                                    "product's entries")
        fin = site.get("fin") if isinstance(site, Mapping) else None
        if fin != self.h.sender_fin:
            raise VerificationError(f"the handoff's sender FIN {self.h.sender_fin} is not the "
                                    f"FIN the sender's genesis names ({fin})")
