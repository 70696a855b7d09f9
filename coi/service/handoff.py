"""Hand-off out: the file a site sends a partner with a product it ships (docs/federation.md).

Owns ``export_handoff``: find the product's shipping entry that names the partner as receiver
(a process step with a ``receiver`` field), sign the checkpoint of the current head, prove it
consistent with every checkpoint sent to that partner before (the last ``MAX_PREVIOUS``), write
the product's complete bundle with scope ``handoff`` and its ``handoff`` record atomically
(``coi.export.bundle``, no file and no half-written one on any error, no overwrite without
``force``), check the file with the offline verifier, then record a ``handoff.sent`` entry
signed by the person sending, which is how the next hand-off knows what was sent before.
Receiving is :mod:`coi.service.handoff_receive`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from coi.domain import isbt
from coi.export.bundle import ExportError, OutputExists, Scope, export_bundle
from coi.export.handoff_record import MAX_PREVIOUS, Handoff, Previous, handoff_json
from coi.export.verifier import verify_bundle
from coi.ledger import note
from coi.ledger.entry import StoredEntry, b64, read_statement
from coi.ledger.errors import VerificationError
from coi.service import partners
from coi.service.chain import CoiService
from coi.service.errors import ConfigError, Refused
from coi.service.handoff_state import HANDOFF_SENT, sent_checkpoints
from coi.service.ledger import LedgerService, Party, Unlocked

__all__ = ["ExportedHandoff", "OutputExists", "export_handoff", "norm_coi"]


@dataclass(frozen=True)
class ExportedHandoff:
    path: Path
    coi: str
    partner: str
    shipment_index: int
    checkpoint_size: int
    sent_index: int  # the handoff.sent entry
    items: tuple[str, ...]
    file_sha256: str
    log_key: str  # this site's log verifier key: what the partner must have pinned


def norm_coi(text: str) -> str:
    """A CoI identifier as typed (15 characters, optionally the check character), or Refused."""
    typed = "".join(text.split()).upper()
    n = isbt.COI_TEXT_LENGTH
    try:
        coi = isbt.coi_id_from_text(typed[:n] if len(typed) == n + 1 else typed)
    except ValueError as e:
        raise Refused(str(e)) from None
    if len(typed) == n + 1 and typed[-1] != coi.check:
        raise Refused(f"the check character of {coi.text} is {coi.check}, not {typed[-1]}: the "
                      "identifier was mistyped")
    return coi.text


def _shipment(chain: CoiService, coi: str, partner: partners.Partner) -> StoredEntry:
    """The product's newest shipping entry naming ``partner`` as receiver."""
    process = chain.process()
    types = {s.entry_type for s in process.steps.values() if "receiver" in s.fields}
    found = None
    for row in chain.ledger.store.rows_for_subject(coi):
        if row.type in types:
            receiver = read_statement(row.statement).data.get("receiver")
            if isinstance(receiver, str) and receiver.lower() == partner.name:
                found = row
    if found is None:
        steps = ", ".join(sorted(s.name for s in process.steps.values() if "receiver" in s.fields))
        raise Refused(f"no shipping step of {coi} names {partner.name} as receiver: record "
                      f"the shipping step ({steps}) with receiver={partner.name.upper()} first")
    return found


def _items(chain: CoiService, coi: str, row: StoredEntry) -> tuple[str, ...]:
    """What the shipping step sent: the items its ``items_to`` moves (all the product's items
    when it moves none)."""
    spec = chain.process().step_for_entry_type(row.type)
    product = chain.chain().product(coi)
    if spec is None or product is None:
        return ()
    moved = spec.items_to
    return tuple(sorted(i.id for i in product.items.values()
                        if not moved or moved.get(i.kind) == i.status))


def _signers(svc: LedgerService, coi: str, size: int) -> tuple[tuple[str, str, str], ...]:
    out = set()
    for row in svc.store.rows_for_subject(coi):
        if row.index < size:
            for s in read_statement(row.statement).signers:
                out.add((s.user, s.name, b64(s.key)))
    return tuple(sorted(out))


def _check_fin(svc: LedgerService, coi: str) -> None:
    """A CoI carries the FIN of the site that assigned it: this one or a partner."""
    fin = isbt.coi_id_from_text(coi).fin
    reg = partners.replay(svc)
    if fin != partners.own_fin(svc) and all(p.fin != fin for p in reg.partners.values()):
        raise Refused(f"{coi} carries FIN {fin}, neither this site's nor a partner's: it was "
                      "not assigned in this network")


def export_handoff(chain: CoiService, by: Unlocked, *, coi: str, to: str, out: Path,
                   force: bool = False) -> ExportedHandoff:
    """Write the hand-off file of ``coi`` for partner ``to`` at ``out`` and record it sent."""
    svc = chain.ledger
    svc.require_initialised()
    if partners.FIN_RE.fullmatch(partners.own_fin(svc)) is None:
        raise ConfigError("this site's genesis names no FIN: a hand-off names the sender's FIN "
                          "(re-create the ledger with --fin)")
    coi = norm_coi(coi)
    partner = partners.partner(svc, partners.check_name(to))
    out = Path(out)
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; refusing to overwrite it (--force replaces it)")
    roles = svc.registry().roles_of(by.user)
    ship = _shipment(chain, coi, partner)
    spec = chain.process().step_for_entry_type(ship.type)
    allowed = (spec.roles if spec is not None else frozenset()) | {"admin"}
    if not roles & allowed:
        raise Refused(f"{by.user} may not send a hand-off: it needs one of the roles "
                      f"{', '.join(sorted(allowed))}")
    _check_fin(svc, coi)
    items = _items(chain, coi, ship)
    if not items:
        raise Refused(f"{coi} has no item the shipping step at entry {ship.index} sent")
    checkpoint = svc.checkpoint()
    cp = note.parse_checkpoint(checkpoint.split("\n\n", 1)[0] + "\n")
    previous = []
    for size, root in sent_checkpoints(svc, partner.origin, MAX_PREVIOUS):
        if 0 < size <= cp.size:
            proof = svc.prove_consistency(size, cp.size)["proof"]
            previous.append(Previous(size, root, tuple(base64.b64decode(h) for h in proof)))
    g = svc.registry().genesis
    assert g is not None
    h = Handoff(sender_origin=svc.origin(), sender_fin=partners.own_fin(svc),
                receiver_name=partner.name, receiver_origin=partner.origin,
                receiver_fin=partner.fin, coi=coi, shipment_index=ship.index,
                shipment_hash=ship.entry_hash, items=items,
                signers=_signers(svc, coi, cp.size), previous=tuple(previous))
    try:
        export_bundle(svc.store, out, scope=Scope("handoff", coi=coi), checkpoint=checkpoint,
                      log_key=svc.log_key(), created_ms=svc.clock.now_ms(), overwrite=force,
                      handoff=handoff_json(h))
    except OutputExists:
        raise
    except ExportError as e:
        raise ConfigError(str(e)) from None
    try:
        verify_bundle(out, svc.log_verifier_key())  # what the partner will run, run here first
        file_sha = hashlib.sha256(out.read_bytes()).hexdigest()
        sent = svc.append(HANDOFF_SENT, coi, {
            "to": partner.name, "to_origin": partner.origin, "to_fin": partner.fin,
            "shipment": {"index": ship.index, "hash": ship.entry_hash},
            "checkpoint": {"size": cp.size, "root": b64(cp.root)},
            "items": list(items), "file_sha256": file_sha,
        }, [Party(by, "authored")], internal=True)
    except (VerificationError, Refused, OSError):
        out.unlink(missing_ok=True)  # nothing sent without its record, nor a bad file left
        raise
    return ExportedHandoff(path=out, coi=coi, partner=partner.name, shipment_index=ship.index,
                           checkpoint_size=cp.size, sent_index=sent.index, items=items,
                           file_sha256=file_sha, log_key=svc.log_verifier_key())
