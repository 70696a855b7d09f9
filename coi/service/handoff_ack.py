"""Witnessing each other: a receiver cosigns the sender checkpoint it accepted; the sender keeps it.

Owns the acknowledgement of a hand-off (docs/federation.md, "Acknowledgements"):

* ``cosign_accepted``: the receiving site adds a C2SP ``tlog-cosignature/v1`` line to the
  sender's checkpoint it just accepted, with its own log key as the cosigner key (key name = its
  origin, signature type 0x04: the partner derives that cosigner key from the log key it
  pinned), written to the acknowledgement file the receiver sends back;
* ``record_ack``: the sender checks that file (its own log key's signature, the checkpoint is a
  state of its own ledger now, the cosignature of a pinned partner) and records a
  ``handoff.acked`` entry holding the cosigned note;
* ``partner_pins``: the cosigned checkpoints held, newest first, which ``coi verify`` checks
  the ledger against (and says so), so that a ledger restored from an old copy or rewritten
  after a partner cosigned a later state fails, here or wherever the note is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coi.ledger import note
from coi.ledger.entry import b64, read_statement
from coi.ledger.errors import ProfileError, VerificationError
from coi.ledger.note_keys import ALG_COSIGNATURE_V1
from coi.service import partners
from coi.service.chain import CoiService
from coi.service.errors import ConfigError, Refused
from coi.service.handoff_state import HANDOFF_REFUSED
from coi.service.ledger import LedgerService, Party, Unlocked
from coi.service.text import inert

HANDOFF_ACKED = "handoff.acked"
MAX_ACK = 64 * 1024

__all__ = ["HANDOFF_ACKED", "Acked", "Pin", "cosign_accepted", "partner_pins", "record_ack"]


@dataclass(frozen=True)
class Acked:
    index: int
    partner: str
    size: int
    cosigned_at: int  # POSIX seconds, the partner's clock


@dataclass(frozen=True)
class Pin:
    partner: str
    size: int
    note: str  # the checkpoint with the partner's cosignature
    index: int  # the handoff.acked entry


def cosigner(p: partners.Partner) -> note.NoteVerifier:
    """The cosigner key of partner ``p``: its pinned log key, as signature type 0x04."""
    return note.NoteVerifier.from_public_key(p.origin, p.verifier.public_key, ALG_COSIGNATURE_V1)


def cosign_accepted(svc: LedgerService, checkpoint_note: str) -> str:
    """The sender's checkpoint with this site's cosignature (time: this site's clock)."""
    return note.cosign(checkpoint_note, svc.origin(), svc.log_key(), svc.clock.now_ms() // 1000)


def record_ack(chain: CoiService, by: Unlocked, path: Path) -> Acked:
    """Check a partner's acknowledgement file and keep it (a ``handoff.acked`` entry)."""
    svc = chain.ledger
    head = svc.require_initialised()
    try:
        text = Path(path).read_bytes()[:MAX_ACK + 1].decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    try:
        if len(text) > MAX_ACK:
            raise VerificationError("the file is too large to be a cosigned checkpoint")
        own = note.parse_verifier_key(svc.log_verifier_key())
        cp, _opened = note.open_checkpoint(text, own, origin=svc.origin())
        if cp.size > head.size or svc.root_at(cp.size) != cp.root:
            raise VerificationError(f"the checkpoint of {cp.size} entries is not a state of "
                                    "this ledger (rewritten, or restored from an old copy)")
        found = None
        for p in partners.partners(svc):
            try:
                found = (p, note.verify_cosignature(text, cosigner(p)))
                break
            except VerificationError:
                continue
        if found is None:
            raise VerificationError("no pinned partner cosigned this checkpoint")
    except VerificationError as e:
        reason = f"acknowledgement refused: {inert(e.reason)}"
        idx = svc.record_system(HANDOFF_REFUSED, "(handoff)", {"reason": reason[:500]})
        raise Refused(reason, recorded_index=idx) from None
    p, at = found
    entry = svc.append(HANDOFF_ACKED, partners.subject(p.name), {
        "from": p.name, "checkpoint": {"size": cp.size, "root": b64(cp.root)},
        "cosigned_at": at, "note": text}, [Party(by, "authored")], internal=True)
    return Acked(index=entry.index, partner=p.name, size=cp.size, cosigned_at=at)


def partner_pins(svc: LedgerService) -> list[Pin]:
    """The partner-cosigned checkpoints this ledger holds, largest first (none without a
    ledger: ``coi verify`` then says what is wrong with the database)."""
    if not svc.db.has_table("ledger_entry") or not svc.is_initialised():
        return []
    out = []
    for row in svc.store.rows_of_types({HANDOFF_ACKED}):
        try:
            d = read_statement(row.statement).data
            out.append(Pin(str(d["from"]), int(d["checkpoint"]["size"]), str(d["note"]),
                           row.index))
        except (ProfileError, KeyError, TypeError, ValueError):
            raise VerificationError("a stored acknowledgement is damaged",
                                    index=row.index) from None
    return sorted(out, key=lambda p: -p.size)
