"""Signed-note keys (c2sp.org/signed-note): key names, key ids and verifier key strings.

Owns who a note signature line claims to be: a key name (non-empty, no space, no ``+``, no
control character), its 4-byte key id ``SHA-256(name ‖ "\\n" ‖ type ‖ public key)[:4]`` and the
verifier key string ``<name>+<8 hex key id>+base64(type ‖ public key)``, for signature types
0x01 (Ed25519, a log key) and 0x04 (Ed25519 cosignature/v1, a witness). ``parse_verifier_key``
splits a string at its first two ``+`` only (the base64 part may hold ``+``) and checks that the
key id is the one the name, type and key give. ``coi.ledger.note`` signs and opens notes with
these keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from coi.ledger.errors import VerificationError

ALG_ED25519 = 0x01
"""signed-note signature type: Ed25519 over the note text."""

ALG_COSIGNATURE_V1 = 0x04
"""signed-note signature type: timestamped Ed25519 witness cosignature (tlog-cosignature/v1)."""

PUBLIC_KEY_SIZE = 32
_HEX_KEY_ID = re.compile(r"[0-9a-fA-F]{8}")
_ALGORITHMS = {ALG_ED25519: "Ed25519", ALG_COSIGNATURE_V1: "Ed25519 cosignature/v1"}


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid key name, or None (signed-note, Format)."""
    if not isinstance(name, str) or name == "":
        return "a key name must not be empty"
    if any(c.isspace() for c in name):
        return f"key name {name!r} contains a space"
    if "+" in name:
        return f"key name {name!r} contains '+'"
    if any(ord(c) < 0x20 for c in name):
        return f"key name {name!r} contains a control character"
    return None


def check_name(name: str) -> None:
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(problem)


def raw_public_key(key: Ed25519PublicKey | bytes) -> bytes:
    raw = key if isinstance(key, bytes) else key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
    return raw


def key_id(name: str, public_key_raw: bytes, algorithm: int = ALG_ED25519) -> bytes:
    """The 4-byte key id: SHA-256(name ‖ "\\n" ‖ algorithm ‖ public key)[:4]."""
    check_name(name)
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"unknown signature type 0x{algorithm:02x}")
    raw = raw_public_key(public_key_raw)
    return hashlib.sha256(name.encode() + b"\n" + bytes([algorithm]) + raw).digest()[:4]


def _vkey(name: str, public_key: Ed25519PublicKey | bytes, algorithm: int) -> str:
    raw = raw_public_key(public_key)
    kid = key_id(name, raw, algorithm)
    return f"{name}+{kid.hex()}+{base64.b64encode(bytes([algorithm]) + raw).decode()}"


def verifier_key(name: str, public_key: Ed25519PublicKey | bytes) -> str:
    """The signed-note verifier key string ``<name>+<8 hex>+base64(0x01 ‖ public key)``."""
    return _vkey(name, public_key, ALG_ED25519)


def cosigner_key(name: str, public_key: Ed25519PublicKey | bytes) -> str:
    """A witness's verifier key string ``<name>+<8 hex>+base64(0x04 ‖ public key)``."""
    return _vkey(name, public_key, ALG_COSIGNATURE_V1)


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted key: its name, 4-byte key id, raw 32-byte Ed25519 public key and signature type.

    Construction checks that the key id is the one the name, type and key give.
    """

    name: str
    key_id: bytes
    public_key: bytes
    algorithm: int = ALG_ED25519

    def __post_init__(self) -> None:
        expected = key_id(self.name, self.public_key, self.algorithm)
        if self.key_id != expected:
            raise ValueError(f"key id {self.key_id.hex()} is not {expected.hex()} for {self.name}")

    @classmethod
    def from_public_key(
        cls, name: str, public_key: Ed25519PublicKey | bytes, algorithm: int = ALG_ED25519
    ) -> NoteVerifier:
        """The verifier for ``public_key`` under ``name`` (type 0x01, or 0x04 for a cosigner)."""
        raw = raw_public_key(public_key)
        return cls(name, key_id(name, raw, algorithm), raw, algorithm)

    @property
    def vkey(self) -> str:
        """The verifier key string for this key (what ``parse_verifier_key`` reads)."""
        return _vkey(self.name, self.public_key, self.algorithm)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"


def b64decode_canonical(text: str) -> bytes:
    """Standard base64 (RFC 4648 §4) that re-encodes to exactly ``text``; raises ValueError."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not standard base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


def parse_verifier_key(vkey: str) -> NoteVerifier:
    """Parse ``<name>+<8 hex key id>+base64(type ‖ public key)`` (signed-note verifier keys).

    Accepts signature types 0x01 (Ed25519) and 0x04 (Ed25519 cosignature/v1). The string is
    split on '+' at most twice, so the base64 part may contain '+'.
    """
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise VerificationError(f"verifier key {vkey!r} is not <name>+<key id>+<key>")
    name, hex_id, key64 = parts
    problem = name_problem(name)
    if problem is not None:
        raise VerificationError(f"verifier key: {problem}")
    if not _HEX_KEY_ID.fullmatch(hex_id):
        raise VerificationError(f"verifier key {name}: key id {hex_id!r} is not 8 hex digits")
    try:
        key = b64decode_canonical(key64)
    except ValueError as exc:
        raise VerificationError(f"verifier key {name}: the key is {exc}") from None
    if not key:
        raise VerificationError(f"verifier key {name}: the key is empty")
    algorithm, raw = key[0], key[1:]
    if algorithm not in _ALGORITHMS:
        raise VerificationError(
            f"verifier key {name}: unknown signature type 0x{algorithm:02x} "
            "(supported: 0x01 Ed25519, 0x04 Ed25519 cosignature/v1)"
        )
    if len(raw) != PUBLIC_KEY_SIZE:
        raise VerificationError(
            f"verifier key {name}: an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, "
            f"got {len(raw)}"
        )
    expected = key_id(name, raw, algorithm)
    if bytes.fromhex(hex_id) != expected:
        raise VerificationError(
            f"verifier key {name}: key id {hex_id.lower()} does not match the key "
            f"(expected {expected.hex()})"
        )
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise VerificationError(f"verifier key {name}: not a valid Ed25519 public key") from None
    return NoteVerifier(name, expected, raw, algorithm)
