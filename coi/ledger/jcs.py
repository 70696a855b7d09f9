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


# Anything a profile string may not hold: C0 controls but TAB and LF, DEL and C1, surrogates.
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


_CONTAINERS = (list, tuple, dict)  # (a tuple: isinstance is slower with list | tuple | dict)


class _Outside(Exception):
    """Why a value is outside the profile, and where: ``at`` collects the path from the
    inside out as the exception rises (built only for a value that is refused)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.at: list[str] = []


def _check_string(s: str) -> None:
    if not unicodedata.is_normalized("NFC", s):
        raise _Outside("string is not in Unicode NFC form")
    bad = _FORBIDDEN.search(s)
    if bad is None:
        return
    o = ord(bad.group())
    if 0xD800 <= o <= 0xDFFF:
        raise _Outside(f"string holds a lone surrogate U+{o:04X}")
    raise _Outside(f"string holds control character U+{o:04X}")


def _check_scalar(value: Any) -> None:
    if isinstance(value, str):
        if not (value.isascii() and value.isprintable()):  # printable ASCII: NFC, no control
            _check_string(value)
    elif value is None or isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            raise _Outside(f"integer {value} is outside ±(2**53 - 1)")
    elif isinstance(value, float):
        raise _Outside("floats are not allowed; use an integer or a decimal string")
    else:
        raise _Outside(f"{type(value).__name__} is not a JSON profile value")


def _check(value: Any, depth: int) -> None:
    """Raise ``_Outside`` unless ``value``, inside ``depth`` arrays or objects, is in the
    profile."""
    if not isinstance(value, _CONTAINERS):
        _check_scalar(value)
        return
    if depth >= MAX_DEPTH:
        raise _Outside(f"nested deeper than {MAX_DEPTH} levels")
    is_object = isinstance(value, dict)
    items: Any = value.items() if isinstance(value, dict) else enumerate(value)
    for at, item in items:
        if is_object and not (type(at) is str and at and at.isascii() and at.isprintable()):
            if not isinstance(at, str):
                raise _Outside(f"object key {at!r} is not a string")
            if not at or not at.isascii() or not at.isprintable():
                raise _Outside(f"object key {at!r} must be printable ASCII")
        t = type(item)  # the common cases first, without a call
        if t is str:
            if item.isascii() and item.isprintable():  # printable ASCII: NFC, no control
                continue
        elif t is int:
            if -MAX_INT <= item <= MAX_INT:
                continue
        elif item is None or t is bool:
            continue
        try:
            if isinstance(item, _CONTAINERS):
                _check(item, depth + 1)
            else:
                _check_scalar(item)
        except _Outside as e:
            e.at.append(f".{at}" if is_object else f"[{at}]")
            raise


def check(value: Any, path: str = "$") -> None:
    """Raise ProfileError naming the first place where ``value`` leaves the profile.

    Nesting: the value itself is level 1 if it is an array or an object, and each array or
    object inside another is one level deeper; none may be deeper than ``MAX_DEPTH``.
    """
    try:
        _check(value, 0)
    except _Outside as e:
        raise ProfileError(f"{path}{''.join(reversed(e.at))}: {e.reason}") from None


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


_DECODER = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_constant)


def decode(data: bytes) -> Any:
    """Parse canonical bytes; raise ProfileError unless the value is in the profile and its
    canonical encoding is the very same bytes.

    The one reader of signed bytes. A repeated key is refused by the comparison (parsed, the
    last one wins, and the value's encoding then has one member fewer than the bytes); it is
    named in the error by parsing the refused bytes again, this time keeping every key.
    """
    if len(data) > MAX_BYTES:
        raise ProfileError(f"$: {len(data)} bytes exceeds the {MAX_BYTES}-byte cap")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError(f"not UTF-8 at byte {e.start}") from None
    try:
        value, end = _DECODER.raw_decode(text)  # one value, from the first character
    except json.JSONDecodeError as e:
        raise ProfileError(f"not JSON: {e.msg} at character {e.pos}") from None
    except RecursionError:
        raise ProfileError("nested too deeply") from None
    if end != len(text):
        raise ProfileError(f"not JSON: extra data at character {end}")
    check(value)
    if canonical_text(value) != text:
        json.loads(text, object_pairs_hook=_no_duplicates)  # raises, naming a repeated key
        raise ProfileError("bytes are not the RFC 8785 canonical form of their own value")
    return value
