"""Signed checkpoints: C2SP signed-note, tlog-checkpoint and tlog-cosignature/v1 (Ed25519).

This module owns the text formats an auditor checks with standard tools:

* **signed-note** (c2sp.org/signed-note): a text ending in a newline, a blank line, then
  signature lines ``— <key name> base64(4-byte key id ‖ signature)``. Signature type 0x01 is
  Ed25519 over the note text. The keys (names, key ids, verifier key strings) are
  ``coi.ledger.note_keys``'s; their names are also importable from here.
* **tlog-checkpoint** (c2sp.org/tlog-checkpoint): the note text ``<origin>\\n<size>\\n<base64
  root>\\n`` plus optional extension lines.
* **tlog-cosignature/v1** (c2sp.org/tlog-cosignature), signature type 0x04: a witness's
  Ed25519 signature over ``"cosignature/v1\\ntime <t>\\n" + checkpoint text``, written as
  ``key id ‖ 8-byte big-endian t ‖ 64-byte signature``.

``open_note`` is the verifier: a pure function over the note and the keys the caller trusts.
Signature lines from unknown keys are ignored (that is what makes witness cosignatures and key
rotation possible); a line from a known key must verify; at least one must. It raises
``VerificationError`` with the reason. Signing takes the private key and, for cosignatures, the
time as arguments: the module never reads a clock or a key file.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from coi.ledger.errors import VerificationError
from coi.ledger.note_keys import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    NoteVerifier,
    b64decode_canonical,
    check_name,
    cosigner_key,
    key_id,
    name_problem,
    parse_verifier_key,
    verifier_key,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteVerifier",
    "OpenedNote",
    "add_signature",
    "cosign",
    "cosignature_message",
    "cosigner_key",
    "format_checkpoint",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint",
    "parse_verifier_key",
    "sign_note",
    "verifier_key",
    "verify_cosignature",
]

MAX_SIGNATURES = 100
"""Signature lines accepted in one note (the spec demands at least 16; Go's x/mod uses 100)."""

MAX_NOTE_BYTES = 1_000_000
"""Bytes accepted in one note, signatures included."""

MAX_TIMESTAMP = 2**63 - 1
"""A cosignature's timestamp MUST NOT exceed 2^63 − 1 (tlog-cosignature, Format)."""

_EM_DASH = "\u2014"
_SIG_PREFIX = _EM_DASH + " "
_ED25519_SIG_SIZE = 64
_TIMESTAMP_SIZE = 8
_ROOT_SIZE = 32
_KEY_ID_SIZE = 4
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_TREE_SIZE = 2**64 - 1


# --- Notes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SignatureLine:
    line: str
    name: str
    key_id: bytes
    signature: bytes


def _malformed(reason: str) -> VerificationError:
    return VerificationError(f"malformed note: {reason}")


def _check_characters(text: str, what: str) -> None:
    for c in text:
        if ord(c) < 0x20 and c != "\n":
            raise _malformed(f"{what} contains control character U+{ord(c):04X}")


def _split_note(note: str | bytes) -> tuple[str, list[_SignatureLine]]:
    """Parse a note's structure (signed-note, Format) without checking any signature."""
    raw = note if isinstance(note, bytes) else None
    if raw is None:
        if not isinstance(note, str):
            raise TypeError("a note is str or bytes")
        try:
            raw = note.encode("utf-8")
        except UnicodeEncodeError:
            raise _malformed("not valid UTF-8") from None
    if len(raw) > MAX_NOTE_BYTES:
        raise _malformed(f"{len(raw)} bytes, more than the limit of {MAX_NOTE_BYTES}")
    try:
        text_all = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("not valid UTF-8") from None
    _check_characters(text_all, "the note")
    # The text is separated from the signatures by the last empty line.
    split = text_all.rfind("\n\n")
    if split < 0:
        raise _malformed("no blank line before the signatures")
    text, sigs = text_all[: split + 1], text_all[split + 2 :]
    if not sigs:
        raise _malformed("no signature lines")
    if not sigs.endswith("\n"):
        raise _malformed("the last signature line does not end in a newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"{len(lines)} signature lines, more than the limit of {MAX_SIGNATURES}")
    return text, [_parse_signature_line(line) for line in lines]


def _parse_signature_line(line: str) -> _SignatureLine:
    if not line.startswith(_SIG_PREFIX):
        raise _malformed(f"line {line[:40]!r} is not a signature line ('— <name> <signature>')")
    name, _, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
    problem = name_problem(name)
    if problem is not None:
        raise _malformed(f"signature line: {problem}")
    try:
        sig = b64decode_canonical(sig64)
    except ValueError as exc:
        raise _malformed(f"signature of {name} is {exc}") from None
    if len(sig) < _KEY_ID_SIZE + 1:
        raise _malformed(f"signature of {name} is too short ({len(sig)} bytes)")
    return _SignatureLine(line, name, sig[:_KEY_ID_SIZE], sig[_KEY_ID_SIZE:])


def _signature_line(name: str, kid: bytes, signature: bytes) -> str:
    return f"{_SIG_PREFIX}{name} {base64.b64encode(kid + signature).decode()}\n"


def _check_text(text: str) -> bytes:
    if not isinstance(text, str) or not text.endswith("\n"):
        raise ValueError("a note text must end in a newline")
    for c in text:
        if ord(c) < 0x20 and c != "\n":
            raise ValueError(f"a note text must not contain control character U+{ord(c):04X}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a note text must be valid UTF-8") from None


def _public_raw(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign ``text`` (ending in "\\n") as ``name`` with Ed25519: ``text + "\\n" + sig line``."""
    message = _check_text(text)
    check_name(name)
    kid = key_id(name, _public_raw(private_key))
    return text + "\n" + _signature_line(name, kid, private_key.sign(message))


def _add_line(note: str, name: str, kid: bytes, signature: bytes) -> str:
    """Append a signature line, replacing one from the same key (same name and key id)."""
    text, lines = _split_note(note)
    kept = [s.line + "\n" for s in lines if (s.name, s.key_id) != (name, kid)]
    return text + "\n" + "".join(kept) + _signature_line(name, kid, signature)


def add_signature(note: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Add an Ed25519 signature by ``name`` to an already signed note.

    Existing signature lines are kept in order (they are not checked here); a line from the same
    key is replaced, so signing twice does not add a duplicate.
    """
    check_name(name)
    text, _ = _split_note(note)
    kid = key_id(name, _public_raw(private_key))
    return _add_line(note, name, kid, private_key.sign(_check_text(text)))


@dataclass(frozen=True)
class OpenedNote:
    """A note whose signatures from the trusted keys all verified.

    ``verified_names`` lists the keys with a valid signature, in order of first appearance;
    ``unknown_lines`` the signature lines from keys the caller did not trust (ignored, kept for
    diagnostics); ``cosigned_at`` the timestamp of each verified cosignature, by cosigner name.
    """

    text: str
    verified_names: tuple[str, ...]
    unknown_lines: tuple[str, ...]
    cosigned_at: dict[str, int] = field(default_factory=dict)


def cosignature_message(text: str, timestamp: int) -> bytes:
    """What a tlog-cosignature/v1 Ed25519 signature signs: header, time line, checkpoint text."""
    if isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"a cosignature timestamp is between 0 and 2^63-1, got {timestamp!r}")
    return f"cosignature/v1\ntime {timestamp}\n".encode() + _check_text(text)


def _ed25519(key: NoteVerifier) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(key.public_key)


def _verify_line(text: bytes, text_str: str, sig: _SignatureLine, key: NoteVerifier) -> int | None:
    """Verify one signature line from a known key; return its timestamp for a cosignature."""
    label = f"{sig.name}+{sig.key_id.hex()}"
    if key.algorithm == ALG_ED25519:
        if len(sig.signature) != _ED25519_SIG_SIZE:
            raise VerificationError(
                f"signature of {label} is {len(sig.signature)} bytes, not {_ED25519_SIG_SIZE}"
            )
        try:
            _ed25519(key).verify(sig.signature, text)
        except InvalidSignature:
            raise VerificationError(f"invalid signature for key {label}") from None
        return None
    # tlog-cosignature/v1: timestamped_signature = u64 timestamp ‖ 64-byte Ed25519 signature.
    if len(sig.signature) != _TIMESTAMP_SIZE + _ED25519_SIG_SIZE:
        raise VerificationError(
            f"cosignature of {label} is {len(sig.signature)} bytes, "
            f"not {_TIMESTAMP_SIZE + _ED25519_SIG_SIZE}"
        )
    timestamp = int.from_bytes(sig.signature[:_TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise VerificationError(f"cosignature of {label} has timestamp {timestamp} > 2^63-1")
    message = cosignature_message(text_str, timestamp)
    try:
        _ed25519(key).verify(sig.signature[_TIMESTAMP_SIZE:], message)
    except InvalidSignature:
        raise VerificationError(f"invalid cosignature for key {label}") from None
    return timestamp


@dataclass(frozen=True)
class _Checked:
    text: str
    verified: tuple[tuple[str, bytes], ...]
    unknown_lines: tuple[str, ...]
    cosigned_at: dict[str, int]


def _check_signatures(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> _Checked:
    """Steps 1 to 3 of ``open_note``: every line from a trusted key verifies."""
    # Step 1.
    text, lines = _split_note(note)
    message = text.encode("utf-8")
    known: dict[tuple[str, bytes], set[NoteVerifier]] = {}
    for v in verifiers:
        known.setdefault((v.name, v.key_id), set()).add(v)
    verified: dict[tuple[str, bytes], None] = {}
    unknown: list[str] = []
    cosigned_at: dict[str, int] = {}
    for sig in lines:
        candidates = known.get((sig.name, sig.key_id))
        # Step 2.
        if not candidates:
            unknown.append(sig.line)
            continue
        # Step 3.
        if len(candidates) > 1:
            raise VerificationError(f"ambiguous key {sig.name}+{sig.key_id.hex()}")
        (key,) = candidates
        timestamp = _verify_line(message, text, sig, key)
        verified[(sig.name, sig.key_id)] = None
        if timestamp is not None:
            cosigned_at[sig.name] = timestamp
    return _Checked(text, tuple(verified), tuple(unknown), cosigned_at)


def open_note(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> OpenedNote:
    """Check a signed note against the trusted ``verifiers`` (signed-note, Signatures).

    1. The note must be well formed: UTF-8, no control characters but newline, a text ending
       in a newline, a blank line, then at most ``MAX_SIGNATURES`` signature lines with valid
       key names and base64; at most ``MAX_NOTE_BYTES`` in all.
    2. A line whose (name, key id) matches no verifier is ignored ("Verifiers MUST ignore
       signatures from unknown keys, even if they share a name or ID (but not both)").
    3. A line that matches a verifier must verify, or the whole note is refused ("If a
       signature from a known key fails to verify, clients SHOULD reject the whole note").
       Two different trusted keys with the same name and id make the line ambiguous: refused.
    4. At least one trusted key must have signed ("If no signature from a known key verifies
       successfully, clients MUST reject the note").
    """
    checked = _check_signatures(note, verifiers)
    # Step 4.
    if not checked.verified:
        raise VerificationError("note has no signature from a trusted key")
    names = tuple(dict.fromkeys(name for name, _ in checked.verified))
    return OpenedNote(checked.text, names, checked.unknown_lines, checked.cosigned_at)


# --- Checkpoints --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: the log's origin, its size and its RFC 6962 root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def format_checkpoint(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    """The checkpoint note text ``<origin>\\n<size>\\n<base64 root>\\n[<extension>\\n…]``."""
    if not isinstance(origin, str) or origin == "" or "\n" in origin:
        raise ValueError("a checkpoint origin is one non-empty line")
    _check_characters_value(origin, "origin")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _MAX_TREE_SIZE:
        raise ValueError(f"a tree size is an integer between 0 and 2^64-1, got {size!r}")
    if not isinstance(root, bytes) or len(root) != _ROOT_SIZE:
        raise ValueError(f"a root hash is {_ROOT_SIZE} bytes")
    for ext in extensions:
        if not isinstance(ext, str) or ext == "" or "\n" in ext:
            raise ValueError("an extension line is one non-empty line")
        _check_characters_value(ext, "extension line")
    body = [origin, str(size), base64.b64encode(root).decode(), *extensions]
    return "\n".join(body) + "\n"


def _check_characters_value(value: str, what: str) -> None:
    if any(ord(c) < 0x20 for c in value):
        raise ValueError(f"the {what} contains a control character")


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint note text (tlog-checkpoint, Note text), strictly."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise VerificationError("checkpoint: the text must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise VerificationError(f"checkpoint: {len(lines)} lines, at least 3 are needed")
    origin, size_line, root_line, *extensions = lines
    if origin == "":
        raise VerificationError("checkpoint: the origin line is empty")
    if not _DECIMAL.fullmatch(size_line):
        raise VerificationError(
            f"checkpoint: tree size {size_line[:30]!r} is not a decimal without leading zeros"
        )
    size = int(size_line)
    if size > _MAX_TREE_SIZE:
        raise VerificationError(f"checkpoint: tree size {size_line} does not fit in 64 bits")
    try:
        root = b64decode_canonical(root_line)
    except ValueError as exc:
        raise VerificationError(f"checkpoint: the root hash is {exc}") from None
    if len(root) != _ROOT_SIZE:
        raise VerificationError(f"checkpoint: the root hash is {len(root)} bytes, not 32")
    for i, ext in enumerate(extensions):
        if ext == "":
            raise VerificationError(f"checkpoint: extension line {i + 1} is empty")
    for line in lines:
        if any(ord(c) < 0x20 for c in line):
            raise VerificationError("checkpoint: a line contains a control character")
    return Checkpoint(origin, size, root, tuple(extensions))


def open_checkpoint(
    note: str | bytes,
    log_key: NoteVerifier,
    *,
    cosigners: Sequence[NoteVerifier] = (),
    origin: str | None = None,
) -> tuple[Checkpoint, OpenedNote]:
    """Open a checkpoint that ``log_key`` must have signed; check ``cosigners``' lines too.

    Cosignatures from ``cosigners`` are verified when present (see ``OpenedNote.cosigned_at``)
    but not required: a witness quorum is the caller's policy. ``origin``, when given, must be
    the checkpoint's origin line.
    """
    checked = _check_signatures(note, [log_key, *cosigners])
    if (log_key.name, log_key.key_id) not in checked.verified:
        raise VerificationError(f"checkpoint is not signed by the log key {log_key}")
    checkpoint = parse_checkpoint(checked.text)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(
            f"checkpoint origin {checkpoint.origin!r} is not the expected {origin!r}"
        )
    names = tuple(dict.fromkeys(name for name, _ in checked.verified))
    return checkpoint, OpenedNote(checked.text, names, checked.unknown_lines, checked.cosigned_at)


# --- Cosignatures -------------------------------------------------------------------------------


def cosign(checkpoint_note: str, name: str, private_key: Ed25519PrivateKey, time_s: int) -> str:
    """Add a tlog-cosignature/v1 line by witness ``name`` at POSIX time ``time_s``.

    The checkpoint's own signatures are not checked here: a witness verifies the log's
    signature and consistency before it cosigns.
    """
    check_name(name)
    text, _ = _split_note(checkpoint_note)
    try:
        parse_checkpoint(text)
    except VerificationError as exc:
        raise ValueError(f"only a checkpoint can be cosigned: {exc.reason}") from None
    message = cosignature_message(text, time_s)
    kid = key_id(name, _public_raw(private_key), ALG_COSIGNATURE_V1)
    signature = time_s.to_bytes(_TIMESTAMP_SIZE, "big") + private_key.sign(message)
    return _add_line(checkpoint_note, name, kid, signature)


def verify_cosignature(note: str | bytes, cosigner: NoteVerifier) -> int:
    """Check that ``cosigner`` (a 0x04 key) validly cosigned this checkpoint; return its time.

    Only the cosignature is checked, not the log's signature (use ``open_checkpoint`` for
    both). Raises ``VerificationError`` if the cosignature is absent or does not verify.
    """
    if cosigner.algorithm != ALG_COSIGNATURE_V1:
        raise VerificationError(
            f"{cosigner} is not a cosigner key (signature type 0x{cosigner.algorithm:02x})"
        )
    checked = _check_signatures(note, [cosigner])
    if (cosigner.name, cosigner.key_id) not in checked.verified:
        raise VerificationError(f"checkpoint has no cosignature from {cosigner}")
    parse_checkpoint(checked.text)
    return checked.cosigned_at[cosigner.name]
