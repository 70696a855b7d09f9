"""The audit bundle's records (docs/export.md): the one encoding of a line, and reading one.

Owns the line format shared by the writer (``coi.export.bundle``) and the offline verifier
(``coi.export.verifier``): each record is compact JSON, ASCII only, its keys in the fixed order
``FIELDS`` gives, then LF; ``parse_line`` reads one line back and refuses any other spelling
(step 1 of the verifier). Also the small typed readers of record values (base64, hex,
integers) and the text of the manifest's signed note. Standard library and the ledger core
only, like the verifier.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from coi.ledger.errors import VerificationError
from coi.ledger.note import parse_verifier_key

FORMAT = "coi-bundle"
VERSION = 1
MAX_LINE = 256 * 1024
MANIFEST_NOTE_HEADER = "coi-bundle/v1"

FIELDS: Mapping[str, tuple[str, ...]] = {
    "header": ("kind", "format", "version", "origin", "log_key", "scope", "tree_size",
               "created_ms"),
    "checkpoint": ("kind", "note"),
    "handoff": ("kind", "sender", "receiver", "coi", "shipment", "items", "signers", "previous"),
    "process": ("kind", "sha256", "toml"),
    "entry": ("kind", "index", "in_scope", "hash", "statement", "signatures", "proof"),
    "manifest": ("kind", "counts", "sha256", "bundle_sha256", "signature"),
}
KINDS = ("header", "checkpoint", "handoff", "process", "entry")
HEX64 = re.compile(r"[0-9a-f]{64}")
SCOPE_FIELDS: Mapping[str, tuple[str, ...]] = {
    "all": ("mode",),
    "coi": ("mode", "coi"),
    "handoff": ("mode", "coi"),
    "period": ("mode", "since_ms", "until_ms"),
}


_LINE_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def encode_line(obj: Mapping[str, Any]) -> bytes:
    """The one encoding of a record: compact JSON, ASCII only, keys as given, then LF."""
    return _LINE_ENCODER.encode(obj).encode("ascii") + b"\n"


def manifest_note_text(origin: str, bundle_sha256: str) -> str:
    """The signed-note text the log key signs in the manifest."""
    return f"{MANIFEST_NOTE_HEADER}\n{origin}\n{bundle_sha256}\n"


def _no_float(text: str) -> Any:
    raise ValueError(f"float {text} is not allowed")


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def unb64(s: Any, what: str) -> bytes:
    if not isinstance(s, str):
        raise VerificationError(f"{what} is not a string")
    try:
        out = binascii.a2b_base64(s.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise VerificationError(f"{what} is not base64") from None
    if base64.b64encode(out).decode("ascii") != s:
        raise VerificationError(f"{what} is not canonical base64")
    return out


def nonneg_int(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise VerificationError(f"{what} is not a non-negative integer")
    return v


def nonempty_str(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise VerificationError(f"{what} is not a non-empty string")
    return v


def hex64(v: Any, what: str) -> str:
    s = nonempty_str(v, what)
    if not HEX64.fullmatch(s):
        raise VerificationError(f"{what} is not 64 lowercase hex digits")
    return s


_LINE_DECODER = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_constant)


def parse_line(line: bytes) -> dict[str, Any]:
    """Step 1 for one line: the record it holds, or VerificationError (no line number)."""
    if len(line) > MAX_LINE:
        raise VerificationError(f"line longer than {MAX_LINE} bytes")
    if not line.endswith(b"\n"):
        raise VerificationError("the last line does not end in a newline (truncated file?)")
    try:
        text = line.decode("ascii")
        obj = _LINE_DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise VerificationError(f"not a JSON record ({e.__class__.__name__})") from None
    if not isinstance(obj, dict):
        raise VerificationError("the record is not a JSON object")
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in FIELDS:
        raise VerificationError(f"unknown record kind {kind!r}")
    if tuple(obj) != FIELDS[kind]:
        raise VerificationError(f"a {kind} record must have exactly the fields "
                                f"{', '.join(FIELDS[kind])} in that order")
    if encode_line(obj) != line:
        # (A repeated key is refused here: parsed, the last one wins, and the record's
        # encoding has one member fewer than the line. Named if that is the reason.)
        try:
            json.loads(text, object_pairs_hook=_pairs)
        except ValueError as e:
            raise VerificationError(f"not a JSON record ({e})") from None
        raise VerificationError(f"the {kind} record is not in the bundle's one encoding")
    return obj


def same_key(a: str, b: str) -> bool:
    """Whether two note verifier key strings name the same key (name, type and public key)."""
    ka, kb = parse_verifier_key(a), parse_verifier_key(b)
    return (ka.name, ka.key_id, ka.algorithm, ka.public_key) == (
        kb.name, kb.key_id, kb.algorithm, kb.public_key)
