"""The key registry, replayed from the ledger itself.

Owns: who may sign, with which key, under which printed name and roles, judged by position in
the log and never by wall-clock time (docs/ledger-format.md, section 6). The registry is rebuilt
by applying entries in index order; ``admit`` checks one statement against the registry as it
stands at that index and then applies it. The same code runs at append time (so a revoked key
is refused before anything is written) and at verification time (so a forged history is caught).

Key events: ``ledger.genesis`` (index 0: the log's origin, its checkpoint key, the first
administrators, the site and the process in force), ``key.enrol`` (an administrator enrols a
user's key; the new key co-signs as proof of possession), ``key.revoke`` (the key is invalid for
every later index), ``key.rotate`` (a new key replaces the old one at that index: routine
rotation signed with the old key, or a password reset signed by an administrator) and
``user.update`` (printed name or roles change from that index on); ``user.unlock`` (an
administrator lifts a lockout). The other types under the reserved prefixes (``ledger.``,
``key.``, ``user.``) do not exist and are refused; ``system.*`` entries are the site's own
records, signed by ``@site`` alone.

Lockouts are replayed too: ``system.lockout`` (the site locks ``data.user`` after repeated failed
passwords) makes every later signature of that user invalid until ``user.unlock`` or an
administrator's password reset (an admin-signed ``key.rotate``). The database's ``account``
table is only a cache of this: a lock lifted there and nowhere else is caught here, at append
time and by ``coi verify``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coi.ledger.entry import (
    SITE_NAME,
    SITE_USER,
    SignerRef,
    Statement,
    name_problem,
    unb64,
    valid_user,
)
from coi.ledger.errors import ProfileError, VerificationError
from coi.ledger.note_keys import parse_verifier_key
from coi.ledger.tzdb import ZONES

ADMIN = "admin"
KEY_EVENT_TYPES = frozenset(
    {"ledger.genesis", "key.enrol", "key.revoke", "key.rotate", "user.update"}
)
RESERVED_TYPES = KEY_EVENT_TYPES | {"user.unlock"}
LOCK_EVENT_TYPES = frozenset({"system.lockout", "user.unlock"})
"""Entries that lock or unlock an account (an admin's ``key.rotate`` unlocks too)."""
"""Every type under ``ledger.``, ``key.`` and ``user.`` that exists (``system.*`` is open)."""
RESERVED_PREFIXES = ("ledger.", "key.", "user.", "system.")
_CLOSED_PREFIXES = ("ledger.", "key.", "user.")
"""The reserved prefixes under which only ``RESERVED_TYPES`` exist."""
ROLE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
ORIGIN_RE = re.compile(r"[!-*,-~]+")
"""A log's origin: printable ASCII without space or ``+`` (matched whole)."""


@dataclass
class KeyRecord:
    user: str
    public_key: bytes
    enrolled_at: int
    revoked_at: int | None = None
    revoked_reason: str | None = None

    def valid_at(self, index: int) -> bool:
        return self.enrolled_at < index and (self.revoked_at is None or index <= self.revoked_at)


@dataclass
class UserRecord:
    user: str
    name: str
    roles: frozenset[str]
    enrolled_at: int
    key: bytes | None  # the active key, None once revoked
    keys: list[bytes] = field(default_factory=list)
    locked_at: int | None = None  # the system.lockout in force, until an unlock or a reset


@dataclass(frozen=True)
class Genesis:
    origin: str
    log_key: str  # C2SP note verifier key string
    log_public_key: bytes
    site: Mapping[str, Any]
    process: Mapping[str, Any] | None


def _str(data: Mapping[str, Any], k: str, where: str) -> str:
    v = data.get(k)
    if not isinstance(v, str) or not v.strip():
        raise ProfileError(f"{where}: data.{k} must be a non-empty string")
    return v


def _name(data: Mapping[str, Any], where: str) -> str:
    name = _str(data, "name", where)
    problem = name_problem(name)
    if problem is not None:
        raise ProfileError(f"{where}: data.name {problem}")
    return name


def _roles(data: Mapping[str, Any], where: str) -> frozenset[str]:
    v = data.get("roles")
    if not isinstance(v, list) or not v or not all(
            isinstance(r, str) and ROLE_RE.fullmatch(r) for r in v):
        raise ProfileError(f"{where}: data.roles must be a non-empty list of role names")
    if sorted(set(v)) != v:
        raise ProfileError(f"{where}: data.roles must be sorted and without repeats")
    return frozenset(v)


class KeyRegistry:
    """Keys and users as of the last admitted index."""

    def __init__(self) -> None:
        self.keys: dict[bytes, KeyRecord] = {}
        self.users: dict[str, UserRecord] = {}
        self.genesis: Genesis | None = None
        self.size = 0

    # -- queries ------------------------------------------------------------------------------
    def user(self, user: str) -> UserRecord | None:
        return self.users.get(user)

    def is_admin(self, user: str) -> bool:
        rec = self.users.get(user)
        return rec is not None and rec.key is not None and ADMIN in rec.roles

    def locked_at(self, user: str) -> int | None:
        """The index of the lockout in force for ``user`` (None: not locked)."""
        rec = self.users.get(user)
        return rec.locked_at if rec is not None else None

    def roles_of(self, user: str) -> frozenset[str]:
        rec = self.users.get(user)
        return rec.roles if rec else frozenset()

    # -- checks -------------------------------------------------------------------------------
    def _fail(self, st: Statement, reason: str) -> VerificationError:
        return VerificationError(reason, index=st.index)

    def _check_signer(self, st: Statement, ref: SignerRef) -> None:
        rec = self.keys.get(ref.key)
        if rec is None:
            raise self._fail(st, f"{ref.user} signed with a key that was never enrolled")
        if rec.user != ref.user:
            raise self._fail(st, f"{ref.user} signed with a key enrolled to {rec.user}")
        if not rec.valid_at(st.index):
            if rec.revoked_at is not None and st.index > rec.revoked_at:
                raise self._fail(
                    st, f"{ref.user}'s key was revoked at entry {rec.revoked_at} "
                        f"({rec.revoked_reason or 'no reason given'}) and cannot sign later")
            raise self._fail(st, f"{ref.user}'s key is not valid at this position")
        user = self.users[ref.user]
        if ref.name != user.name:
            raise self._fail(
                st, f"signer {ref.user} is named {ref.name!r} but enrolled as {user.name!r}")
        if user.locked_at is not None:
            raise self._fail(
                st, f"{ref.user} signed while their account was locked (lockout at entry "
                    f"{user.locked_at}, no unlock entry since): an administrator must unlock "
                    "the account (user.unlock) before they sign again")

    def _need_admin(self, st: Statement, ref: SignerRef) -> None:
        if ref.meaning != "approved":
            raise self._fail(st, f"{st.type} must be approved by an administrator")
        self._check_signer(st, ref)
        if ADMIN not in self.users[ref.user].roles:
            raise self._fail(st, f"{ref.user} is not an administrator and cannot sign {st.type}")

    def _need_possession(self, st: Statement, ref: SignerRef, user: str, key: bytes) -> None:
        if ref.meaning != "possession" or ref.user != user or ref.key != key:
            raise self._fail(
                st, f"{st.type} must be co-signed by the new key of {user} (proof of possession)")
        if key in self.keys:
            raise self._fail(st, "that public key was enrolled before; keys are never reused")

    # -- replay -------------------------------------------------------------------------------
    def admit(self, st: Statement) -> None:
        """Check ``st`` against the registry at its index, then apply it."""
        if st.index < self.size:
            raise self._fail(st, f"the registry is already at index {self.size}")
        try:
            self._admit(st)
        except ProfileError as e:
            raise self._fail(st, str(e)) from None
        self.size = st.index + 1

    def _admit(self, st: Statement) -> None:
        # Keep ``plain_signers`` in step with this method: it names the entries for which
        # everything below comes down to ``_check_signer`` on each signer.
        author = st.author
        users = [r.user for r in st.signers]
        if len(set(users)) != len(users) and not (
                st.type == "key.rotate" and len(users) == 2
                and st.signers[1].meaning == "possession"):
            raise self._fail(st, "the same person signs twice: a witness must be someone else")
        if st.index == 0:
            if st.type != "ledger.genesis":
                raise self._fail(st, "entry 0 must be the genesis entry (ledger.genesis)")
            self._genesis(st)
            return
        if st.type == "ledger.genesis":
            raise self._fail(st, "a second genesis entry")
        if st.type.startswith(_CLOSED_PREFIXES) and st.type not in RESERVED_TYPES:
            raise self._fail(st, f"{st.type} is not a type of coi's (the prefixes "
                                 f"{', '.join(RESERVED_PREFIXES)} are reserved)")
        if author.user == SITE_USER or st.type.startswith("system."):
            self._system(st)
            return
        if any(r.user == SITE_USER for r in st.signers):
            raise self._fail(st, "@site may only sign system.* entries and the genesis")
        if st.type in RESERVED_TYPES:
            self._check_signer(st, author)
            getattr(self, "_" + st.type.replace(".", "_"))(st)
            return
        for ref in st.signers:
            self._check_signer(st, ref)

    def _system(self, st: Statement) -> None:
        """A ``system.*`` entry: the site alone signs it, with the log key, as ``recorded``."""
        assert self.genesis is not None
        author = st.author
        if not (author.user == SITE_USER and st.type.startswith("system.")):
            raise self._fail(st, "system.* entries are signed by the site (@site), "
                                 "and only they are")
        if author.key != self.genesis.log_public_key:
            raise self._fail(st, "@site signed with a key that is not the log key")
        if len(st.signers) != 1:
            raise self._fail(st, "a system.* entry has one signer, the site (@site)")
        if author.meaning != "recorded" or author.name != SITE_NAME:
            raise self._fail(st, f"the site signs a system.* entry as {SITE_NAME!r}, "
                                 "meaning 'recorded'")
        if st.type == "system.lockout":
            locked = self.users.get(str(st.data.get("user")))
            if locked is not None:
                locked.locked_at = st.index

    def _genesis(self, st: Statement) -> None:
        d = st.data
        where = "genesis"
        origin = _str(d, "origin", where)
        if origin != st.log:
            raise self._fail(st, "genesis origin differs from the statement's log")
        if ORIGIN_RE.fullmatch(origin) is None:
            raise self._fail(st, "the origin must be printable ASCII without spaces or '+'")
        log_key = _str(d, "log_key", where)
        try:
            verifier = parse_verifier_key(log_key)
        except VerificationError as e:
            raise self._fail(st, f"genesis log_key: {e.reason}") from None
        if verifier.name != origin:
            raise self._fail(st, "genesis log_key is named for another log")
        admins = d.get("admins")
        if not isinstance(admins, list) or not admins:
            raise self._fail(st, "genesis must name at least one administrator")
        if len(st.signers) != len(admins) + 1:
            raise self._fail(st, "genesis is signed by each administrator and then by the log key")
        site = d.get("site")
        process = d.get("process")
        if not isinstance(site, dict):
            raise self._fail(st, "genesis data.site must be an object")
        tz = site.get("tz")
        if not isinstance(tz, str) or tz not in ZONES or tz != st.tz:
            raise self._fail(st, "genesis data.site.tz must be the statement's tz, a time zone "
                                 "of the IANA database")
        if process is not None and not isinstance(process, dict):
            raise self._fail(st, "genesis data.process must be an object or null")
        for n, (a, ref) in enumerate(zip(admins, st.signers, strict=False)):
            if not isinstance(a, dict):
                raise self._fail(st, f"genesis admins[{n}] must be an object")
            user = _str(a, "user", where)
            if not valid_user(user) or user == SITE_USER:
                raise self._fail(st, f"genesis admins[{n}].user {user!r} is not a valid user id")
            key = unb64(_str(a, "key", where), f"genesis admins[{n}].key", length=32)
            roles = _roles(a, where)
            if ADMIN not in roles:
                raise self._fail(st, f"genesis admins[{n}] lacks the admin role")
            meaning = "approved" if n == 0 else "possession"
            name = _name(a, f"genesis admins[{n}]")
            if ref.user != user or ref.key != key or ref.meaning != meaning or ref.name != name:
                raise self._fail(st, f"genesis signer {n} must be admins[{n}] ({meaning})")
            self._enrol(st, user, name, roles, key)
        log_ref = st.signers[-1]
        if (log_ref.user != SITE_USER or log_ref.key != verifier.public_key
                or log_ref.meaning != "possession" or log_ref.name != SITE_NAME):
            raise self._fail(st, "genesis must be co-signed by the log key as @site "
                                 f"({SITE_NAME!r}, possession)")
        self.genesis = Genesis(origin=origin, log_key=log_key, log_public_key=verifier.public_key,
                               site=site, process=process)

    def _enrol(self, st: Statement, user: str, name: str, roles: frozenset[str],
               key: bytes) -> None:
        if key in self.keys:
            raise self._fail(st, "that public key was enrolled before; keys are never reused")
        self.keys[key] = KeyRecord(user=user, public_key=key, enrolled_at=st.index)
        self.users[user] = UserRecord(user=user, name=name, roles=roles, enrolled_at=st.index,
                                      key=key, keys=[key])

    def _key_enrol(self, st: Statement) -> None:
        d, where = st.data, "key.enrol"
        self._need_admin(st, st.author)
        user = _str(d, "user", where)
        if not valid_user(user) or user == SITE_USER:
            raise self._fail(st, f"{user!r} is not a valid user id")
        if user in self.users:
            raise self._fail(st, f"user {user} is already enrolled; rotate or reset their key")
        key = unb64(_str(d, "key", where), "key.enrol data.key", length=32)
        if len(st.signers) != 2:
            raise self._fail(st, "key.enrol is signed by an administrator and the new key")
        name = _name(d, where)
        self._need_possession(st, st.signers[1], user, key)
        if st.signers[1].name != name:
            raise self._fail(st, "the new key's signer name differs from the enrolled name")
        self._enrol(st, user, name, _roles(d, where), key)

    def _key_revoke(self, st: Statement) -> None:
        d, where = st.data, "key.revoke"
        user = _str(d, "user", where)
        key = unb64(_str(d, "key", where), "key.revoke data.key", length=32)
        reason = _str(d, "reason", where)
        if len(st.signers) != 1:
            raise self._fail(st, "key.revoke is signed by one person")
        if st.author.user != user or st.author.meaning != "authored":
            # Not the user revoking a key of their own ('authored', with any key of theirs
            # valid here, the one revoked included): an administrator's approval.
            self._need_admin(st, st.author)
        rec = self.keys.get(key)
        if rec is None or rec.user != user:
            raise self._fail(st, f"that key is not enrolled to {user}")
        if rec.revoked_at is not None:
            raise self._fail(st, f"that key was already revoked at entry {rec.revoked_at}")
        rec.revoked_at, rec.revoked_reason = st.index, reason
        u = self.users[user]
        if u.key == key:
            u.key = None

    def _key_rotate(self, st: Statement) -> None:
        d, where = st.data, "key.rotate"
        user = _str(d, "user", where)
        new = unb64(_str(d, "key", where), "key.rotate data.key", length=32)
        old = unb64(_str(d, "previous", where), "key.rotate data.previous", length=32)
        reason = _str(d, "reason", where)
        if len(st.signers) != 2:
            raise self._fail(st, "key.rotate is signed by the old key or an administrator, "
                                 "and by the new key")
        u = self.users.get(user)
        if u is None:
            raise self._fail(st, f"user {user} is not enrolled")
        if st.author.user == user:
            if st.author.key != old or st.author.meaning != "authored":
                raise self._fail(st, "a self-service rotation is signed with the previous key")
        else:
            self._need_admin(st, st.author)
        rec = self.keys.get(old)
        if rec is None or rec.user != user:
            raise self._fail(st, f"data.previous is not a key of {user}")
        self._need_possession(st, st.signers[1], user, new)
        if st.signers[1].name != u.name:
            raise self._fail(st, "the new key's signer name differs from the user's name")
        if rec.revoked_at is None:
            rec.revoked_at, rec.revoked_reason = st.index, f"rotated: {reason}"
        self.keys[new] = KeyRecord(user=user, public_key=new, enrolled_at=st.index)
        u.key = new
        u.keys.append(new)
        if st.author.user != user:
            u.locked_at = None  # a password reset by an administrator lifts a lockout

    def _user_update(self, st: Statement) -> None:
        d, where = st.data, "user.update"
        if len(st.signers) != 1:
            raise self._fail(st, "user.update is signed by one administrator")
        self._need_admin(st, st.author)
        user = _str(d, "user", where)
        u = self.users.get(user)
        if u is None:
            raise self._fail(st, f"user {user} is not enrolled")
        if st.author.user == user:
            raise self._fail(st, "user.update is signed by an administrator other than the "
                                 "user it changes")
        _str(d, "reason", where)
        u.name = _name(d, where)
        u.roles = _roles(d, where)

    def _user_unlock(self, st: Statement) -> None:
        d, where = st.data, "user.unlock"
        if len(st.signers) != 1:
            raise self._fail(st, "user.unlock is signed by one administrator")
        self._need_admin(st, st.author)
        user = _str(d, "user", where)
        if user not in self.users:
            raise self._fail(st, f"user {user} is not enrolled")
        _str(d, "reason", where)
        self.users[user].locked_at = None


PlainSigners = tuple[tuple[str, bytes, str], ...]
"""``(user, key, printed name)`` of each signer of a plain entry, in order."""


def plain_signers(st: Statement) -> PlainSigners | None:
    """The signers of a *plain* entry, or None for any other.

    A plain entry is one whose admission checks nothing but its signers' keys and names
    (``_check_signer`` for each): not at index 0, not of a reserved type (``ledger.``, ``key.``,
    ``user.``, ``system.``), not signed by ``@site``, and no one signing twice. Its outcome
    depends only on these signers and on the registry, and the registry changes only at
    non-plain entries; keys enrolled or revoked at an index before ``i`` are valid or not alike
    for every index after the last key event. So
    between two non-plain entries, plain entries with the same signers are all admitted or all
    refused: a verifier may admit the first and only count the others.
    """
    if st.index == 0 or st.type.startswith(RESERVED_PREFIXES):
        return None
    return _plain(st.signers)


@functools.lru_cache(maxsize=4096)
def _plain(signers: tuple[SignerRef, ...]) -> PlainSigners | None:
    """``plain_signers``' answer for the signers alone, remembered (a ledger has few)."""
    out = tuple((r.user, r.key, r.name) for r in signers)
    users = {u for u, _k, _n in out}
    if SITE_USER in users or len(users) != len(out):
        return None
    return out


def replay(statements: Iterable[Statement]) -> KeyRegistry:
    reg = KeyRegistry()
    for st in statements:
        reg.admit(st)
    return reg
