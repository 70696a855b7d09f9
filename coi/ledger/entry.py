"""Ledger entries: statements, who signs them, and the envelope that is hashed into the tree.

Owns the exact bytes of an entry (docs/ledger-format.md, sections 3–5):

* the **statement**, a JSON object in coi's profile encoded with RFC 8785, which binds the log's
  origin, the entry's index, the previous entry's hash, the time, the signers (user, public key,
  printed name as at signing, meaning) and the content (type, subject, data);
* the **signatures**, Ed25519 over the DSSE pre-authentication encoding of the statement, one per
  signer and in the signers' order (the author first, then witnesses or co-signers);
* the **envelope**, a DSSE envelope ``{"payload", "payloadType", "signatures"}`` encoded with RFC
  8785: its RFC 6962 leaf hash is the entry hash, and the next statement's ``prev``.

Stored bytes are read in one way only: ``jcs.decode`` (the profile and the canonical check),
then ``Statement.from_json`` (the statement's own rules). ``check_entry`` verifies one stored row
on its own (it needs nothing but the row and the log's origin), so it can run in several
processes; the order-dependent checks live in ``verify``. ``check_envelope`` is the same check
for an entry held without the denormalised columns (an audit bundle's entry records).
"""

from __future__ import annotations

import base64
import binascii
import functools
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
from coi.ledger.tzdb import ZONES

FORMAT_VERSION = 2  # the version coi writes; version 1 (no ``subject_prev``) stays valid
VERSIONS = (1, 2)
PAYLOAD_TYPE = "application/vnd.coi.statement+json; version=1"
GENESIS_PREV = bytes(32)
SITE_USER = "@site"  # the signer of entries the site signs with its log key (``system.*``)
SITE_NAME = "Site log key"  # the printed name of every ``@site`` signer

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
# Every pattern here is matched against the whole value (``fullmatch``).
USER_RE = re.compile(r"@site|[a-z][a-z0-9._-]{0,63}")
TYPE_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*")
SUBJECT_RE = re.compile(r"[ -~]{1,128}")
"""A subject: 1 to 128 printable ASCII characters (a CoI, a user id, the origin, ``(none)``)."""
_PREV_RE = re.compile(r"[0-9a-f]{64}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_NAME = 128
STATEMENT_KEYS = frozenset(
    {"v", "log", "index", "prev", "time", "tz", "type", "subject", "signers", "data"}
)
STATEMENT_KEYS_V2 = STATEMENT_KEYS | {"subject_prev"}
_LINK_KEYS = frozenset({"index", "hash"})
SIGNER_KEYS = frozenset({"user", "key", "name", "meaning"})


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def unb64(s: str, what: str, *, length: int | None = None) -> bytes:
    try:
        out = binascii.a2b_base64(s.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError, AttributeError):
        raise ProfileError(f"{what} is not standard base64") from None
    if b64(out) != s:
        raise ProfileError(f"{what} is not in canonical base64")
    if length is not None and len(out) != length:
        raise ProfileError(f"{what} has {len(out)} bytes, expected {length}")
    return out


def valid_user(user: str) -> bool:
    """A user id: ``@site``, or a lowercase letter then up to 63 of ``a-z 0-9 . _ -``."""
    return USER_RE.fullmatch(user) is not None


def valid_subject(subject: str) -> bool:
    """A subject: 1 to 128 printable ASCII characters (U+0020 to U+007E)."""
    return SUBJECT_RE.fullmatch(subject) is not None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a printed name, or None: 1 to ``MAX_NAME`` characters, no control
    character (U+0000–U+001F, U+007F–U+009F), not starting or ending with a space."""
    if not name.strip(" "):
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if _CONTROL_RE.search(name):
        return "holds a control character"
    if name != name.strip(" "):
        return "starts or ends with a space"
    return None


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
        if not isinstance(obj, dict) or obj.keys() != SIGNER_KEYS:
            raise ProfileError(f"{where} must have exactly the fields {sorted(SIGNER_KEYS)}")
        user, key, name, meaning = obj["user"], obj["key"], obj["name"], obj["meaning"]
        if not isinstance(user, str) or not valid_user(user):
            raise ProfileError(f"{where}.user {user!r} is not a valid user id")
        if not isinstance(key, str):
            raise ProfileError(f"{where}.key is not a string")
        if not isinstance(name, str):
            raise ProfileError(f"{where}.name is missing")
        problem = name_problem(name)
        if problem is not None:
            raise ProfileError(f"{where}.name {problem}")
        if not isinstance(meaning, str) or meaning not in MEANINGS:
            raise ProfileError(f"{where}.meaning {meaning!r} is not one of {sorted(MEANINGS)}")
        return cls(user=user, key=unb64(key, f"{where}.key", length=32), name=name, meaning=meaning)


class SubjectLink(NamedTuple):
    """A version 2 statement's ``subject_prev``: the previous entry on the same subject."""

    index: int  # type: ignore[assignment]  # (shadows tuple.index: the field's name)
    hash: bytes  # its entry hash (RFC 6962 leaf hash), 32 bytes

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "hash": b64(self.hash)}


def _subject_link(obj: Any, index: int) -> SubjectLink | None:
    if obj is None:
        return None
    if not isinstance(obj, dict) or obj.keys() != _LINK_KEYS:
        raise ProfileError("statement.subject_prev must be null or exactly {index, hash}")
    i = obj["index"]
    if not (type(i) is int and 0 <= i < index):
        raise ProfileError("statement.subject_prev.index is not an index before this entry's")
    h = obj["hash"]
    if not isinstance(h, str):
        raise ProfileError("statement.subject_prev.hash is not a string")
    return SubjectLink(i, unb64(h, "statement.subject_prev.hash", length=32))


@dataclass(frozen=True)
class Statement:
    """What every signer of an entry signs (``version`` 2 adds ``subject_prev``)."""

    log: str
    index: int
    prev: bytes
    time_ms: int
    tz: str
    type: str
    subject: str
    signers: tuple[SignerRef, ...]
    data: Mapping[str, Any] = field(default_factory=dict)
    version: int = 1
    subject_prev: SubjectLink | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "v": self.version,
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
        if self.version >= 2:
            out["subject_prev"] = (None if self.subject_prev is None
                                   else self.subject_prev.to_json())
        return out

    def encode(self) -> bytes:
        return jcs.encode(self.to_json())

    @property
    def author(self) -> SignerRef:
        return self.signers[0]

    @classmethod
    def from_json(cls, obj: Any) -> Statement:
        """The statement ``obj`` (a value ``jcs.decode`` gave) holds, or ProfileError."""
        if not isinstance(obj, dict):
            raise ProfileError("statement is not a JSON object")
        v = obj.get("v")
        if type(v) is not int or v not in VERSIONS:
            raise ProfileError(f"statement version {v!r} is not one of {list(VERSIONS)}")
        keys = STATEMENT_KEYS if v == 1 else STATEMENT_KEYS_V2
        if obj.keys() != keys:
            missing, extra = keys - set(obj), set(obj) - keys
            raise ProfileError(
                f"statement fields wrong (missing {sorted(missing)}, unexpected {sorted(extra)})"
            )
        log, index, prev, time_ms = obj["log"], obj["index"], obj["prev"], obj["time"]
        tz, type_, subject, signers, data = (obj["tz"], obj["type"], obj["subject"],
                                             obj["signers"], obj["data"])
        if not (isinstance(log, str) and isinstance(tz, str) and isinstance(type_, str)
                and isinstance(subject, str) and isinstance(prev, str)):
            k = next(k for k in ("log", "tz", "type", "subject", "prev")
                     if not isinstance(obj[k], str))
            raise ProfileError(f"statement.{k} is not a string")
        if not (type(index) is int and 0 <= index <= jcs.MAX_INT):
            raise ProfileError("statement.index is not a non-negative integer")
        if not (type(time_ms) is int and 0 <= time_ms <= jcs.MAX_INT):
            raise ProfileError("statement.time is not a non-negative integer")
        if TYPE_RE.fullmatch(type_) is None:
            raise ProfileError(f"statement.type {type_!r} is not a dotted lowercase name")
        if SUBJECT_RE.fullmatch(subject) is None:
            raise ProfileError(f"statement.subject {subject!r} is not 1 to 128 printable ASCII "
                               "characters")
        if tz not in ZONES:
            raise ProfileError(f"statement.tz {tz!r} is not a time zone of the IANA database")
        if _PREV_RE.fullmatch(prev) is None:
            raise ProfileError("statement.prev is not 64 lowercase hex digits")
        if not isinstance(signers, list) or not signers:
            raise ProfileError("statement.signers must be a non-empty list")
        refs = tuple([_signer_ref(s, i) for i, s in enumerate(signers)])
        if len(refs) > 1 and len({r.key for r in refs}) != len(refs):
            raise ProfileError("statement.signers name the same key twice")
        if not isinstance(data, dict):
            raise ProfileError("statement.data is not a JSON object")
        link = _subject_link(obj["subject_prev"], index) if v >= 2 else None
        return cls(log=log, index=index, prev=bytes.fromhex(prev), time_ms=time_ms, tz=tz,
                   type=type_, subject=subject, signers=refs, data=data, version=v,
                   subject_prev=link)


def _signer_ref(obj: Any, i: int) -> SignerRef:
    """``SignerRef.from_json``, remembered by value for signers met before: a ledger has few."""
    if isinstance(obj, dict) and obj.keys() == SIGNER_KEYS:
        user, key, name, meaning = obj["user"], obj["key"], obj["name"], obj["meaning"]
        if type(user) is str and type(key) is str and type(name) is str and type(meaning) is str:
            return _known_signer_ref(user, key, name, meaning, i)
    return SignerRef.from_json(obj, f"statement.signers[{i}]")


@functools.lru_cache(maxsize=4096)
def _known_signer_ref(user: str, key: str, name: str, meaning: str, i: int) -> SignerRef:
    return SignerRef.from_json({"user": user, "key": key, "name": name, "meaning": meaning},
                               f"statement.signers[{i}]")


def read_statement(body: bytes) -> Statement:
    """The statement stored as ``body``: canonical profile JSON (``jcs.decode``) holding a valid
    statement (``Statement.from_json``); ProfileError otherwise. The one reader of statements."""
    return Statement.from_json(jcs.decode(body))


def pae(body: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes each signature covers."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d " % (len(t), t, len(body)) + body


def signatures_json(sigs: Sequence[tuple[str, bytes]]) -> list[dict[str, str]]:
    return [{"keyid": kid, "sig": b64(sig)} for kid, sig in sigs]


_ENVELOPE_HEAD = b'{"payload":"'
_ENVELOPE_MID = b'","payloadType":' + jcs.encode(PAYLOAD_TYPE) + b',"signatures":'


def envelope_bytes(statement_bytes: bytes, signatures: bytes) -> bytes:
    """The RFC 8785 DSSE envelope of an entry; ``signatures`` is the stored signatures JSON.

    Equal to ``jcs.encode({"payload": b64(statement), "payloadType": PAYLOAD_TYPE,
    "signatures": <signatures>})`` (the keys are already in canonical order, base64 needs no
    escaping, and ``signatures`` is canonical JSON itself, checked so by the verifier).
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
    """One ledger row exactly as storage holds it (every column, so every column is checked)."""

    index: int  # type: ignore[assignment]  # (shadows tuple.index: the column's name)
    prev_hash: str
    entry_hash: str
    time_ms: int
    type: str
    subject: str
    signer: str
    statement: bytes
    signatures: bytes


class CheckedEntry(NamedTuple):
    """A row whose own content checked out; what the order-dependent checks still need.

    A named tuple, as ``StoredEntry``: one is made for every entry verified."""

    index: int  # type: ignore[assignment]  # (shadows tuple.index)
    entry_hash: bytes
    statement: Statement


@functools.lru_cache(maxsize=4096)
def _signer_key(raw: bytes) -> tuple[str, Ed25519PublicKey]:
    """A signer's key id and loaded public key, remembered by value: a ledger has few."""
    return key_id(raw), Ed25519PublicKey.from_public_bytes(raw)


_SIGNATURE_KEYS = frozenset({"keyid", "sig"})
_BYTES_LIKE = (bytes, bytearray, memoryview)

SignatureCheck = tuple[Ed25519PublicKey, bytes, bytes]
"""``(key, signature, message)``: one Ed25519 verification to make."""


def first_bad_signature(checks: Sequence[SignatureCheck]) -> int | None:
    """The position in ``checks`` of the first signature that does not verify, or None."""
    for n, (key, sig, msg) in enumerate(checks):
        try:
            key.verify(sig, msg)
        except InvalidSignature:
            return n
    return None


def _statement_here(i: int, body: bytes, origin: str) -> Statement:
    """The statement in ``body``, which must be canonical profile JSON for this log and index."""
    try:
        st = read_statement(body)
    except ProfileError as e:
        raise VerificationError(f"statement: {e}", index=i) from None
    if st.log != origin:
        raise VerificationError(f"statement belongs to log {st.log!r}, not {origin!r}", index=i)
    if st.index != i:
        raise VerificationError(
            f"statement says index {st.index} but the row is stored at index {i}", index=i)
    return st


def _signature_checks(i: int, st: Statement, body: bytes, sig_bytes: bytes
                      ) -> list[SignatureCheck]:
    """What the signatures column must verify: one signature per signer, in order, by the key
    the statement names (its key id), each 64 bytes in canonical base64."""
    try:
        sigs: Any = jcs.decode(sig_bytes)
    except ProfileError as e:
        raise VerificationError(f"signatures: {e}", index=i) from None
    if not isinstance(sigs, list) or len(sigs) != len(st.signers):
        found = len(sigs) if isinstance(sigs, list) else "no list"
        raise VerificationError(f"expected {len(st.signers)} signatures, found {found}", index=i)
    msg = pae(body)
    checks = []
    for n, (ref, s) in enumerate(zip(st.signers, sigs, strict=True)):
        if not isinstance(s, dict) or s.keys() != _SIGNATURE_KEYS:
            raise VerificationError(f"signature {n} must have exactly keyid and sig", index=i)
        kid, public_key = _signer_key(ref.key)
        if s["keyid"] != kid:
            raise VerificationError(f"signature {n} is by key {s['keyid']!r}, not {ref.user}'s "
                                    "key", index=i)
        try:
            raw = unb64(s["sig"], "signature", length=64)
        except ProfileError:
            raise VerificationError(f"signature {n} ({ref.user}, {ref.meaning}) does not "
                                    "verify", index=i) from None
        checks.append((public_key, raw, msg))
    return checks


def _signed(i: int, st: Statement, body: bytes, sig_bytes: bytes,
            later: list[SignatureCheck] | None = None) -> bytes:
    """Check the signatures column of ``st`` (verified here, or appended to ``later`` to be
    verified by the caller); return the entry hash of the envelope."""
    checks = _signature_checks(i, st, body, sig_bytes)
    if later is not None:
        later.extend(checks)
    else:
        bad = first_bad_signature(checks)
        if bad is not None:
            ref = st.signers[bad]
            raise VerificationError(f"signature {bad} ({ref.user}, {ref.meaning}) does not "
                                    "verify", index=i)
    return leaf_hash(envelope_bytes(body, sig_bytes))


def check_envelope(index: int, entry_hash: str | bytes, statement: bytes, signatures: bytes,
                   origin: str) -> CheckedEntry:
    """``check_entry`` for an entry held without the denormalised columns (an audit bundle).

    ``statement`` and ``signatures`` are the stored bytes, ``entry_hash`` the hash claimed for
    the entry (raw or lowercase hex). Same checks, in the same order, with the same errors, as
    ``check_entry`` minus the columns: canonical profile JSON, this log, this index, every
    signature, and the claimed hash is the leaf hash of the envelope.
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
    are not canonical profile JSON or not a valid statement, it names another log, its fields
    disagree with the row's columns, a signature is missing, extra, for another key or
    invalid, or the stored entry hash is not the hash of the envelope.

    With ``later``, the row's signatures are appended to it instead of verified here (to be
    verified many at a time: see ``verify._checked``). If those appended verify
    (``first_bad_signature``), this returned or raised what it would without ``later``. If one
    does not, ``check_entry(row, origin)`` raises a signature error.
    """
    i = row.index
    body, sig_bytes = row.statement, row.signatures
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
    return CheckedEntry(index=i, entry_hash=h, statement=st)
