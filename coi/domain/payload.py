"""coi's own label payload: the text inside the tracker's QR codes, and its signed variant.

This module owns the payload format described in ``docs/labels.md``:

- plain (26 characters, fits a version 3 QR code at level M)::

      COI1 + CoI identifier text (15) + item id (6) + check character (1)

- signed (137 characters, for 4x2 in labels)::

      COS1 + CoI identifier text (15) + item id (6) + key id (8 hex) + Ed25519 signature
      (103 characters, RFC 4648 base32 without padding) + check character (1)

Only upper-case letters and digits are used, so a keyboard-wedge scanner types the payload the
same way on every keyboard layout. The check character is ISO 7064 MOD 37-36 (alphabet 0-9A-Z)
over everything before it. The signature covers ``b"coi-label/v1\\n"`` followed by the payload up
to and including the key id. Errors are :class:`coi.domain.errors.ScanError` with a reason a person
at a scan station understands. Keys are passed in already loaded; nothing here does I/O.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coi.domain import isbt
from coi.domain.errors import ScanError

__all__ = [
    "ITEM_KINDS",
    "PLAIN_LENGTH",
    "PLAIN_PREFIX",
    "SIGNED_LENGTH",
    "SIGNED_PREFIX",
    "SIGNING_CONTEXT",
    "LabelPayload",
    "decode",
    "encode",
    "mod37_36",
    "sign",
    "signed_message",
    "verify_signed",
]

PLAIN_PREFIX: Final = "COI1"
SIGNED_PREFIX: Final = "COS1"
SIGNING_CONTEXT: Final = b"coi-label/v1\n"

ITEM_KINDS: Final[dict[str, str]] = {
    "C": "collection bag",
    "F": "final product bag",
    "D": "shipping document",
    "W": "patient wristband",
}

_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUE: Final = {c: i for i, c in enumerate(_ALPHABET)}
_ALNUM_RE: Final = re.compile("[0-9A-Z]*")
_ITEM_RE: Final = re.compile("[CFDW][0-9]{5}")
_KEY_ID_RE: Final = re.compile("[0-9A-F]{8}")
_BASE32_RE: Final = re.compile("[A-Z2-7]{103}")

_COI_END: Final = 4 + 15  # "COI1" + the CoI identifier text
_ITEM_END: Final = _COI_END + 6  # 25
_KEY_END: Final = _ITEM_END + 8  # 33
_SIG_END: Final = _KEY_END + 103  # 136
PLAIN_LENGTH: Final = _ITEM_END + 1  # 26
SIGNED_LENGTH: Final = _SIG_END + 1  # 137


def _step(p: int, v: int) -> int:
    """One step of the ISO 7064 hybrid system MOD 37,36."""
    return (((p + v) % 36 or 36) * 2) % 37


# _STEPS[p][ch] is the state after reading ch in state p (a table lookup per character keeps
# parsing fast; tests check it against python-stdnum).
_STEPS: Final = [{c: _step(p, v) for c, v in _VALUE.items()} for p in range(37)]


def mod37_36(s: str) -> str:
    """ISO 7064 MOD 37-36 check character of ``s`` (alphabet 0-9A-Z; hybrid system)."""
    p = 36
    steps = _STEPS
    try:
        for ch in s:
            p = steps[p][ch]
    except KeyError:
        raise ScanError(
            f"The text {s!r} holds a character other than 0-9 and A-Z, which a coi label "
            "never holds."
        ) from None
    return _ALPHABET[(37 - p) % 36]


@dataclass(frozen=True, slots=True)
class LabelPayload:
    """A decoded label payload. ``key_id`` and ``signature`` are set only when ``signed``."""

    coi: str
    item: str
    signed: bool = False
    key_id: bytes | None = None
    signature: bytes | None = None

    @property
    def item_kind(self) -> str:
        """What the item is: collection bag, final product bag, shipping document, wristband."""
        return ITEM_KINDS[self.item[0]]

    @property
    def coi_id(self) -> isbt.CoiId:
        """The Chain of Identity Identifier as an ISBT 128 structure."""
        return isbt.coi_id_from_text(self.coi)

    def text(self) -> str:
        """The payload text again (what :func:`encode` or :func:`sign` produced)."""
        if not self.signed:
            return encode(self.coi, self.item)
        assert self.key_id is not None and self.signature is not None
        head = _signed_head(self.coi, self.item, self.key_id)
        body = head + _b32(self.signature)
        return body + mod37_36(body)


def _check_fields(coi: str, item: str) -> None:
    try:
        isbt.coi_id_from_text(coi)
    except isbt.IsbtError as exc:
        raise ScanError(f"The label's chain of identity is not valid. {exc.reason}") from None
    if not _ITEM_RE.fullmatch(item):
        kind = item[:1]
        if kind not in ITEM_KINDS:
            raise ScanError(
                f"The item id {item!r} starts with {kind!r}; a coi item id starts with C "
                "(collection bag), F (final product bag), D (shipping document) or W (patient "
                "wristband)."
            )
        raise ScanError(
            f"The item id {item!r} must be one letter (C, F, D or W) and five digits, e.g. F00001."
        )


def encode(coi: str, item: str) -> str:
    """The plain payload: ``COI1`` + CoI identifier text + item id + MOD 37-36 check character."""
    _check_fields(coi, item)
    body = f"{PLAIN_PREFIX}{coi}{item}"
    return body + mod37_36(body)


def _signed_head(coi: str, item: str, key_id: bytes) -> str:
    if len(key_id) != 4:
        raise ScanError(f"A signing key id is 4 bytes; this one is {len(key_id)}.")
    return f"{SIGNED_PREFIX}{coi}{item}{key_id.hex().upper()}"


def _b32(signature: bytes) -> str:
    return base64.b32encode(signature).decode("ascii").rstrip("=")


def signed_message(head: str) -> bytes:
    """The bytes an Ed25519 label signature covers: the context and the payload head."""
    return SIGNING_CONTEXT + head.encode("ascii")


def sign(coi: str, item: str, key_id: bytes, private_key: Ed25519PrivateKey) -> str:
    """The signed payload (137 characters) for ``coi`` and ``item``, signed by ``private_key``.

    ``key_id`` (4 bytes) names the key so a verifier can find its public half.
    """
    _check_fields(coi, item)
    head = _signed_head(coi, item, key_id)
    body = head + _b32(private_key.sign(signed_message(head)))
    return body + mod37_36(body)


def decode(text: str) -> LabelPayload:
    """Decode a plain or signed payload (case-insensitive), checking format and check character.

    A signed payload's signature is decoded but not verified: see :func:`verify_signed`.
    """
    if not text.isascii():
        raise ScanError(
            "The label code holds characters a coi label never holds; check the scanner's "
            "keyboard layout and scan again."
        )
    text = text.upper()
    prefix = text[:4]
    if prefix == PLAIN_PREFIX:
        expected = PLAIN_LENGTH
    elif prefix == SIGNED_PREFIX:
        expected = SIGNED_LENGTH
    elif prefix[:3] in ("COI", "COS") and len(prefix) == 4:
        raise ScanError(
            f"The label code is version {prefix!r}, which this coi does not read; update coi or "
            "reprint the label."
        )
    else:
        raise ScanError("This is not a coi label code: coi label codes start with COI1 or COS1.")
    if len(text) != expected:
        raise ScanError(
            f"A {'signed ' if prefix == SIGNED_PREFIX else ''}coi label code has {expected} "
            f"characters; this one has {len(text)}. The code was cut short or misread: scan it "
            "again, and if it keeps failing, void and reprint the label."
        )
    body, check = text[:-1], text[-1]
    if not _ALNUM_RE.fullmatch(text):
        i, ch = next((i, ch) for i, ch in enumerate(text) if ch not in _VALUE)
        raise ScanError(
            f"The label code holds {ch!r} at character {i + 1}; coi label codes hold only "
            "A-Z and 0-9. Scan it again."
        )
    if mod37_36(body) != check:
        raise ScanError(
            "The label code's check character does not match: the code was misread or altered. "
            "Scan it again; if it keeps failing, void and reprint the label."
        )
    coi, item = text[4:_COI_END], text[_COI_END:_ITEM_END]
    _check_fields(coi, item)
    if prefix == PLAIN_PREFIX:
        return LabelPayload(coi, item)
    key_hex, sig_text = text[_ITEM_END:_KEY_END], text[_KEY_END:_SIG_END]
    if not _KEY_ID_RE.fullmatch(key_hex):
        raise ScanError(
            f"The signed label's key id {key_hex!r} must be 8 hexadecimal characters "
            "(0-9, A-F). Scan it again."
        )
    if not _BASE32_RE.fullmatch(sig_text):
        raise ScanError(
            "The signed label's signature holds characters outside base32 (A-Z, 2-7); the code "
            "was misread or altered. Scan it again."
        )
    signature = base64.b32decode(sig_text + "=")
    if _b32(signature) != sig_text:
        raise ScanError(
            "The signed label's signature is not written the one way coi writes it; the code "
            "was altered. Void the label and report it."
        )
    return LabelPayload(coi, item, True, bytes.fromhex(key_hex), signature)


def verify_signed(payload: str | LabelPayload, public_key: Ed25519PublicKey) -> None:
    """Verify a signed payload's Ed25519 signature with ``public_key``; raise on failure.

    Returns nothing; raises :class:`ScanError` if the payload is not signed or the signature
    does not verify (another key signed it, or a character was changed).
    """
    label = decode(payload) if isinstance(payload, str) else payload
    if not label.signed or label.key_id is None or label.signature is None:
        raise ScanError(
            "This coi label is not signed, so it cannot be checked against a signing key."
        )
    head = _signed_head(label.coi, label.item, label.key_id)
    try:
        public_key.verify(label.signature, signed_message(head))
    except InvalidSignature:
        raise ScanError(
            f"The label's signature does not verify with key {label.key_id.hex().upper()}: the "
            "label was not printed by coi with that key, or it was altered. Do not use the item; "
            "quarantine it and report the label."
        ) from None
