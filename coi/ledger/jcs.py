"""coi's strict JSON profile and its canonical bytes (RFC 8785, JSON Canonicalization Scheme).

Owns: what a value may be inside a signed statement, turning a value into the one byte string
that is signed and hashed, and reading such bytes back while proving they are canonical.

The profile (docs/ledger-format.md, section 2): objects with ASCII keys, arrays, strings in
Unicode NFC without control characters other than TAB and LF, booleans, null, and integers with
|x| <= 2**53 - 1. No floats anywhere: times are integer milliseconds UTC, quantities are integers
in stated units or decimal strings. At most 16 levels deep and 16 KiB encoded.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from coi.ledger.errors import ProfileError

MAX_INT = 2**53 - 1
MAX_BYTES = 16 * 1024
MAX_DEPTH = 16
_ALLOWED_CONTROLS = frozenset("\t\n")


# Anything a profile string may not hold: C0 controls but TAB and LF, DEL and C1, surrogates.
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _check_string(s: str, path: str) -> None:
    if s.isascii() and s.isprintable():  # printable ASCII is NFC and holds no control: done
        return
    if not unicodedata.is_normalized("NFC", s):
        raise ProfileError(f"{path}: string is not in Unicode NFC form")
    bad = _FORBIDDEN.search(s)
    if bad is None:
        return
    for ch in bad.group():  # the same messages as always
        o = ord(ch)
        if (o < 0x20 or 0x7F <= o < 0xA0) and ch not in _ALLOWED_CONTROLS:
            raise ProfileError(f"{path}: string holds control character U+{o:04X}")
        if 0xD800 <= o <= 0xDFFF:
            raise ProfileError(f"{path}: string holds a lone surrogate U+{o:04X}")


def check(value: Any, path: str = "$", depth: int = 0) -> None:
    """Raise ProfileError naming the first place where ``value`` leaves the profile."""
    if depth > MAX_DEPTH:
        raise ProfileError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            raise ProfileError(f"{path}: integer {value} is outside ±(2**53 - 1)")
        return
    if isinstance(value, float):
        raise ProfileError(f"{path}: floats are not allowed; use an integer or a decimal string")
    if isinstance(value, str):
        _check_string(value, path)
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProfileError(f"{path}: object key {key!r} is not a string")
            if not key or not key.isascii() or not key.isprintable():
                raise ProfileError(f"{path}: object key {key!r} must be printable ASCII")
            check(item, f"{path}.{key}", depth + 1)
        return
    raise ProfileError(f"{path}: {type(value).__name__} is not a JSON profile value")


def normalise(value: Any) -> Any:
    """Input side: NFC-normalise every string (keys and values) and turn tuples into lists."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {normalise(k): normalise(v) for k, v in value.items()}
    return value


# Inside the profile (ASCII keys, integers only) the standard library's sorted, compact,
# non-ASCII-preserving encoding is exactly RFC 8785: keys sort the same by code point as by
# UTF-16 unit, integers print the same, and both escape only '"', '\\' and controls, with the
# same short forms. It is several times faster than the pure-Python rfc8785 package, which
# the tests use as the reference.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                            check_circular=False, allow_nan=False)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_ENCODE_ONCE = (  # what _ENCODER.encode runs, made once (encode makes it on every call)
    _c_make_encoder(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",",
                    True, False, False) if _c_make_encoder is not None else None)


def canonical_text(value: Any) -> str:
    """The canonical text of ``value``, unchecked: only for a value known to be in the
    profile (``encode`` checks first; the verifier compares it with text it was given)."""
    if _ENCODE_ONCE is None:
        return _ENCODER.encode(value)
    return "".join(_ENCODE_ONCE(value, 0))


def encode(value: Any) -> bytes:
    """The canonical bytes of ``value`` (which must already be in the profile)."""
    check(value)
    data = canonical_text(value).encode("utf-8")
    if len(data) > MAX_BYTES:
        raise ProfileError(f"$: encoded size {len(data)} bytes exceeds the {MAX_BYTES}-byte cap")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ProfileError(f"duplicate object key {k!r}")
        out[k] = v
    return out


def _no_float(text: str) -> Any:
    raise ProfileError(f"float {text} is not allowed")


def _no_constant(text: str) -> Any:
    raise ProfileError(f"{text} is not JSON")


def decode(data: bytes) -> Any:
    """Parse canonical bytes; raise ProfileError unless re-encoding gives the same bytes."""
    if len(data) > MAX_BYTES:
        raise ProfileError(f"$: {len(data)} bytes exceeds the {MAX_BYTES}-byte cap")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError(f"not UTF-8 at byte {e.start}") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as e:
        raise ProfileError(f"not JSON: {e.msg} at character {e.pos}") from None
    except RecursionError:
        raise ProfileError("nested too deeply") from None
    if encode(value) != data:
        raise ProfileError("bytes are not the RFC 8785 canonical form of their own value")
    return value
