"""A witness for a coi log: cosign only checkpoints that extend what it accepted before.

Owns the witness's key file, its state file (the last checkpoint it accepted for one log), the
decision (``decide``, pure: the state, the new checkpoint, a consistency proof, the log's key),
the C2SP tlog-cosignature it adds on consistent growth, and the evidence file it keeps when it
refuses a checkpoint that rewrites history (a smaller tree, another root at the same size, or
a consistency proof that does not start from the root it accepted — e.g. a restored backup
followed by new entries).

Files, all JSON: key ``{"format": "coi-witness-key/v1", "name", "private_key": base64 raw}``;
state ``{"format": "coi-witness-state/v1", "log_key", "origin", "size", "root", "checkpoint"}``;
evidence ``{"format": "coi-witness-evidence/v1", "reason", "accepted", "offered", "proof"}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coi.ledger.entry import b64, unb64
from coi.ledger.errors import LedgerError, VerificationError
from coi.ledger.keys import public_bytes
from coi.ledger.merkle import verify_consistency
from coi.ledger.note import (
    Checkpoint,
    cosign,
    cosigner_key,
    open_checkpoint,
    parse_verifier_key,
)

KEY_FORMAT = "coi-witness-key/v1"
STATE_FORMAT = "coi-witness-state/v1"
EVIDENCE_FORMAT = "coi-witness-evidence/v1"


class WitnessError(Exception):
    """A witness file is unusable (exit 2)."""


class Refusal(VerificationError):
    """The offered checkpoint does not extend the accepted one: history was rewritten."""


@dataclass(frozen=True)
class WitnessKey:
    name: str
    key: Ed25519PrivateKey

    @property
    def verifier_key(self) -> str:
        return cosigner_key(self.name, public_bytes(self.key))


@dataclass(frozen=True)
class WitnessState:
    log_key: str
    origin: str
    size: int
    root: bytes
    checkpoint: str

    def to_json(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "log_key": self.log_key, "origin": self.origin,
                "size": self.size, "root": b64(self.root), "checkpoint": self.checkpoint}


def _write_json(path: Path, obj: Mapping[str, Any], mode: int = 0o644) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WitnessError(f"cannot write {path}: {e.strerror or e}") from None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise WitnessError(f"cannot read the {what} {path}: {e}") from None
    if not isinstance(obj, dict):
        raise WitnessError(f"the {what} {path} is not a JSON object")
    return obj


def new_key(name: str, path: Path) -> WitnessKey:
    """Make a witness key named ``name`` and write it to ``path`` (mode 0600, never overwritten)."""
    if Path(path).exists():
        raise WitnessError(f"{path} exists; refusing to overwrite a witness key")
    key = Ed25519PrivateKey.generate()
    try:
        wk = WitnessKey(name, key)
        wk.verifier_key  # noqa: B018 - validates the name (no space, no '+')
    except ValueError as e:
        raise WitnessError(f"--name: {e}") from None
    _write_json(path, {"format": KEY_FORMAT, "name": name,
                       "private_key": b64(key.private_bytes_raw())}, 0o600)
    return wk


def load_key(path: Path) -> WitnessKey:
    obj = _read_json(path, "witness key file")
    try:
        if obj.get("format") != KEY_FORMAT:
            raise ValueError(f"format is not {KEY_FORMAT}")
        raw = unb64(obj["private_key"], "private_key", length=32)
        wk = WitnessKey(str(obj["name"]), Ed25519PrivateKey.from_private_bytes(raw))
        wk.verifier_key  # noqa: B018
    except (KeyError, ValueError, LedgerError) as e:
        raise WitnessError(f"the witness key file {path} is damaged: {e}") from None
    return wk


def load_state(path: Path) -> WitnessState | None:
    if not Path(path).exists():
        return None
    obj = _read_json(path, "witness state file")
    try:
        if obj.get("format") != STATE_FORMAT:
            raise ValueError(f"format is not {STATE_FORMAT}")
        size = obj["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("size is not a non-negative integer")
        return WitnessState(log_key=str(obj["log_key"]), origin=str(obj["origin"]), size=size,
                            root=unb64(obj["root"], "root", length=32),
                            checkpoint=str(obj["checkpoint"]))
    except (KeyError, ValueError, LedgerError) as e:
        raise WitnessError(f"the witness state file {path} is damaged: {e}") from None


def parse_proof(obj: Any) -> tuple[int, int, bytes, bytes, list[bytes]]:
    """A consistency proof as ``coi prove consistency`` prints it."""
    try:
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        old, new = obj["old_size"], obj["new_size"]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (old, new)):
            raise ValueError("sizes are not integers")
        hashes = obj["proof"]
        if not isinstance(hashes, list):
            raise ValueError("proof is not a list")
        return (old, new, unb64(obj["old_root"], "old_root", length=32),
                unb64(obj["new_root"], "new_root", length=32),
                [unb64(h, f"proof[{i}]", length=32) for i, h in enumerate(hashes)])
    except (KeyError, ValueError, LedgerError) as e:
        raise VerificationError(f"the consistency proof is unusable: {e}") from None


def decide(state: WitnessState | None, offered: str, log_key: str,
           proof: Mapping[str, Any] | None) -> Checkpoint:
    """Check an offered checkpoint against the accepted one; return it, or raise.

    1. The offered note is a checkpoint signed by ``log_key`` for the log's origin.
    2. With no state yet, it is accepted as the first (trust on first use).
    3. The state must be for the same log key.
    4. A smaller tree is a rollback; the same size with another root is a fork: ``Refusal``.
    5. A larger tree needs a consistency proof from exactly the accepted (size, root) to the
       offered (size, root) that verifies (RFC 9162 §2.1.4.2); otherwise ``Refusal``.
    A malformed note or proof raises ``VerificationError`` (not evidence of a fork).
    """
    verifier = parse_verifier_key(log_key)
    # Step 1.
    cp, _ = open_checkpoint(offered, verifier, origin=verifier.name)
    # Step 2.
    if state is None:
        return cp
    # Step 3.
    if state.log_key != log_key:
        raise VerificationError("the state file is for another log key")
    # Step 4.
    if cp.size < state.size:
        raise Refusal(f"the log shrank from {state.size} to {cp.size} entries: entries were "
                      "deleted or an old backup was restored")
    if cp.size == state.size:
        if cp.root != state.root:
            raise Refusal(f"two different trees of {cp.size} entries were signed: the log "
                          "was forked")
        return cp
    # Step 5.
    if proof is None:
        raise VerificationError(f"growth from {state.size} to {cp.size} entries needs a "
                                f"consistency proof (coi prove consistency {state.size} "
                                f"{cp.size})")
    old, new, old_root, new_root, hashes = parse_proof(proof)
    if (old, new) != (state.size, cp.size) or new_root != cp.root:
        raise VerificationError(f"the proof is from {old} to {new}, not from the accepted "
                                f"{state.size} to the offered {cp.size} entries")
    if old_root != state.root:
        raise Refusal(f"the log's first {state.size} entries are not the ones this witness "
                      "accepted: history was rewritten (a restored backup followed by new "
                      "entries?)")
    try:
        verify_consistency(old, new, state.root, cp.root, hashes)
    except VerificationError as e:
        raise Refusal(f"the consistency proof fails: {e.reason}") from None
    return cp


def witness(state_path: Path, key: WitnessKey, offered: str, log_key: str,
            proof: Mapping[str, Any] | None, time_s: int, evidence_dir: Path | None = None
            ) -> tuple[str, Checkpoint]:
    """Decide, then cosign and save the new state; on a ``Refusal`` keep the evidence first.

    Returns the cosigned checkpoint note. The evidence file (beside the state file unless
    ``evidence_dir`` is given) is named in the ``Refusal``'s reason.
    """
    state = load_state(state_path)
    try:
        cp = decide(state, offered, log_key, proof)
    except Refusal as r:
        assert state is not None
        where = Path(evidence_dir) if evidence_dir else Path(state_path).parent
        ev = where / f"witness-evidence-{state.size}-{time_s}.json"
        _write_json(ev, {"format": EVIDENCE_FORMAT, "reason": r.reason, "time": time_s,
                         "accepted": state.checkpoint, "offered": offered,
                         "proof": dict(proof) if proof is not None else None})
        raise Refusal(f"{r.reason} (evidence kept in {ev})") from None
    cosigned = cosign(offered, key.name, key.key, time_s)
    _write_json(state_path, WitnessState(log_key=log_key, origin=cp.origin, size=cp.size,
                                         root=cp.root, checkpoint=cosigned).to_json())
    return cosigned, cp
