"""The ledger service: every write and every check of the ledger goes through here.

Owns: initialising a site (schema via migrations, log key, genesis), unlocking a person's key
(with failed-attempt counting and lockout, each recorded in the ledger), appending signed entries
(the key registry is caught up and checked under the write lock, so a revoked key is refused
before anything is written), enrolment, revocation and key reset, checkpoints and proofs, and
whole-ledger verification (optionally in several processes). The CLI and the TUI call this; they
hold no rules of their own.
"""

from __future__ import annotations

import functools
import threading
import unicodedata
import zoneinfo
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, inspect

from coi.db import migrate
from coi.db.engine import make_engine
from coi.db.repo import AppendContext, Head, LedgerStore
from coi.ledger import jcs, merkle, note
from coi.ledger.clock import Clock, SystemClock
from coi.ledger.entry import (
    SITE_USER,
    SignedEntry,
    SignerRef,
    Statement,
    b64,
    read_statement,
    sign,
    valid_subject,
    valid_user,
)
from coi.ledger.errors import KeyError_, ProfileError, VerificationError
from coi.ledger.keys import WrappedKey, generate, key_id, public_bytes, unwrap, wrap
from coi.ledger.registry import ADMIN, KEY_EVENT_TYPES, RESERVED_PREFIXES, KeyRegistry
from coi.ledger.verify import EntryHook, VerifiedLog
from coi.service.errors import ConfigError, Refused
from coi.service.site import Site, read_log_key, write_log_key

MAX_FAILED_LOGINS = 5


@dataclass(frozen=True)
class Unlocked:
    """A person's private key, unlocked by their password for one signing session."""

    user: str
    key: Ed25519PrivateKey

    @functools.cached_property
    def public_key(self) -> bytes:
        """Derived once (every append compares it with the registry and names it)."""
        return public_bytes(self.key)


@dataclass(frozen=True)
class Party:
    """Who signs an entry, and with what meaning."""

    who: Unlocked
    meaning: str


class LedgerService:
    def __init__(self, engine: Engine, site: Site, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.site = site
        self.store = LedgerStore(engine)
        self.clock: Clock = clock or SystemClock()
        self._registry = KeyRegistry()
        # One lock for the in-memory caches (registry, and the chain service's state): front
        # ends call the service from worker threads. Re-entrant: appends read the registry.
        self.lock = threading.RLock()
        self._log_key: Ed25519PrivateKey | None = None
        self._origin: str | None = None
        self._schema_ok = False
        self.entry_hooks: list[Callable[[Connection, SignedEntry], None]] = []

    @classmethod
    def open(cls, db: str | None = None, log_key: str | None = None, *,
             clock: Clock | None = None) -> LedgerService:
        site = Site.resolve(db, log_key)
        return cls(make_engine(site.db_url), site, clock=clock)

    # -- site set-up --------------------------------------------------------------------------
    def is_initialised(self) -> bool:
        if not inspect(self.engine).has_table("ledger_head"):
            return False
        return self.store.head() is not None

    def _require_schema(self) -> None:
        """``require_initialised`` without re-reading the head once the schema was checked."""
        if not self._schema_ok:
            self.require_initialised()

    def require_initialised(self) -> Head:
        if self._schema_ok:
            head = self.store.head()
            if head is not None:
                return head
            self._schema_ok = False  # the head row went away: check everything again
        head = self.store.head() if inspect(self.engine).has_table("ledger_head") else None
        if head is None:
            raise ConfigError(f"no ledger at {self.engine.url.render_as_string()}: "
                              "run `coi init` first (or pass --db)")
        if migrate.current_revision(self.engine) != migrate.head_revision(self.engine):
            raise ConfigError("the database schema is older than this coi: run `coi migrate`")
        self._schema_ok = True
        return head

    def init(self, *, origin: str, admin: str, admin_name: str, admin_password: str,
             tz: str = "UTC", site_data: Mapping[str, Any] | None = None,
             process: Mapping[str, Any] | None = None) -> SignedEntry:
        """Create the schema, the log key and the genesis entry with the first administrator."""
        if not origin or not all(c.isascii() and c.isprintable() and c not in " +" for c in origin):
            raise ConfigError("--origin must be printable ASCII without spaces or '+', "
                              "e.g. coi.example-hospital.org/ledger")
        if not valid_user(admin) or admin == SITE_USER:
            raise ConfigError(f"--admin {admin!r} is not a valid user id "
                              "(lowercase letters, digits, '.', '_', '-'; starting with a letter)")
        _check_tz(tz)
        name = _printed_name(admin_name)
        migrate.upgrade(self.engine)
        if self.store.head() is not None:
            raise ConfigError("this database already holds a ledger; refusing to initialise it "
                              "again")
        log_key = generate()
        admin_key = generate()
        wrapped = wrap(admin_key, admin_password)
        write_log_key(self.site.log_key_path, origin, log_key)
        self._log_key = log_key
        data = {
            "origin": origin,
            "log_key": note.verifier_key(origin, public_bytes(log_key)),
            "site": {"tz": tz, **dict(site_data or {})},
            "process": dict(process) if process is not None else None,
            "admins": [{"user": admin, "name": name, "key": b64(public_bytes(admin_key)),
                        "roles": [ADMIN]}],
        }

        def build(ctx: AppendContext) -> SignedEntry:
            st = Statement(
                log=origin, index=ctx.size, prev=ctx.prev, time_ms=self.clock.now_ms(), tz=tz,
                type="ledger.genesis", subject=origin,
                signers=(SignerRef(admin, public_bytes(admin_key), name, "approved"),
                         SignerRef(SITE_USER, public_bytes(log_key), "Site log key",
                                   "possession")),
                data=jcs.normalise(data))
            entry = sign(st, [admin_key, log_key])
            self.store.put_user_key(ctx.conn, key_id=key_id(public_bytes(admin_key)), user=admin,
                                    wrapped=wrapped.to_json(), created_ms=st.time_ms)
            self._registry = KeyRegistry()
            self._registry.admit(st)
            return entry

        try:
            return self.store.append(build, origin=origin)
        except Exception:
            self.site.log_key_path.unlink(missing_ok=True)
            raise

    # -- registry and genesis -----------------------------------------------------------------
    def registry(self, conn: Connection | None = None, *, size: int | None = None
                 ) -> KeyRegistry:
        """The key registry caught up with the stored ledger.

        Replays only the key events stored since the last call, trusting the stored bytes (the
        signatures are ``coi verify``'s to check); every new append is then checked against it.
        """
        with self.lock:
            return self._registry_locked(conn, size)

    def _registry_locked(self, conn: Connection | None, size: int | None) -> KeyRegistry:
        reg = self._registry
        if size is None:
            head = self.store.head(conn)
            size = head.size if head is not None else 0
        if size <= reg.size:
            return reg
        for row in self.store.rows_of_types(KEY_EVENT_TYPES, start=reg.size, conn=conn):
            try:
                st = Statement.from_json(jcs.decode(row.statement))
            except ProfileError as e:
                raise VerificationError(f"stored key event is damaged: {e}",
                                        index=row.index) from None
            reg.admit(st)
        reg.size = size
        return reg

    def origin(self, conn: Connection | None = None) -> str:
        if self._origin is None:
            head = self.store.head(conn)
            if head is None:
                raise ConfigError("no ledger here: run `coi init` first")
            self._origin = head.origin
        return self._origin

    @property
    def genesis_tz(self) -> str:
        g = self.registry().genesis
        return str(g.site.get("tz", "UTC")) if g else "UTC"

    def log_key(self) -> Ed25519PrivateKey:
        if self._log_key is None:
            origin, key = read_log_key(self.site.log_key_path)
            g = self.registry().genesis
            if g is None or origin != g.origin or public_bytes(key) != g.log_public_key:
                raise ConfigError(f"{self.site.log_key_path} is not this ledger's log key")
            self._log_key = key
        return self._log_key

    def log_verifier_key(self) -> str:
        g = self.registry().genesis
        assert g is not None
        return g.log_key

    # -- people -------------------------------------------------------------------------------
    def unlock(self, user: str, password: str) -> Unlocked:
        """Check a user id and password; count failures, lock after 5, record each in the ledger."""
        self.require_initialised()
        reg = self.registry()
        rec = reg.user(user) if valid_user(user) else None
        failed, locked = self.store.account(user) if rec else (0, False)
        if rec is not None and locked:
            idx = self.record_system("system.login_failed", user,
                                     {"user": user, "why": "account locked"})
            raise Refused(f"{user} is locked after {MAX_FAILED_LOGINS} failed attempts; "
                          "an administrator must unlock the account", recorded_index=idx)
        if rec is None or rec.key is None:
            shown = user if valid_user(user) else "(an invalid user id)"
            idx = self.record_system("system.login_failed", shown,
                                     {"user": shown, "why": "unknown or revoked user"})
            raise Refused("unknown user or wrong password", recorded_index=idx)
        found = self.store.user_key(key_id(rec.key))
        if found is None:
            raise Refused(f"no stored key for {user}: an administrator must reset it")
        try:
            key = unwrap(WrappedKey.from_json(found[1]), password)
        except KeyError_:
            key = None
        if key is None:
            failed += 1
            now_locked = failed >= MAX_FAILED_LOGINS

            def mark(conn: Connection, _e: SignedEntry) -> None:
                self.store.set_account(conn, user, failed=failed, locked=now_locked)

            idx = self.record_system("system.login_failed", user,
                                     {"user": user, "attempt": failed}, after=mark)
            if now_locked:
                idx = self.record_system("system.lockout", user,
                                         {"user": user, "attempts": failed})
                raise Refused(f"wrong password: {user} is now locked after {failed} failed "
                              "attempts", recorded_index=idx)
            raise Refused(f"unknown user or wrong password (attempt {failed} of "
                          f"{MAX_FAILED_LOGINS})", recorded_index=idx)
        if failed:
            with self.engine.begin() as conn:
                self.store.set_account(conn, user, failed=0, locked=False)
        return Unlocked(user=user, key=key)

    def enrol(self, admin: Unlocked, *, user: str, name: str, roles: Sequence[str],
              password: str) -> SignedEntry:
        if not valid_user(user) or user == SITE_USER:
            raise Refused(f"{user!r} is not a valid user id (lowercase letters, digits, '.', '_', "
                          "'-'; starting with a letter)")
        name = _printed_name(name)
        new = generate()
        wrapped = wrap(new, password)
        data = {"user": user, "name": name, "key": b64(public_bytes(new)),
                "roles": sorted(set(roles))}

        def store_key(conn: Connection, e: SignedEntry) -> None:
            self.store.put_user_key(conn, key_id=key_id(public_bytes(new)), user=user,
                                    wrapped=wrapped.to_json(), created_ms=e.statement.time_ms)

        return self.append("key.enrol", user, data, [Party(admin, "approved")],
                           extra=[(Unlocked(user, new), name, "possession")], after=store_key,
                           internal=True)

    def revoke(self, admin: Unlocked, *, user: str, reason: str) -> SignedEntry:
        rec = self.registry().user(user)
        if rec is None or rec.key is None:
            raise Refused(f"{user} has no active key to revoke")
        return self.append("key.revoke", user,
                           {"user": user, "key": b64(rec.key), "reason": _text(reason, "reason")},
                           [Party(admin, "approved")], internal=True)

    def reset(self, admin: Unlocked, *, user: str, password: str, reason: str) -> SignedEntry:
        """A password reset: the old key is retired, a new key enrolled (never recovered)."""
        rec = self.registry().user(user)
        if rec is None or not rec.keys:
            raise Refused(f"{user} is not enrolled")
        new = generate()
        wrapped = wrap(new, password)
        data = {"user": user, "key": b64(public_bytes(new)), "previous": b64(rec.keys[-1]),
                "reason": _text(reason, "reason")}

        def store_key(conn: Connection, e: SignedEntry) -> None:
            self.store.put_user_key(conn, key_id=key_id(public_bytes(new)), user=user,
                                    wrapped=wrapped.to_json(), created_ms=e.statement.time_ms)
            self.store.set_account(conn, user, failed=0, locked=False)

        return self.append("key.rotate", user, data, [Party(admin, "approved")],
                           extra=[(Unlocked(user, new), rec.name, "possession")],
                           after=store_key, internal=True)

    def rotate(self, who: Unlocked, *, password: str, reason: str) -> SignedEntry:
        """A user replaces their own key (e.g. a password change): signed with the old key."""
        rec = self.registry().user(who.user)
        if rec is None or rec.key != who.public_key:
            raise Refused(f"{who.user}'s key has been revoked or replaced")
        new = generate()
        wrapped = wrap(new, password)
        data = {"user": who.user, "key": b64(public_bytes(new)), "previous": b64(who.public_key),
                "reason": _text(reason, "reason")}

        def store_key(conn: Connection, e: SignedEntry) -> None:
            self.store.put_user_key(conn, key_id=key_id(public_bytes(new)), user=who.user,
                                    wrapped=wrapped.to_json(), created_ms=e.statement.time_ms)

        return self.append("key.rotate", who.user, data, [Party(who, "authored")],
                           extra=[(Unlocked(who.user, new), rec.name, "possession")],
                           after=store_key, internal=True)

    def unlock_account(self, admin: Unlocked, *, user: str, reason: str) -> SignedEntry:
        if self.registry().user(user) is None:
            raise Refused(f"{user} is not enrolled")

        def clear(conn: Connection, _e: SignedEntry) -> None:
            self.store.set_account(conn, user, failed=0, locked=False)

        return self.append("user.unlock", user, {"user": user, "reason": _text(reason, "reason")},
                           [Party(admin, "approved")], after=clear, internal=True)

    def users(self) -> list[dict[str, Any]]:
        reg = self.registry()
        out = []
        for u in sorted(reg.users.values(), key=lambda r: r.user):
            failed, locked = self.store.account(u.user)
            out.append({"user": u.user, "name": u.name, "roles": sorted(u.roles),
                        "active": u.key is not None, "locked": locked,
                        "key_id": key_id(u.key) if u.key else None,
                        "enrolled_at": u.enrolled_at, "failed_attempts": failed})
        return out

    # -- appending ----------------------------------------------------------------------------
    def append(self, type_: str, subject: str, data: Mapping[str, Any], parties: Sequence[Party],
               *, extra: Sequence[tuple[Unlocked, str, str]] = (),
               after: Callable[[Connection, SignedEntry], None] | None = None,
               check: Callable[[AppendContext, KeyRegistry], None] | None = None,
               prepare: Callable[[AppendContext, KeyRegistry, int],
                                 tuple[str, Mapping[str, Any]]] | None = None,
               internal: bool = False) -> SignedEntry:
        """Sign and append one entry by ``parties`` (author first, then witnesses).

        ``extra`` adds co-signers not yet in the registry (a new key's proof of possession).
        ``check`` runs under the write lock with the caught-up registry; raising ``Refused``
        there aborts the append with nothing written. ``prepare``, also under the lock, may
        decide the entry's type and data from the state at that moment (the process rules).
        Reserved types need ``internal``.
        """
        self._require_schema()
        if not internal and type_.startswith(RESERVED_PREFIXES):
            raise Refused(f"entry type {type_!r} is reserved for coi's own records")
        try:
            data = jcs.normalise(dict(data))
            jcs.check(data)
        except ProfileError as e:
            raise Refused(f"data: {e}") from None
        if not valid_subject(subject):
            raise Refused("subject must be 1–128 printable ASCII characters")
        users = [p.who.user for p in parties]
        if len(set(users)) != len(users):
            raise Refused("a witness must be a different person from the author")

        def build(ctx: AppendContext) -> SignedEntry:
            reg = self.registry(ctx.conn, size=ctx.size)
            refs, keys = [], []
            for p in parties:
                rec = reg.user(p.who.user)
                if rec is None:
                    raise Refused(f"{p.who.user} is not enrolled")
                if self.store.account(p.who.user, ctx.conn)[1]:
                    # a key unlocked before a lockout must not outlive it (Part 11 lockout)
                    raise Refused(f"{p.who.user} is locked after repeated failed password "
                                  "attempts and cannot sign; an administrator must unlock the "
                                  "account")
                if rec.key != p.who.public_key:
                    raise Refused(f"{p.who.user}'s key has been revoked or replaced; "
                                  "they cannot sign")
                refs.append(SignerRef(p.who.user, p.who.public_key, rec.name, p.meaning))
                keys.append(p.who.key)
            for who, name, meaning in extra:
                refs.append(SignerRef(who.user, who.public_key, name, meaning))
                keys.append(who.key)
            if check is not None:
                check(ctx, reg)
            t, d = type_, data
            now = max(self.clock.now_ms(), ctx.last_time_ms)  # one reading: rules and entry
            if prepare is not None:
                t, d = prepare(ctx, reg, now)
                try:
                    d = jcs.normalise(dict(d))
                    jcs.check(d)
                except ProfileError as e:
                    raise Refused(f"data: {e}") from None
            return self._sign_and_admit(ctx, t, subject, d, refs, keys, reg, now)

        return self._append(build, after)

    def _append(self, build: Callable[[AppendContext], SignedEntry],
                after: Callable[[Connection, SignedEntry], None] | None) -> SignedEntry:
        with self.lock:
            try:
                return self.store.append(build, origin=self.origin(), after=self._after(after))
            except BaseException:
                self._registry = KeyRegistry()  # it may have admitted what was not committed
                raise

    def _after(self, after: Callable[[Connection, SignedEntry], None] | None
               ) -> Callable[[Connection, SignedEntry], None]:
        def run(conn: Connection, e: SignedEntry) -> None:
            if after is not None:
                after(conn, e)
            for hook in self.entry_hooks:
                hook(conn, e)
        return run

    def _sign_and_admit(self, ctx: AppendContext, type_: str, subject: str,
                        data: Mapping[str, Any], refs: list[SignerRef],
                        keys: list[Ed25519PrivateKey], reg: KeyRegistry,
                        now_ms: int | None = None) -> SignedEntry:
        tz = str(reg.genesis.site.get("tz", "UTC")) if reg.genesis else "UTC"
        st = Statement(log=self.origin(ctx.conn), index=ctx.size, prev=ctx.prev,
                       time_ms=now_ms if now_ms is not None
                       else max(self.clock.now_ms(), ctx.last_time_ms), tz=tz,
                       type=type_, subject=subject, signers=tuple(refs), data=data)
        try:
            entry = sign(st, keys)
            # What is written must read back as exactly this statement (as verify will read it).
            if read_statement(entry.statement_bytes) != st:
                raise ProfileError("the statement does not read back as written")
        except ProfileError as e:
            raise Refused(f"entry: {e}") from None
        try:
            reg.admit(st)  # the same rules verify applies: refused here, before any write
        except VerificationError as e:
            raise Refused(e.reason) from None
        return entry

    def record_system(self, type_: str, subject: str, data: Mapping[str, Any], *,
                      after: Callable[[Connection, SignedEntry], None] | None = None) -> int:
        """Append a ``system.*`` entry signed by the site's log key (refusals, lockouts…)."""
        if not type_.startswith("system."):
            raise ValueError("site-signed entries are system.*")
        log_key = self.log_key()
        data = jcs.normalise(dict(data))

        def build(ctx: AppendContext) -> SignedEntry:
            reg = self.registry(ctx.conn, size=ctx.size)
            ref = SignerRef(SITE_USER, public_bytes(log_key), "Site log key", "recorded")
            return self._sign_and_admit(ctx, type_, subject, data, [ref], [log_key], reg)

        return self._append(build, after).index

    # -- checkpoints and proofs ---------------------------------------------------------------
    def checkpoint(self) -> str:
        """Sign (or fetch) the checkpoint of the current head."""
        head = self.require_initialised()
        existing = self.store.checkpoint_at(head.size)
        if existing is not None:
            return existing
        body = note.format_checkpoint(head.origin, head.size, head.root)
        signed = note.sign_note(body, head.origin, self.log_key())
        self.store.save_checkpoint(head.size, signed)
        return signed

    def root_at(self, size: int) -> bytes:
        nodes = self.store.nodes(merkle.frontier_nodes(size))
        with _stored_tree():
            return merkle.root_from_nodes(size, nodes)

    def prove_inclusion(self, index: int, size: int | None = None) -> dict[str, Any]:
        head = self.require_initialised()
        size = head.size if size is None else size
        if not 0 < size <= head.size:
            raise Refused(f"size must be between 1 and {head.size}")
        if not 0 <= index < size:
            raise Refused(f"index must be between 0 and {size - 1}")
        # At the head's size the root is the head's (what checkpoints sign); below it, it is
        # rebuilt from the stored nodes. Either way the proof is checked against it here.
        at_head = size == head.size
        nodes = self.store.nodes(merkle.inclusion_plan(index, size) + [(0, index)]
                                 + ([] if at_head else merkle.frontier_nodes(size)))
        with _stored_tree():
            proof = merkle.inclusion_proof(index, size, nodes)
            root = head.root if at_head else merkle.root_from_nodes(size, nodes)
            leaf = merkle.stored_node(nodes, (0, index))
        merkle.verify_inclusion(leaf, index, size, proof, root)
        return {"index": index, "size": size, "leaf_hash": b64(leaf), "root": b64(root),
                "proof": [b64(h) for h in proof]}

    def prove_consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        head = self.require_initialised()
        new = head.size if new is None else new
        if not 0 < old <= new <= head.size:
            raise Refused(f"need 0 < OLD ≤ NEW ≤ {head.size}")
        at_head = new == head.size  # as for inclusion: the head's root at its size
        nodes = self.store.nodes(merkle.consistency_plan(old, new) + merkle.frontier_nodes(old)
                                 + ([] if at_head else merkle.frontier_nodes(new)))
        with _stored_tree():
            proof = merkle.consistency_proof(old, new, nodes)
            old_root = merkle.root_from_nodes(old, nodes)
            new_root = head.root if at_head else merkle.root_from_nodes(new, nodes)
        merkle.verify_consistency(old, new, old_root, new_root, proof)
        return {"old_size": old, "new_size": new, "old_root": b64(old_root),
                "new_root": b64(new_root), "proof": [b64(h) for h in proof]}

    # -- verification -------------------------------------------------------------------------
    def verify(self, *, jobs: int = 1, checkpoints: Sequence[str] = (),
               hook: EntryHook | None = None,
               progress: Callable[[int, int], None] | None = None) -> VerifiedLog:
        from coi.service.verifying import verify_store

        try:
            if inspect(self.engine).has_table("ledger_head"):
                self.store.head()
        except (TypeError, ValueError, AttributeError):  # NULL or malformed head columns
            raise VerificationError("the ledger's head row is damaged (an empty or malformed "
                                    "column)") from None
        try:
            head = self.require_initialised()
        except ConfigError:
            # No head row, yet entries are stored: the head was deleted or its key changed.
            if inspect(self.engine).has_table("ledger_entry") and self.store.count_rows():
                raise VerificationError(
                    f"the ledger's head row is missing but {self.store.count_rows()} entries "
                    "are stored") from None
            raise
        return verify_store(self.store, self.site.db_url, head, jobs=jobs,
                            checkpoints=checkpoints, hook=hook, progress=progress)


@contextmanager
def _stored_tree() -> Iterator[None]:
    """A proof or root built from stored tree nodes: a node missing or not a hash is a
    damaged ledger (exit 1, the reason), not a crash."""
    try:
        yield
    except merkle.NodeError as e:
        raise VerificationError(f"the stored Merkle tree is damaged ({e}): run `coi verify`"
                                ) from None


def _check_tz(tz: str) -> None:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {tz!r}: use an IANA name such as Europe/Paris") from None


def _printed_name(name: str) -> str:
    name = unicodedata.normalize("NFC", name.strip())
    if not name or len(name) > 128 or not name.isprintable():
        raise Refused("the printed name must be 1–128 printable characters")
    return name


def _text(s: str, what: str) -> str:
    s = unicodedata.normalize("NFC", s.strip())
    if not s or len(s) > 2000:
        raise Refused(f"{what} must be 1–2000 characters")
    try:
        jcs.check(s)
    except ProfileError:
        raise Refused(f"{what} holds control characters") from None
    return s
