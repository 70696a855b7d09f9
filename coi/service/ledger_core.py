"""The core of the ledger service: the site's database and log key, the key registry, appending.

Owns: opening a site (its database and log key file), creating a ledger (schema via
migrations, log key, genesis with the first administrator), the schema checks every command
makes, the key registry caught up with the stored ledger, and appending signed entries (the
registry is caught up and checked under the write lock, so a revoked key is refused before
anything is written; what must be written with an entry goes in its transaction), including
the site's own ``system.*`` entries. Who signs is an ``Unlocked`` key in a ``Party``.

The rest of ``LedgerService`` builds on this class, each part in its own module: people and
their keys (``people``), checkpoints and proofs (``proofs``), whole-ledger verification
(``verification``); ``ledger`` puts them together.
"""

from __future__ import annotations

import functools
import threading
import time
import unicodedata
import zoneinfo
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coi.db.database import Database
from coi.db.errors import DatabaseUnreachable
from coi.db.repo import AppendContext, Head, LedgerStore
from coi.db.tx import Tx
from coi.ledger import jcs, note
from coi.ledger.clock import Clock, SystemClock
from coi.ledger.entry import (
    FORMAT_VERSION,
    SITE_USER,
    SignedEntry,
    SignerRef,
    Statement,
    SubjectLink,
    b64,
    read_statement,
    sign,
    valid_subject,
    valid_user,
)
from coi.ledger.errors import ProfileError, VerificationError
from coi.ledger.keys import generate, key_id, public_bytes, wrap
from coi.ledger.registry import (
    ADMIN,
    KEY_EVENT_TYPES,
    LOCK_EVENT_TYPES,
    RESERVED_PREFIXES,
    KeyRegistry,
)
from coi.service.errors import ConfigError, Refused
from coi.service.phi import new_phi_key, write_phi_key
from coi.service.site import Site, read_log_key, write_log_key

SITE_PREFIXES = ("partner.", "handoff.")
"""Types only their own commands write (``coi partner``, ``coi handoff``), never ``coi append``."""

AfterAppend = Callable[[Tx, SignedEntry], None]
"""Called in the append's transaction once the entry is stored (writes there commit with it)."""

RETRY_FOR_S = 30.0
"""How long an append waits for an unreachable database (tries after 0.25, 0.5, 1, then every
2 s); then the error goes to the caller, with nothing recorded."""


def retry_delays(clock: Callable[[], float] = time.monotonic) -> Iterator[float | None]:
    """The waits between tries, then ``None`` once ``RETRY_FOR_S`` has run out."""
    end, delay = clock() + RETRY_FOR_S, 0.25
    while clock() + delay < end:
        yield delay
        delay = min(2 * delay, 2.0)
    yield None


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


class LedgerCore:
    """A site's ledger: its database, log key, key registry and the append path."""

    def __init__(self, db: Database, site: Site, *, clock: Clock | None = None) -> None:
        self.db = db
        self.site = site
        self.store: LedgerStore = db.ledger
        self.clock: Clock = clock or SystemClock()
        self._registry = KeyRegistry()
        # One lock for the in-memory caches (registry, and the chain service's state): front
        # ends call the service from worker threads. Re-entrant: appends read the registry.
        self.lock = threading.RLock()
        self._log_key: Ed25519PrivateKey | None = None
        self._origin: str | None = None
        self._schema_ok = False
        self.entry_hooks: list[AfterAppend] = []
        # Called when an append did not commit: caches built from it are dropped.
        self.reset_hooks: list[Callable[[], None]] = []
        # Told, in one line, when the database is unreachable and an append waits for it.
        self.on_retry: Callable[[str], None] = lambda _message: None

    @classmethod
    def open(cls, db: str | None = None, log_key: str | None = None, *,
             clock: Clock | None = None) -> Self:
        """The site at ``db`` (``--db``; ``COI_DATABASE_URL``; ``./coi.db``) with its log key
        file (``--log-key``; ``COI_LOG_KEY``; beside the SQLite file)."""
        site = Site.resolve(db, log_key)
        return cls(Database.open(site.db), site, clock=clock)

    @property
    def engine(self) -> Any:
        """The database engine under the store, for tests and benchmarks that reach below the
        service (the service itself never uses it)."""
        return self.db.engine

    # -- site set-up --------------------------------------------------------------------------
    def is_initialised(self) -> bool:
        if not self.db.has_table("ledger_head"):
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
        head = self.store.head() if self.db.has_table("ledger_head") else None
        if head is None:
            raise ConfigError(f"no ledger at {self.db.url.display}: "
                              "run `coi init` first (or pass --db)")
        if not self.db.schema_is_current():
            raise ConfigError("the database schema is older than this coi: run `coi migrate`")
        self._schema_ok = True
        return head

    def init(self, *, origin: str, admin: str, admin_name: str, admin_password: str,
             tz: str = "UTC", site_data: Mapping[str, Any] | None = None,
             process: Mapping[str, Any] | None = None) -> SignedEntry:
        """Create the schema, the log key, the PHI key and the genesis entry with the first
        administrator."""
        if not origin or not all(c.isascii() and c.isprintable() and c not in " +" for c in origin):
            raise ConfigError("--origin must be printable ASCII without spaces or '+', "
                              "e.g. coi.example-hospital.org/ledger")
        if not valid_user(admin) or admin == SITE_USER:
            raise ConfigError(f"--admin {admin!r} is not a valid user id "
                              "(lowercase letters, digits, '.', '_', '-'; starting with a letter)")
        _check_tz(tz)
        name = printed_name(admin_name)
        self.db.upgrade()
        if self.store.head() is not None:
            raise ConfigError("this database already holds a ledger; refusing to initialise it "
                              "again")
        log_key = generate()
        admin_key = generate()
        wrapped = wrap(admin_key, admin_password)
        if self.site.phi_key_path.exists():
            raise ConfigError(f"PHI key file {self.site.phi_key_path} already exists; refusing "
                              "to overwrite it")
        write_log_key(self.site.log_key_path, origin, log_key)
        try:
            write_phi_key(self.site.phi_key_path, new_phi_key(origin))
        except BaseException:
            self.site.log_key_path.unlink(missing_ok=True)
            raise
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
                data=jcs.normalise(data), version=FORMAT_VERSION)
            entry = sign(st, [admin_key, log_key])
            self.store.put_user_key(tx=ctx.tx, key_id=key_id(public_bytes(admin_key)), user=admin,
                                    wrapped=wrapped.to_json(), created_ms=st.time_ms)
            self._registry = KeyRegistry()
            self._registry.admit(st)
            return entry

        try:
            return self.store.append(build, origin=origin)
        except Exception:
            self.site.log_key_path.unlink(missing_ok=True)
            self.site.phi_key_path.unlink(missing_ok=True)
            raise


    # -- registry and genesis -----------------------------------------------------------------
    def registry(self, tx: Tx | None = None, *, size: int | None = None) -> KeyRegistry:
        """The key registry caught up with the stored ledger.

        Replays only the key events stored since the last call, trusting the stored bytes (the
        signatures are ``coi verify``'s to check); every new append is then checked against it.
        """
        with self.lock:
            return self._registry_locked(tx, size)

    def _registry_locked(self, tx: Tx | None, size: int | None) -> KeyRegistry:
        reg = self._registry
        if size is None:
            head = self.store.head(tx=tx)
            size = head.size if head is not None else 0
        if size <= reg.size:
            return reg
        types = KEY_EVENT_TYPES | LOCK_EVENT_TYPES  # lockouts are replayed: the account table
        for row in self.store.rows_of_types(types, start=reg.size, tx=tx):  # is only a cache
            try:
                st = read_statement(row.statement)
            except ProfileError as e:
                raise VerificationError(f"stored key event is damaged: {e}",
                                        index=row.index) from None
            reg.admit(st)
        reg.size = size
        return reg

    def origin(self, tx: Tx | None = None) -> str:
        if self._origin is None:
            head = self.store.head(tx=tx)
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


    # -- appending ----------------------------------------------------------------------------
    def append(self, type_: str, subject: str, data: Mapping[str, Any], parties: Sequence[Party],
               *, extra: Sequence[tuple[Unlocked, str, str]] = (),
               after: AfterAppend | None = None,
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
        if not internal and type_.startswith(RESERVED_PREFIXES + SITE_PREFIXES):
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
            reg = self.registry(ctx.tx, size=ctx.size)
            refs, keys = [], []
            for p in parties:
                rec = reg.user(p.who.user)
                if rec is None:
                    raise Refused(f"{p.who.user} is not enrolled")
                if rec.locked_at is not None or self.store.account(p.who.user, tx=ctx.tx)[1]:
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
                after: AfterAppend | None) -> SignedEntry:
        """Append under the lock. A database server that went away is waited for, a bounded
        time (``RETRY_FOR_S``, saying so through ``on_retry``): what was not
        committed is built again from the state stored then; what may have been committed is
        looked up by its hash first, so an entry is never written twice."""
        with self.lock:
            for delay in retry_delays():
                try:
                    return self.store.append(build, origin=self.origin(),
                                             after=self._after(after))
                except DatabaseUnreachable as e:
                    self._forget_unsaved()
                    if delay is None:
                        raise
                    self.on_retry(f"database unreachable, retrying in {delay:g} s ({e.detail})")
                    time.sleep(delay)
                    entry = e.entry
                    if e.maybe_committed and entry is not None and self._stored(entry):
                        return entry
                except BaseException:
                    self._forget_unsaved()
                    raise
            raise AssertionError  # pragma: no cover  (the last delay re-raises)

    def _stored(self, entry: SignedEntry) -> bool:
        """Whether ``entry`` reached the ledger (waiting for the server, within the bound)."""
        for delay in retry_delays():
            try:
                return self.store.has_entry(entry.entry_hash)
            except DatabaseUnreachable:
                if delay is None:
                    raise
                time.sleep(delay)
        raise AssertionError  # pragma: no cover

    def _forget_unsaved(self) -> None:
        """Caches that may hold what was not committed are rebuilt from the ledger."""
        self._registry = KeyRegistry()
        for reset in self.reset_hooks:
            reset()

    def _after(self, after: AfterAppend | None) -> AfterAppend:
        def run(tx: Tx, e: SignedEntry) -> None:
            if after is not None:
                after(tx, e)
            for hook in self.entry_hooks:
                hook(tx, e)
        return run

    def _sign_and_admit(self, ctx: AppendContext, type_: str, subject: str,
                        data: Mapping[str, Any], refs: list[SignerRef],
                        keys: list[Ed25519PrivateKey], reg: KeyRegistry,
                        now_ms: int | None = None) -> SignedEntry:
        tz = str(reg.genesis.site.get("tz", "UTC")) if reg.genesis else "UTC"
        last = self.store.last_on_subject(subject, ctx.size, tx=ctx.tx)
        st = Statement(log=self.origin(ctx.tx), index=ctx.size, prev=ctx.prev,
                       time_ms=now_ms if now_ms is not None
                       else max(self.clock.now_ms(), ctx.last_time_ms), tz=tz,
                       type=type_, subject=subject, signers=tuple(refs), data=data,
                       version=FORMAT_VERSION,
                       subject_prev=None if last is None else SubjectLink(*last))
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
                      after: AfterAppend | None = None) -> int:
        """Append a ``system.*`` entry signed by the site's log key (refusals, lockouts…)."""
        if not type_.startswith("system."):
            raise ValueError("site-signed entries are system.*")
        log_key = self.log_key()
        data = jcs.normalise(dict(data))

        def build(ctx: AppendContext) -> SignedEntry:
            reg = self.registry(ctx.tx, size=ctx.size)
            ref = SignerRef(SITE_USER, public_bytes(log_key), "Site log key", "recorded")
            return self._sign_and_admit(ctx, type_, subject, data, [ref], [log_key], reg)

        return self._append(build, after).index


def _check_tz(tz: str) -> None:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {tz!r}: use an IANA name such as Europe/Paris") from None


def printed_name(name: str) -> str:
    """A person's printed name as signed: NFC, 1–128 printable characters."""
    name = unicodedata.normalize("NFC", name.strip())
    if not name or len(name) > 128 or not name.isprintable():
        raise Refused("the printed name must be 1–128 printable characters")
    return name


def plain_text(s: str, what: str) -> str:
    """Free text (a reason, grounds) as signed: NFC, 1–2000 characters, no control character."""
    s = unicodedata.normalize("NFC", s.strip())
    if not s or len(s) > 2000:
        raise Refused(f"{what} must be 1–2000 characters")
    try:
        jcs.check(s)
    except ProfileError:
        raise Refused(f"{what} holds control characters") from None
    return s
