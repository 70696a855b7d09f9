"""Ledger entries: statements, who signs them, and the envelope that is hashed into the tree.

Owns the exact bytes of an entry (docs/ledger-format.md, sections 3–5):

* the **statement**, a JSON object in coi's profile encoded with RFC 8785, which binds the log's
  origin, the entry's index, the previous entry's hash, the time, the signers (user, public key,
  printed name as at signing, meaning) and the content (type, subject, data);
* the **signatures**, Ed25519 over the DSSE pre-authentication encoding of the statement, one per
  signer and in the signers' order (the author first, then witnesses or co-signers);
* the **envelope**, a DSSE envelope ``{"payload", "payloadType", "signatures"}`` encoded with RFC
  8785: its RFC 6962 leaf hash is the entry hash, and the next statement's ``prev``.

``check_entry`` verifies one stored row on its own (it needs nothing but the row and the log's
origin), so it can run in several processes; the order-dependent checks live in ``verify``.
``check_envelope`` is the same check for an entry held without the denormalised columns (an
audit bundle's entry records).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coi.ledger import jcs
from coi.ledger.errors import ProfileError, VerificationError
from coi.ledger.keys import key_id, public_bytes
from coi.ledger.merkle import leaf_hash

FORMAT_VERSION = 1
PAYLOAD_TYPE = "application/vnd.coi.statement+json; version=1"
GENESIS_PREV = bytes(32)
SITE_USER = "@site"
"""The signer name of entries the site itself signs with its log key (``system.*`` types)."""

MEANINGS = frozenset(
    {
        "authored",  # performed and recorded the step
        "witnessed",  # a second person saw the step done
        "verified",  # a second person checked a result or an identity match
        "reviewed",  # QA review
        "approved",  # an administrator approved (enrolment, revocation, role change)
        "released",  # QA released the product
        "rejected",  # QA rejected the product
        "possession",  # proof that the holder of a new key signed its enrolment
        "recorded",  # the site recorded an event on its own (refusals, lockouts)
    }
)
_USER_RE = re.compile(r"^(@site|[a-z][a-z0-9._-]{0,63})$")
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
STATEMENT_KEYS = frozenset(
    {"v", "log", "index", "prev", "time", "tz", "type", "subject", "signers", "data"}
)
SIGNER_KEYS = frozenset({"user", "key", "name", "meaning"})


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def unb64(s: str, what: str, *, length: int | None = None) -> bytes:
    try:
        out = base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ProfileError(f"{what} is not standard base64") from None
    if b64(out) != s:
        raise ProfileError(f"{what} is not in canonical base64")
    if length is not None and len(out) != length:
        raise ProfileError(f"{what} has {len(out)} bytes, expected {length}")
    return out


def valid_user(user: str) -> bool:
    return bool(_USER_RE.match(user))


@dataclass(frozen=True)
class SignerRef:
    """One signer of a statement, as written into it."""

    user: str
    key: bytes  # raw Ed25519 public key, 32 bytes
    name: str  # printed name as at signing
    meaning: str

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "key": b64(self.key), "name": self.name, "meaning": self.meaning}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> SignerRef:
        if not isinstance(obj, dict) or set(obj) != SIGNER_KEYS:
            raise ProfileError(f"{where} must have exactly the fields {sorted(SIGNER_KEYS)}")
        user, key, name, meaning = obj["user"], obj["key"], obj["name"], obj["meaning"]
        if not isinstance(user, str) or not valid_user(user):
            raise ProfileError(f"{where}.user {user!r} is not a valid user id")
        if not isinstance(key, str):
            raise ProfileError(f"{where}.key is not a string")
        if not isinstance(name, str) or not name.strip():
            raise ProfileError(f"{where}.name is missing")
        if meaning not in MEANINGS:
            raise ProfileError(f"{where}.meaning {meaning!r} is not one of {sorted(MEANINGS)}")
        return cls(user=user, key=unb64(key, f"{where}.key", length=32), name=name, meaning=meaning)


@dataclass(frozen=True)
class Statement:
    """What every signer of an entry signs."""

    log: str
    index: int
    prev: bytes
    time_ms: int
    tz: str
    type: str
    subject: str
    signers: tuple[SignerRef, ...]
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "log": self.log,
            "index": self.index,
            "prev": self.prev.hex(),
            "time": self.time_ms,
            "tz": self.tz,
            "type": self.type,
            "subject": self.subject,
            "signers": [s.to_json() for s in self.signers],
            "data": dict(self.data),
        }

    def encode(self) -> bytes:
        return jcs.encode(self.to_json())

    @property
    def author(self) -> SignerRef:
        return self.signers[0]

    @classmethod
    def from_json(cls, obj: Any) -> Statement:
        if not isinstance(obj, dict):
            raise ProfileError("statement is not a JSON object")
        if obj.keys() != STATEMENT_KEYS:
            missing, extra = STATEMENT_KEYS - set(obj), set(obj) - STATEMENT_KEYS
            raise ProfileError(
                f"statement fields wrong (missing {sorted(missing)}, unexpected {sorted(extra)})"
            )
        if obj["v"] != FORMAT_VERSION:
            raise ProfileError(f"statement version {obj['v']!r} is not {FORMAT_VERSION}")
        for k in ("log", "tz", "type", "subject", "prev"):
            if not isinstance(obj[k], str):
                raise ProfileError(f"statement.{k} is not a string")
        for k in ("index", "time"):
            if not isinstance(obj[k], int) or isinstance(obj[k], bool) or obj[k] < 0:
                raise ProfileError(f"statement.{k} is not a non-negative integer")
        if not _TYPE_RE.match(obj["type"]):
            raise ProfileError(f"statement.type {obj['type']!r} is not a dotted lowercase name")
        if not _PREV_RE.fullmatch(obj["prev"]):
            raise ProfileError("statement.prev is not 64 lowercase hex digits")
        signers = obj["signers"]
        if not isinstance(signers, list) or not signers:
            raise ProfileError("statement.signers must be a non-empty list")
        refs = tuple(_signer_ref(s, i) for i, s in enumerate(signers))
        if len({r.key for r in refs}) != len(refs):
            raise ProfileError("statement.signers name the same key twice")
        if not isinstance(obj["data"], dict):
            raise ProfileError("statement.data is not a JSON object")
        return cls(
            log=obj["log"], index=obj["index"], prev=bytes.fromhex(obj["prev"]),
            time_ms=obj["time"], tz=obj["tz"], type=obj["type"], subject=obj["subject"],
            signers=refs, data=obj["data"],
        )


_PREV_RE = re.compile(r"[0-9a-f]{64}")


def _signer_ref(obj: Any, i: int) -> SignerRef:
    """``SignerRef.from_json``, remembered for signers met before: a ledger has few."""
    if type(obj) is dict and len(obj) == 4:
        k = (obj.get("user"), obj.get("key"), obj.get("name"), obj.get("meaning"))
        if all(type(x) is str for x in k):
            return _known_signer_ref(*k, i)
    return SignerRef.from_json(obj, f"statement.signers[{i}]")


@functools.lru_cache(maxsize=4096)
def _known_signer_ref(user: str, key: str, name: str, meaning: str, i: int) -> SignerRef:
    return SignerRef.from_json({"user": user, "key": key, "name": name, "meaning": meaning},
                               f"statement.signers[{i}]")


def pae(body: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes each signature covers."""
    if payload_type == PAYLOAD_TYPE:
        return _PAE_HEAD + b"%d %s" % (len(body), body)
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


_PAE_HEAD = b"DSSEv1 %d %s " % (len(PAYLOAD_TYPE.encode("utf-8")), PAYLOAD_TYPE.encode("utf-8"))


def signatures_json(sigs: Sequence[tuple[str, bytes]]) -> list[dict[str, str]]:
    return [{"keyid": kid, "sig": b64(sig)} for kid, sig in sigs]


_ENVELOPE_HEAD = b'{"payload":"'
_ENVELOPE_MID = b'","payloadType":' + jcs.encode(PAYLOAD_TYPE) + b',"signatures":'


def envelope_bytes(statement_bytes: bytes, signatures: bytes) -> bytes:
    """The RFC 8785 DSSE envelope of an entry; ``signatures`` is the stored signatures JSON.

    Equal to ``jcs.encode({"payload": b64(statement), "payloadType": PAYLOAD_TYPE,
    "signatures": <signatures>})`` (the keys are already in canonical order, base64 needs no
    escaping, and ``signatures`` is canonical JSON itself); assembled directly because it runs
    for every entry written and verified.
    """
    return _ENVELOPE_HEAD + base64.b64encode(statement_bytes) + _ENVELOPE_MID + signatures + b"}"


@dataclass(frozen=True)
class SignedEntry:
    """An entry ready to store: its statement, signatures and hashes."""

    statement: Statement
    statement_bytes: bytes
    signatures_bytes: bytes
    entry_hash: bytes

    @property
    def index(self) -> int:
        return self.statement.index


def sign(statement: Statement, keys: Sequence[Ed25519PrivateKey]) -> SignedEntry:
    """Sign ``statement`` with one private key per signer, in the signers' order."""
    if len(keys) != len(statement.signers):
        raise ValueError(f"{len(statement.signers)} signers but {len(keys)} keys")
    body = statement.encode()
    msg = pae(body)
    sigs = []
    for ref, k in zip(statement.signers, keys, strict=True):
        if public_bytes(k) != ref.key:
            raise ValueError(f"the key given for {ref.user} is not the key named in the statement")
        sigs.append((key_id(ref.key), k.sign(msg)))
    sig_bytes = jcs.encode(signatures_json(sigs))
    return SignedEntry(
        statement=statement,
        statement_bytes=body,
        signatures_bytes=sig_bytes,
        entry_hash=leaf_hash(envelope_bytes(body, sig_bytes)),
    )


class StoredEntry(NamedTuple):
    """One ledger row exactly as storage holds it (every column, so every column is checked).

    A named tuple, not a dataclass: the verifier makes one per row read, and a tuple of the
    row as fetched is made ten times faster (``StoredEntry._make(row)``)."""

    index: int  # type: ignore[assignment]  # (shadows tuple.index: the column's name)
    prev_hash: str
    entry_hash: str
    time_ms: int
    type: str
    subject: str
    signer: str
    statement: bytes
    signatures: bytes


@dataclass(frozen=True)
class CheckedEntry:
    """A row whose own content checked out; what the order-dependent checks still need."""

    index: int
    entry_hash: bytes
    statement: Statement


def _refuse(_text: str) -> Any:
    raise ValueError("not in the profile")


def _profile_int(text: str) -> int:
    v = int(text)
    if not -jcs.MAX_INT <= v <= jcs.MAX_INT:
        raise ValueError("not in the profile")
    return v


_FAST_DECODER = json.JSONDecoder(parse_float=_refuse, parse_constant=_refuse,
                                 parse_int=_profile_int)


def _str_in_profile(s: str) -> bool:
    if s.isascii() and s.isprintable():  # printable ASCII: NFC, no controls, no surrogates
        return True
    try:
        jcs.check(s)
    except ProfileError:
        return False
    return True


def _in_profile(v: Any, depth: int) -> bool:
    """True only if ``jcs.check`` would accept ``v`` (False may also mean "ask jcs")."""
    if depth > jcs.MAX_DEPTH:
        return False
    t = type(v)
    if t is dict:
        items: Any = v.values()
        for k in v:
            if not (type(k) is str and k and k.isascii() and k.isprintable()):
                return False
    elif t is list:
        items = v
    else:
        return _scalar_in_profile(v, t)
    if v and depth >= jcs.MAX_DEPTH:  # its items would be deeper than the profile allows
        return False
    for x in items:
        tx = type(x)
        if tx is str:
            if not (x.isascii() and x.isprintable()) and not _str_in_profile(x):
                return False
        elif tx is int:
            if not -jcs.MAX_INT <= x <= jcs.MAX_INT:
                return False
        elif tx is dict or tx is list:
            if not _in_profile(x, depth + 1):
                return False
        elif not (x is None or tx is bool):
            return False
    return True


def _scalar_in_profile(v: Any, t: type) -> bool:
    if t is str:
        return _str_in_profile(v)
    if t is int:
        return bool(-jcs.MAX_INT <= v <= jcs.MAX_INT)
    return v is None or t is bool


def _text_in_profile(text: str, depth: int = 0) -> bool:
    """True only if the value written as ``text`` is inside the profile, judged from the text
    alone, for a value found ``depth`` levels down (0: the whole).

    For text that ``_FAST_DECODER`` parses (so without floats, constants or integers beyond
    the profile's) and that is its value's sorted compact encoding (the callers check both):
    printable ASCII without a backslash means every key and string is printable ASCII as
    written (no escapes; JSON has no raw controls), no ``"":`` means no empty key, and at most
    ``MAX_DEPTH - depth`` brackets means no deeper nesting. False may just mean "look closer".
    """
    return (text.isascii() and "\\" not in text and "\x7f" not in text and '"":' not in text
            and text.count("{") + text.count("[") <= jcs.MAX_DEPTH - depth)


def _decode(data: bytes) -> Any:
    """``jcs.decode(data)``, with a fast path for the common case, same result and errors.

    The fast path accepts only bytes that ``jcs.decode`` accepts: within the size cap, JSON
    without floats or constants, a value inside the profile (where, keys being ASCII, the
    standard library's sorted compact encoding is RFC 8785's) whose re-encoding is the very
    same bytes (so no duplicate keys, no whitespace, no other escaping). Anything else, valid
    or not, goes through ``jcs.decode`` itself, which gives the answer and the exact error.
    """
    if len(data) <= jcs.MAX_BYTES:
        try:
            text = data.decode("utf-8")
            value = _FAST_DECODER.decode(text)
            if ((_text_in_profile(text) or _in_profile(value, 0))
                    and jcs.canonical_text(value) == text):
                return value
        except (ValueError, RecursionError):
            pass
    return jcs.decode(data)


decode_canonical = _decode
"""``jcs.decode`` with the fast path: what the append path uses to read back what it wrote."""

@functools.lru_cache(maxsize=4096)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    """``Ed25519PublicKey.from_public_bytes``, remembered: a ledger has few signers."""
    return Ed25519PublicKey.from_public_bytes(raw)


_BYTES_LIKE = (bytes, bytearray, memoryview)
_SIGNATURE_KEYS = frozenset({"keyid", "sig"})


@functools.lru_cache(maxsize=4096)
def _key_id(raw: bytes) -> str:
    """``keys.key_id``, remembered."""
    return key_id(raw)


@functools.lru_cache(maxsize=4096)
def _key_id_bytes(raw: bytes) -> bytes:
    """``_key_id`` as ASCII bytes, remembered."""
    return _key_id(raw).encode("ascii")


# A stored signatures column as written: a list of {"keyid": 16 hex digits, "sig": base64}, in
# canonical JSON (keys in order, no spaces, strings that need no escaping), each signature the
# canonical base64 of 64 bytes (its last digit before "==" carries no unused bits).
_SIGNATURE = rb'\{"keyid":"([0-9a-f]{16})","sig":"([A-Za-z0-9+/]{85}[AQgw]==)"\}'
_SIGNATURE_RE = re.compile(_SIGNATURE)
_SIGNATURES_RE = re.compile(rb"\[" + _SIGNATURE + rb"(?:," + _SIGNATURE + rb")*\]")
_ONE_SIGNATURE_RE = re.compile(rb"\[" + _SIGNATURE + rb"\]")


# A statement as written, in canonical profile JSON: the members in canonical (sorted) order,
# no spaces, "v" 1, the short strings printable ASCII that needs no escaping, the integers in
# their one decimal spelling, "data" an object and "signers" a list of objects (each read on
# its own). Matched against the text, once decoded: "data" runs to the first '},"index":', the
# signers to the first '}],"subject":"' (the first place where a valid value can end: see
# ``_plain_statement``), the rest is matched by these patterns.
_ASCII = r'"([ !#-\[\]-~]*)"'
_NUMBER = r"(0|[1-9][0-9]{0,15})"
_DATA_END, _SIGNERS_END = '},"index":', '}],"subject":'
_MIDDLE_RE = re.compile(_NUMBER + r',"log":' + _ASCII + r',"prev":"([0-9a-f]{64})","signers":')
_END_RE = re.compile(_ASCII + r',"time":' + _NUMBER + r',"type":"([a-z][a-z0-9_.]*)","tz":'
                     + _ASCII + r',"v":1\}')
_SCAN: Any = _FAST_DECODER.scan_once  # type: ignore[attr-defined]  # (decode's own scanner)


@functools.lru_cache(maxsize=4096)
def _signer_list(text: str) -> tuple[SignerRef, ...] | None:
    """The signers a statement's ``"signers"`` text names, as ``Statement.from_json`` reads
    them, remembered (a ledger has few); None if they are not canonical or not valid."""
    try:
        value = _decode(text.encode("utf-8"))
        if type(value) is not list or not value:
            return None
        refs = tuple(_signer_ref(s, n) for n, s in enumerate(value))
    except ProfileError:
        return None
    return refs if len({r.key for r in refs}) == len(refs) else None


def _plain_statement(body: bytes) -> Statement | None:
    """``Statement.from_json(jcs.decode(body))`` when ``body`` is a statement in its usual form
    (see ``_MIDDLE_RE``) and valid; None for anything else, valid or not.

    The text is split into the members' values, each in its canonical spelling; the ``data``
    and ``signers`` values are decoded on their own and must re-encode to the same text. JSON
    has one parse, so a split whose every part is valid is the parse (and a value that is
    valid on its own ends at its first possible end: "data" at the first '},"index":' whose
    text before it is a valid object; if an earlier one is inside the value, the text before
    it is not valid and this says None): the whole is the canonical encoding of the statement
    built here, which is then checked as ``from_json`` checks it. Whatever falls outside
    (escapes, non-ASCII text in the short strings or the data, a bad value) returns None, and
    the caller takes the exact path, which gives the exact error.
    """
    if len(body) > jcs.MAX_BYTES:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.startswith('{"data":{'):
        return None
    d_end = text.find(_DATA_END, 9)
    if d_end < 0:
        return None
    data_t = text[8:d_end + 1]
    m = _MIDDLE_RE.match(text, d_end + len(_DATA_END))
    if m is None:
        return None
    s_start = m.end()
    s_end = text.find(_SIGNERS_END, s_start)
    if s_end < 0 or not text.startswith("[{", s_start):
        return None
    signers_t = text[s_start:s_end + 2]
    m2 = _END_RE.fullmatch(text, s_end + len(_SIGNERS_END))
    if m2 is None:
        return None
    index_t, log, prev = m.groups()
    subject, time_t, type_, tz = m2.groups()
    index, time_ms = int(index_t), int(time_t)
    if index > jcs.MAX_INT or time_ms > jcs.MAX_INT or not _text_in_profile(data_t, 1):
        return None
    try:
        data, end = _SCAN(data_t, 0)
    except (ValueError, StopIteration):
        return None
    if end != len(data_t) or jcs.canonical_text(data) != data_t:  # (an object: it starts so)
        return None
    refs = _signer_list(signers_t)
    if refs is None or not _known_type(type_):
        return None
    st = _new(Statement)  # Statement(...) with these fields, without its slow
    st.__dict__.update(  # frozen __init__ (this runs for every entry verified)
        log=log, index=index, prev=bytes.fromhex(prev), time_ms=time_ms, tz=tz, type=type_,
        subject=subject, signers=refs, data=data)
    return st


_new = object.__new__  # an instance without running __init__


@functools.lru_cache(maxsize=4096)
def _known_type(type_: str) -> bool:
    """``_TYPE_RE`` matches ``type_`` (remembered: a ledger has few types)."""
    return bool(_TYPE_RE.match(type_))


def _statement_here(i: int, body: bytes, origin: str) -> Statement:
    """The statement in ``body``, which must be canonical profile JSON for this log and index."""
    st = _plain_statement(body)
    if st is None:
        try:
            st = Statement.from_json(_decode(body))
        except ProfileError as e:
            raise VerificationError(f"statement: {e}", index=i) from None
    if st.log != origin:
        raise VerificationError(f"statement belongs to log {st.log!r}, not {origin!r}", index=i)
    if st.index != i:
        raise VerificationError(
            f"statement says index {st.index} but the row is stored at index {i}", index=i)
    return st


SignatureCheck = tuple[Ed25519PublicKey, bytes, bytes]
"""``(key, signature, message)``: one signature check left for later (see ``check_entry``)."""


def first_bad_signature(later: Sequence[SignatureCheck]) -> int | None:
    """The position in ``later`` of the first signature that does not verify, or None."""
    for n, (key, sig, msg) in enumerate(later):
        try:
            key.verify(sig, msg)
        except InvalidSignature:
            return n
    return None


def _signed_as_written(i: int, st: Statement, body: bytes, sig_bytes: bytes,
                       later: list[SignatureCheck] | None) -> bytes | None:
    """``_signed`` for a signatures column in its usual form (``_SIGNATURES_RE``): canonical
    profile JSON as it stands, each signature the canonical base64 of 64 bytes, so the checks
    are those of ``_signed`` on what ``_decode`` would give. None if it is not in that form.
    With ``later``, the signatures are appended to it instead of verified here."""
    if len(st.signers) == 1:
        m = _ONE_SIGNATURE_RE.fullmatch(sig_bytes)
        found = [m.groups()] if m is not None else None
    else:
        found = None
    if found is None:
        if len(sig_bytes) > jcs.MAX_BYTES or not _SIGNATURES_RE.fullmatch(sig_bytes):
            return None
        found = _SIGNATURE_RE.findall(sig_bytes)
        if len(found) != len(st.signers):
            raise VerificationError(
                f"expected {len(st.signers)} signatures, found {len(found)}", index=i)
    msg = pae(body)
    for n, (ref, (kid, sig64)) in enumerate(zip(st.signers, found, strict=True)):
        if kid != _key_id_bytes(ref.key):
            raise VerificationError(f"signature {n} is by key {kid.decode('ascii')!r}, not "
                                    f"{ref.user}'s key", index=i)
        key, sig = _public_key(ref.key), binascii.a2b_base64(sig64)
        if later is not None:
            later.append((key, sig, msg))
            continue
        try:
            key.verify(sig, msg)
        except InvalidSignature:
            raise VerificationError(f"signature {n} ({ref.user}, {ref.meaning}) does not "
                                    "verify", index=i) from None
    return leaf_hash(envelope_bytes(body, sig_bytes))


def _signed(i: int, st: Statement, body: bytes, sig_bytes: bytes,
            later: list[SignatureCheck] | None = None) -> bytes:
    """Check one valid signature per signer of ``st``; return the entry hash of the envelope.
    With ``later``, the signatures of a column in its usual form are appended to it instead
    of verified here (any other column is checked here, whole)."""
    h = _signed_as_written(i, st, body, sig_bytes, later)
    if h is not None:
        return h

    def bad(reason: str) -> VerificationError:
        return VerificationError(reason, index=i)

    # One valid signature per signer, in order, by the key the statement names.
    try:
        sigs: Any = _decode(sig_bytes)
    except ProfileError as e:
        raise bad(f"signatures: {e}") from None
    if not isinstance(sigs, list) or len(sigs) != len(st.signers):
        raise bad(f"expected {len(st.signers)} signatures, found "
                  f"{len(sigs) if isinstance(sigs, list) else 'no list'}")
    msg = pae(body)
    for n, (ref, s) in enumerate(zip(st.signers, sigs, strict=True)):
        if not isinstance(s, dict) or s.keys() != _SIGNATURE_KEYS:
            raise bad(f"signature {n} must have exactly keyid and sig")
        if s["keyid"] != _key_id(ref.key):
            raise bad(f"signature {n} is by key {s['keyid']!r}, not {ref.user}'s key")
        try:
            raw = unb64(s["sig"], f"signature {n}", length=64)
            _public_key(ref.key).verify(raw, msg)
        except (ProfileError, InvalidSignature, TypeError, AttributeError):
            raise bad(f"signature {n} ({ref.user}, {ref.meaning}) does not verify") from None
    # The entry hash is the leaf hash of the envelope.
    return leaf_hash(envelope_bytes(body, sig_bytes))


def check_envelope(index: int, entry_hash: str | bytes, statement: bytes, signatures: bytes,
                   origin: str) -> CheckedEntry:
    """``check_entry`` for an entry held without the denormalised columns (an audit bundle).

    ``statement`` and ``signatures`` are the stored bytes, ``entry_hash`` the hash claimed for
    the entry (raw or lowercase hex). Same checks, in the same order, with the same errors, as
    ``check_entry`` minus the columns: canonical profile JSON, this log, this index, every
    signature, and the claimed hash is the leaf hash of the envelope. The statement is decoded
    once.
    """
    st = _statement_here(index, statement, origin)
    h = _signed(index, st, statement, signatures)
    if (entry_hash != h.hex()) if isinstance(entry_hash, str) else (entry_hash != h):
        raise VerificationError("the entry hash is not the hash of the entry's envelope",
                                index=index)
    return CheckedEntry(index=index, entry_hash=h, statement=st)


def check_entry(row: StoredEntry, origin: str,
                later: list[SignatureCheck] | None = None) -> CheckedEntry:
    """Check everything about one row that does not depend on other rows.

    Raises VerificationError(index=row.index) naming the first thing wrong: the statement's bytes
    are not canonical profile JSON, it names another log, its fields disagree with the row's
    columns, a signature is missing, extra, for another key or invalid, or the stored entry hash
    is not the hash of the envelope. Shares its checks with ``check_envelope``; the columns are
    checked between the statement's own checks and the signatures, as they always were.

    With ``later``, the row's signatures may be appended to it instead of verified here (to
    be verified many at a time: see ``verify._checked``). If those appended
    verify (``first_bad_signature``), this returns or raises what it would without ``later``:
    they would have been verified, in turn, at the point where they were appended. If one does
    not, ``check_entry(row, origin)`` raises a signature error.
    """
    i = row.index
    body, sig_bytes = row.statement, row.signatures
    if type(body) is not bytes or type(sig_bytes) is not bytes:
        if not isinstance(body, _BYTES_LIKE):
            raise VerificationError("statement column is empty or not bytes", index=i)
        if not isinstance(sig_bytes, _BYTES_LIKE):
            raise VerificationError("signatures column is empty or not bytes", index=i)
        body, sig_bytes = bytes(body), bytes(sig_bytes)
    # 1. The statement belongs here: this log, this index, these columns.
    st = _statement_here(i, body, origin)
    if row.prev_hash != st.prev.hex():
        raise VerificationError("prev_hash column differs from the statement's prev", index=i)
    if row.time_ms != st.time_ms:
        raise VerificationError("time column differs from the statement's time", index=i)
    if row.type != st.type:
        raise VerificationError("type column differs from the statement's type", index=i)
    if row.subject != st.subject:
        raise VerificationError("subject column differs from the statement's subject", index=i)
    if row.signer != st.signers[0].user:
        raise VerificationError("signer column differs from the statement's author", index=i)
    # 2. and 3. Signatures, then the entry hash.
    h = _signed(i, st, body, sig_bytes, later)
    if row.entry_hash != h.hex():
        raise VerificationError("entry_hash column is not the hash of the entry's envelope",
                                index=i)
    c = _new(CheckedEntry)  # CheckedEntry(...) without its slow frozen __init__
    c.__dict__.update(index=i, entry_hash=h, statement=st)
    return c
