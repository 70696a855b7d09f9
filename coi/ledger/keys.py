"""Signing keys: Ed25519 key pairs and their wrapping at rest.

Owns: making key pairs, naming public keys (key ids), and sealing a private key under a key
derived from its holder's password (scrypt N=2**17, r=8, p=1; AES-256-GCM), with the KDF
parameters stored beside the ciphertext. Unwrapping refuses any parameters weaker than that, so
no weaker key can be planted. A forgotten password cannot recover a key: a new key is enrolled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coi.ledger.errors import KeyError_

SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
WRAP_FORMAT = "coi-wrapped-key/v1"
MIN_PASSWORD_LENGTH = 8


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes_raw()


def key_id(public_key: bytes) -> str:
    """A public key's name in envelopes: the first 8 bytes of its SHA-256, in lowercase hex."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return hashlib.sha256(public_key).hexdigest()[:16]


def generate(seed: bytes | None = None) -> Ed25519PrivateKey:
    """A new key pair; ``seed`` (32 bytes) only for deterministic tests and worked examples."""
    if seed is None:
        return Ed25519PrivateKey.generate()
    return Ed25519PrivateKey.from_private_bytes(seed)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: Any, what: str) -> bytes:
    if not isinstance(s, str):
        raise KeyError_(f"wrapped key: {what} is missing")
    try:
        return base64.b64decode(s, validate=True)
    except ValueError:
        raise KeyError_(f"wrapped key: {what} is not base64") from None


def _kdf(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # (not needed to verify)

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode("utf-8"))


def _aead(kek: bytes) -> Any:
    """AES-256-GCM under ``kek`` (imported here: verifying, e.g. in a worker, never needs it)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(kek)


@dataclass(frozen=True)
class WrappedKey:
    """A sealed private key, as stored: JSON text with everything needed to open it."""

    public_key: bytes
    salt: bytes
    nonce: bytes
    ciphertext: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": WRAP_FORMAT,
                "kdf": {"name": "scrypt", "n": self.n, "r": self.r, "p": self.p,
                        "salt": _b64(self.salt)},
                "aead": {"name": "AES-256-GCM", "nonce": _b64(self.nonce)},
                "public_key": _b64(self.public_key),
                "ciphertext": _b64(self.ciphertext),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> WrappedKey:
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            raise KeyError_("wrapped key: not JSON") from None
        if not isinstance(obj, dict) or obj.get("format") != WRAP_FORMAT:
            raise KeyError_(f"wrapped key: format is not {WRAP_FORMAT}")
        kdf, aead = obj.get("kdf"), obj.get("aead")
        if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
            raise KeyError_("wrapped key: KDF is not scrypt")
        if not isinstance(aead, dict) or aead.get("name") != "AES-256-GCM":
            raise KeyError_("wrapped key: cipher is not AES-256-GCM")
        n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (n, r, p)):
            raise KeyError_("wrapped key: scrypt parameters are not integers")
        assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
        if n < SCRYPT_N or r < SCRYPT_R or p < SCRYPT_P or n > 2**22 or r > 32 or p > 16:
            raise KeyError_(
                f"wrapped key: scrypt parameters n={n} r={r} p={p} are outside the accepted range "
                f"(n from {SCRYPT_N} to {2**22}, r ≥ {SCRYPT_R}, p ≥ {SCRYPT_P})"
            )
        return cls(
            public_key=_unb64(obj.get("public_key"), "public key"),
            salt=_unb64(kdf.get("salt"), "salt"),
            nonce=_unb64(aead.get("nonce"), "nonce"),
            ciphertext=_unb64(obj.get("ciphertext"), "ciphertext"),
            n=n, r=r, p=p,
        )


def _aad(public_key: bytes) -> bytes:
    return WRAP_FORMAT.encode() + b"\n" + public_key


def wrap(key: Ed25519PrivateKey, password: str, *, salt: bytes | None = None,
         nonce: bytes | None = None) -> WrappedKey:
    """Seal ``key`` under ``password``. ``salt``/``nonce`` only for deterministic examples."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise KeyError_(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    salt = os.urandom(16) if salt is None else salt
    nonce = os.urandom(12) if nonce is None else nonce
    pub = public_bytes(key)
    secret = key.private_bytes_raw()
    kek = _kdf(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ct = _aead(kek).encrypt(nonce, secret, _aad(pub))
    return WrappedKey(public_key=pub, salt=salt, nonce=nonce, ciphertext=ct)


def unwrap(wrapped: WrappedKey, password: str) -> Ed25519PrivateKey:
    """Open a sealed key; a wrong password (or damaged data) raises KeyError_."""
    if wrapped.n < SCRYPT_N or wrapped.r < SCRYPT_R or wrapped.p < SCRYPT_P:
        raise KeyError_("wrapped key: scrypt parameters are weaker than coi accepts")
    k = _kdf(password, wrapped.salt, wrapped.n, wrapped.r, wrapped.p)
    try:
        secret = _aead(k).decrypt(wrapped.nonce, wrapped.ciphertext, _aad(wrapped.public_key))
    except InvalidTag:
        raise KeyError_("wrong password (or the stored key is damaged)") from None
    key = Ed25519PrivateKey.from_private_bytes(secret)
    if public_bytes(key) != wrapped.public_key:
        raise KeyError_("wrapped key: the private key does not match its public key")
    return key
