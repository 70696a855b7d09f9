"""The PHI store's cryptography: patient identifiers sealed at rest, each under its own key.

Owns the site PHI key file and sealing. A patient's identifiers (the patient file given at
enrolment) and the random secret behind the ledger's keyed commitment are sealed together with
AES-256-GCM under a key of their own, the *patient key*; the patient key is stored wrapped
(AES-256-GCM again) under the site's *PHI key*, which never enters the database: a file beside
the log key (``<db>.phikey`` by default, or ``COI_PHI_KEY``), created by ``coi init`` with mode
0600 and refused when group or others may read it. Both encryptions bind the CoI identifier as
associated data, so a sealed record moved to another patient's row does not open. Erasure
destroys the wrapped patient key (``coi patient erase``): the sealed identifiers can then never
be opened again, while the ledger, which holds only the commitment, still verifies.

The database, its WAL, a backup and an export therefore hold no patient identifier in clear;
the PHI key file must be backed up separately from the database (a backup without it restores a
ledger whose patients can no longer be named).

Key file: ``{"format": "coi-phi-key/v1", "origin": ORIGIN, "key": BASE64(32 bytes)}``. Its
*key id* (16 hex characters of SHA-256 over a label and the key) is stored beside each sealed
record, so a wrong key file is named as such instead of failing to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coi.service.errors import ConfigError, VerificationError
from coi.service.site import owner_only_problem

PHI_KEY_FORMAT = "coi-phi-key/v1"
KEY_BYTES = 32
NONCE_BYTES = 12
ERASED: Literal["erased"] = "erased"
"""What ``patient_identity`` gives once a patient's key is destroyed (and screens show)."""


class Identity(NamedTuple):
    """Who a CoI identifier is about, as a person compares it with the bag: from the PHI store."""

    name: str
    date_of_birth: str  # YYYY-MM-DD


@dataclass(frozen=True)
class Sealed:
    """A patient's record as stored: the PHI key's id, the wrapped patient key, the sealed data."""

    key_id: str
    wrapped_key: bytes
    sealed: bytes


@dataclass(frozen=True)
class Opened:
    secret: bytes
    identifiers: dict[str, str]


@dataclass(frozen=True)
class PhiKey:
    origin: str
    key: bytes

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"coi-phi-key-id/v1\0" + self.key).hexdigest()[:16]

    def seal(self, coi: str, secret: bytes, identifiers: dict[str, str]) -> Sealed:
        """Seal ``identifiers`` and ``secret`` under a new patient key wrapped by this key."""
        patient_key = AESGCM.generate_key(bit_length=256)
        body = json.dumps({"secret": base64.b64encode(secret).decode(),
                           "identifiers": identifiers}, sort_keys=True).encode()
        return Sealed(key_id=self.key_id,
                      wrapped_key=_encrypt(self.key, patient_key, _aad("wrap", coi)),
                      sealed=_encrypt(patient_key, body, _aad("seal", coi)))

    def open(self, coi: str, stored: Sealed) -> Opened:
        """The secret and identifiers of ``stored``: ConfigError if it was sealed under another
        PHI key, VerificationError if it was altered or moved to another CoI's row."""
        if stored.key_id != self.key_id:
            raise ConfigError(f"the patient record of {coi} was sealed under PHI key "
                              f"{stored.key_id}, not under this site's PHI key file "
                              f"({self.key_id}): use the PHI key file of this database")
        try:
            patient_key = _decrypt(self.key, stored.wrapped_key, _aad("wrap", coi))
            obj = json.loads(_decrypt(patient_key, stored.sealed, _aad("seal", coi)))
            secret = base64.b64decode(obj["secret"], validate=True)
            ids = obj["identifiers"]
            if not isinstance(ids, dict):
                raise ValueError
            return Opened(secret=secret, identifiers={str(k): str(v) for k, v in ids.items()})
        except (InvalidTag, ValueError, KeyError, TypeError, binascii.Error):
            raise VerificationError(f"the sealed patient record of {coi} does not open: it was "
                                    "altered, or moved from another patient's row") from None


def _aad(what: str, coi: str) -> bytes:
    return f"coi-phi/v1\0{what}\0{coi}".encode()


def _encrypt(key: bytes, plain: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plain, aad)


def _decrypt(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise ValueError("too short")
    return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)


def new_phi_key(origin: str) -> PhiKey:
    return PhiKey(origin=origin, key=AESGCM.generate_key(bit_length=256))


def write_phi_key(path: Path, key: PhiKey) -> None:
    """Create the PHI key file atomically with mode 0600; refuse to overwrite one."""
    if path.exists():
        raise ConfigError(f"PHI key file {path} already exists; refusing to overwrite it")
    body = json.dumps({"format": PHI_KEY_FORMAT, "origin": key.origin,
                       "key": base64.b64encode(key.key).decode()})
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise ConfigError(f"cannot create PHI key file {path}: {e.strerror}") from None
    try:
        os.write(fd, body.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_phi_key(path: Path, origin: str) -> PhiKey:
    """The site's PHI key: the file must exist, be private, and belong to ledger ``origin``."""
    try:
        problem = owner_only_problem(path)
        if problem is not None:
            raise ConfigError(f"PHI key file refused: {problem}")
        obj: Any = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(obj, dict) or obj.get("format") != PHI_KEY_FORMAT:
            raise ValueError
        key = base64.b64decode(obj["key"], validate=True)
        if len(key) != KEY_BYTES or not isinstance(obj.get("origin"), str):
            raise ValueError
    except FileNotFoundError:
        raise ConfigError(f"PHI key file {path} not found (set COI_PHI_KEY, or restore it from "
                          "where it was backed up): patient identifiers cannot be sealed or "
                          "read without it") from None
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        raise ConfigError(f"PHI key file {path} is not a {PHI_KEY_FORMAT} file") from None
    if obj["origin"] != origin:
        raise ConfigError(f"PHI key file {path} belongs to ledger {obj['origin']!r}, not to "
                          f"{origin!r}")
    return PhiKey(origin=origin, key=key)
