"""Hand-off in: accept a partner's hand-off file, or refuse it and record why (docs/federation.md).

Owns ``receive_handoff``. In order, each failure with its own message:

1. the file reads as a bundle whose header names an origin (else: not a hand-off file);
2. that origin is a partner pinned here (else: unknown partner);
3. the whole file verifies offline against the partner's pinned log key (``verify_bytes``, the
   one bundle verifier: signatures, keys by position, back-links, inclusion proofs, the
   handoff record against the entries, the consistency proofs it carries) and is a hand-off
   (scope ``handoff``) whose sender FIN is the partner's (else: tampered or not from it);
4. it is addressed to this organisation: receiver origin and FIN are this site's;
5. the CoI carries the FIN of a site of this network (the sender, a partner, or this one);
6. the product's bundle is complete (at least from its first linked entry);
7. under the write lock: this shipment was not received before (replay), and the sender's
   checkpoint extends the newest one this site accepted from it (a smaller tree: rolled back;
   another root, or a proof that does not start from the accepted one: forked); a product this
   site holds is one it shipped out (in a state a shipping step leads to);

then a ``handoff.received`` entry signed by the person receiving binds the sender's origin, its
checkpoint (size, root) and the shipment entry's hash, and records who issued each of the
product's labels (the key its scans are verified against here: ``label_signing``). A refusal
is recorded as a site entry (``system.handoff_refused``) and nothing else changes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coi.domain.handoff_carry import LABEL_ISSUERS, carry
from coi.export.chain_check import in_scope_entries
from coi.export.handoff_record import Handoff
from coi.export.records import parse_line
from coi.export.verifier import BundleReport, verify_bytes
from coi.ledger.entry import b64
from coi.ledger.errors import VerificationError
from coi.service import partners
from coi.service.chain import CoiService
from coi.service.errors import ConfigError, Refused
from coi.service.files import write_atomically
from coi.service.handoff_ack import cosign_accepted
from coi.service.handoff_state import (
    HANDOFF_RECEIVED,
    HANDOFF_REFUSED,
    Seen,
    last_seen,
    received_at,
)
from coi.service.ledger import LedgerService, Party, Unlocked
from coi.service.text import inert

__all__ = ["Received", "receive_handoff"]

_COI_RE = re.compile(r"CH[A-NP-Z1-9][0-9]{4}[0-9]{2}[0-9A-Z]{6}")
MAX_FILE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Received:
    index: int
    coi: str
    partner: str
    items: tuple[str, ...]
    checkpoint_size: int
    complete: bool
    complete_from: int | None
    state: str  # where in the process the product now stands here (as the shipment left it)


class _Refusal(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _header_origin(data: bytes) -> str:
    first = data.split(b"\n", 1)[0] + b"\n"
    try:
        obj = parse_line(first)
    except VerificationError as e:
        raise _Refusal(f"not a hand-off file: its first line is not a bundle header "
                       f"({e.reason})") from None
    origin = obj.get("origin") if obj.get("kind") == "header" else None
    if not isinstance(origin, str) or not origin:
        raise _Refusal("not a hand-off file: its first line is not a bundle header")
    return origin


def _consistent(h: Handoff, report: BundleReport, seen: Seen | None, name: str) -> None:
    """Step 7b: the sender's checkpoint extends the newest one accepted from it."""
    if seen is None:
        return  # the first hand-off from this partner: its pinned key is the trust anchor
    size, root = report.tree_size, report.root
    if size < seen.size:
        raise _Refusal(f"partner {name}'s checkpoint is for {size} entries, older than the one "
                       f"of {seen.size} accepted from it at entry {seen.index}: its log was "
                       "rolled back (or this is an old hand-off delivered late: ask for a new "
                       "export)")
    if size == seen.size:
        if root != seen.root:
            raise _Refusal(f"partner {name}'s checkpoint of size {size} has another root than "
                           f"the one accepted at entry {seen.index}: its log was forked")
        return
    starts = {p.size: p.root for p in h.previous}
    if seen.size not in starts:
        if not h.previous:
            raise _Refusal(f"partner {name} sends no consistency proof, but this site accepted "
                           f"its checkpoint of size {seen.size} at entry {seen.index}: its log "
                           "was restored from an old copy or re-created (rolled back)")
        raise _Refusal(f"partner {name} proves consistency only from sizes "
                       f"{sorted(starts)}, not from the checkpoint of size {seen.size} accepted "
                       f"at entry {seen.index}: its log was rolled back or forked")
    if starts[seen.size] != seen.root:
        raise _Refusal(f"partner {name}'s log at size {seen.size} has another root than the "
                       f"one accepted at entry {seen.index}: its log was forked")
    # the proof itself from (seen.size, seen.root) to this checkpoint was verified in step 3


def _check(svc: LedgerService, data: bytes) -> tuple[partners.Partner, BundleReport, Handoff]:
    origin = _header_origin(data)
    p = partners.replay(svc).by_origin(origin)
    if p is None:
        raise _Refusal(f"unknown partner: no partner pinned here has the origin "
                       f"{inert(origin)!r} (an administrator pins one with `coi partner add`)")
    try:
        report = verify_bytes(data, p.log_key)
    except VerificationError as e:
        raise _Refusal(f"the file does not verify against partner {p.name}'s pinned log key "
                       f"(tampered, or not from {p.name}): {inert(e)}") from None
    h = report.handoff
    if report.scope.get("mode") != "handoff" or h is None:
        raise _Refusal("not a hand-off file: a bundle whose scope is not handoff")
    if h.sender_fin != p.fin:
        raise _Refusal(f"the file's sender FIN {h.sender_fin} is not partner {p.name}'s "
                       f"pinned FIN {p.fin}")
    own_fin, own_origin = partners.own_fin(svc), svc.origin()
    if partners.FIN_RE.fullmatch(own_fin) is None:
        raise _Refusal("this site's genesis names no FIN, so no hand-off can be addressed to it")
    if h.receiver_origin != own_origin or h.receiver_fin != own_fin:
        raise _Refusal(f"wrong recipient: the file is addressed to {inert(h.receiver_origin)} "
                       f"(FIN {h.receiver_fin}), not to this site ({own_origin}, FIN {own_fin})")
    if _COI_RE.fullmatch(h.coi) is None:
        raise _Refusal(f"{inert(h.coi)!r} is not a Chain of Identity Identifier")
    fin = h.coi[2:7]
    reg = partners.replay(svc)
    if fin not in {own_fin, p.fin} | {q.fin for q in reg.partners.values()}:
        raise _Refusal(f"{h.coi} carries FIN {fin}, which is neither the sender's, a partner's "
                       "nor this site's: it was not assigned in this network")
    if report.complete_from is None:
        raise _Refusal(f"the bundle of {h.coi} cannot be proven complete (no entry of it "
                       "links to the one before it)")
    return p, report, h


def _carried(chain: CoiService, data: bytes, h: Handoff, origin: str
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The product's state as the sender's shipment left it and who issued each of its labels
    (``handoff_carry.carry``, the derivation ``coi verify-chain`` checks again): its in-scope
    entries up to the shipping entry, applied in order under this site's process (the sender
    checked its rules when it recorded them; its signatures were verified in step 3)."""
    entries = in_scope_entries(data.splitlines(keepends=True))
    try:
        carried = carry(chain.process(), {i: st for i, (_h, st) in entries.items()},
                        h.shipment_index, h.coi, origin)
    except VerificationError as e:  # a ReplayError, or an entry's data that cannot be read
        raise _Refusal(f"the sender's entries of {h.coi} cannot be replayed under this site's "
                       f"process ({inert(e)})") from None
    if carried is None:
        raise _Refusal(f"the file holds no process step of {h.coi}: there is no product to "
                       "take over")
    return carried.state, carried.label_issuers


def _subject(data: bytes) -> str:
    """The refusal's subject: the CoI the file names, when it names one well formed."""
    m = re.search(rb'"scope":\{"mode":"(?:handoff|coi)","coi":"(CH[0-9A-Z]{13})"\}',
                  data[:4096])
    if m is not None and _COI_RE.fullmatch(m.group(1).decode()):
        return m.group(1).decode()
    return "(handoff)"


def receive_handoff(chain: CoiService, by: Unlocked, path: Path, *, ack: Path | None = None
                    ) -> Received:
    """Check the hand-off file at ``path`` and record it received, or refuse (recorded).

    Accepted, the sender's checkpoint is cosigned by this site (kept in the entry) and, with
    ``ack``, written there for the sender (``coi handoff ack``); an existing ``ack`` is refused
    before anything is checked."""
    if ack is not None and Path(ack).exists():
        raise ConfigError(f"{ack} exists; refusing to overwrite it")
    svc = chain.ledger
    svc.require_initialised()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    file_sha = hashlib.sha256(data).hexdigest()
    try:
        if len(data) > MAX_FILE:
            raise _Refusal(f"the file is larger than {MAX_FILE // (1024 * 1024)} MiB")
        p, report, h = _check(svc, data)
        state, issuers = _carried(chain, data, h, report.origin)
    except _Refusal as r:
        raise _refused(svc, _subject(data), file_sha, r.reason) from None

    def check(ctx: Any, _reg: Any) -> None:  # under the write lock
        at = received_at(svc, report.origin, h.coi, h.shipment_hash, ctx.tx)
        if at is not None:
            raise _Refusal(f"already received: this shipment of {h.coi} from {p.name} was "
                           f"received at entry {at} (a replayed file)")
        _consistent(h, report, last_seen(svc, report.origin, ctx.tx), p.name)
        here = chain.chain(ctx.tx, size=ctx.size).product(h.coi)  # held: the entry updates it
        process = chain.process()
        shipped = {s.to_state for s in process.steps.values() if "receiver" in s.fields}
        if here is not None and here.state not in shipped:
            raise _Refusal(f"{h.coi} is at {here.state!r} here, not shipped out: a hand-off "
                           "cannot take over a product this site holds")

    cosigned = cosign_accepted(svc, report.checkpoint)
    try:
        entry = svc.append(HANDOFF_RECEIVED, h.coi, {
            "from": p.name, "sender_origin": report.origin, "sender_fin": h.sender_fin,
            "checkpoint": {"size": report.tree_size, "root": b64(report.root)},
            "shipment": {"index": h.shipment_index, "hash": h.shipment_hash},
            "items": list(h.items), "complete_from": report.complete_from,
            "file_sha256": file_sha, "bundle_sha256": report.bundle_sha256,
            "cosigned": cosigned, "state": state, LABEL_ISSUERS: issuers,
        }, [Party(by, "authored")], check=check, internal=True)
    except _Refusal as r:
        raise _refused(svc, h.coi, file_sha, r.reason) from None
    if ack is not None:
        try:
            write_atomically(Path(ack), cosigned.encode("utf-8"), overwrite=False)
        except ConfigError as e:
            raise ConfigError(f"received at entry {entry.index}, but the acknowledgement "
                              f"could not be written: {e}") from None
    return Received(index=entry.index, coi=h.coi, partner=p.name, items=h.items,
                    checkpoint_size=report.tree_size, complete=report.complete,
                    complete_from=report.complete_from, state=str(state["state"]))


def _refused(svc: LedgerService, subject: str, file_sha: str, reason: str) -> Refused:
    idx = svc.record_system(HANDOFF_REFUSED, subject,
                            {"reason": reason[:500], "file_sha256": file_sha})
    return Refused(f"hand-off refused: {reason}", recorded_index=idx)
