"""People and their keys: unlocking a key with a password, enrolment, revocation, resets.

Owns the ledger service's part about people (``LedgerService`` is made of this class and the
others of ``ledger``): unlocking a person's key with their password, with failed attempts
counted, a lockout after ``MAX_FAILED_LOGINS``, and each failure and lockout recorded in the
ledger; enrolling a person (their key generated, sealed under their password and stored with
the entry), revoking a key, an administrator's reset and a person's own rotation (a new key,
the old one retired, never recovered), unlocking a locked account, and the list of users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coi.db.tx import Tx
from coi.ledger.entry import SITE_USER, SignedEntry, b64, valid_user
from coi.ledger.errors import KeyError_
from coi.ledger.keys import WrappedKey, generate, key_id, public_bytes, unwrap, wrap
from coi.service.errors import Refused
from coi.service.ledger_core import LedgerCore, Party, Unlocked, plain_text, printed_name

MAX_FAILED_LOGINS = 5


class People(LedgerCore):
    def unlock(self, user: str, password: str) -> Unlocked:
        """Check a user id and password; count failures, lock after 5, record each in the ledger."""
        self.require_initialised()
        reg = self.registry()
        rec = reg.user(user) if valid_user(user) else None
        failed, locked = self.store.account(user) if rec else (0, False)
        locked = locked or (rec is not None and rec.locked_at is not None)  # the ledger decides
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

            def mark(tx: Tx, _e: SignedEntry) -> None:
                self.store.set_account(user, tx=tx, failed=failed, locked=now_locked)

            idx = self.record_system("system.login_failed", user,
                                     {"user": user, "attempt": failed}, after=mark)
            if now_locked:
                idx = self.record_system("system.lockout", user,
                                         {"user": user, "attempts": failed})
                raise Refused(f"wrong password: {user} is now locked after {failed} failed "
                              "attempts", recorded_index=idx)
            # The same words as for an unknown user: a count would tell who exists.
            raise Refused("unknown user or wrong password", recorded_index=idx)
        if failed:
            self.store.set_account(user, failed=0, locked=False)
        return Unlocked(user=user, key=key)

    def enrol(self, admin: Unlocked, *, user: str, name: str, roles: Sequence[str],
              password: str, key: Ed25519PrivateKey | None = None) -> SignedEntry:
        """Enrol ``user`` with a new key (``key``, when the caller generated it and keeps it
        unlocked, as the demo builder does: unlocking it again costs a second scrypt)."""
        if not valid_user(user) or user == SITE_USER:
            raise Refused(f"{user!r} is not a valid user id (lowercase letters, digits, '.', '_', "
                          "'-'; starting with a letter)")
        name = printed_name(name)
        new = key if key is not None else generate()
        wrapped = wrap(new, password)
        data = {"user": user, "name": name, "key": b64(public_bytes(new)),
                "roles": sorted(set(roles))}

        def store_key(tx: Tx, e: SignedEntry) -> None:
            self.store.put_user_key(tx=tx, key_id=key_id(public_bytes(new)), user=user,
                                    wrapped=wrapped.to_json(), created_ms=e.statement.time_ms)

        return self.append("key.enrol", user, data, [Party(admin, "approved")],
                           extra=[(Unlocked(user, new), name, "possession")], after=store_key,
                           internal=True)

    def revoke(self, admin: Unlocked, *, user: str, reason: str) -> SignedEntry:
        rec = self.registry().user(user)
        if rec is None or rec.key is None:
            raise Refused(f"{user} has no active key to revoke")
        return self.append("key.revoke", user,
                           {"user": user, "key": b64(rec.key),
                            "reason": plain_text(reason, "reason")},
                           [Party(admin, "approved")], internal=True)

    def reset(self, admin: Unlocked, *, user: str, password: str, reason: str) -> SignedEntry:
        """A password reset: the old key is retired, a new key enrolled (never recovered)."""
        rec = self.registry().user(user)
        if rec is None or not rec.keys:
            raise Refused(f"{user} is not enrolled")
        new = generate()
        wrapped = wrap(new, password)
        data = {"user": user, "key": b64(public_bytes(new)), "previous": b64(rec.keys[-1]),
                "reason": plain_text(reason, "reason")}

        def store_key(tx: Tx, e: SignedEntry) -> None:
            self.store.put_user_key(tx=tx, key_id=key_id(public_bytes(new)), user=user,
                                    wrapped=wrapped.to_json(), created_ms=e.statement.time_ms)
            self.store.set_account(user, tx=tx, failed=0, locked=False)

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
                "reason": plain_text(reason, "reason")}

        def store_key(tx: Tx, e: SignedEntry) -> None:
            self.store.put_user_key(tx=tx, key_id=key_id(public_bytes(new)), user=who.user,
                                    wrapped=wrapped.to_json(), created_ms=e.statement.time_ms)

        return self.append("key.rotate", who.user, data, [Party(who, "authored")],
                           extra=[(Unlocked(who.user, new), rec.name, "possession")],
                           after=store_key, internal=True)

    def unlock_account(self, admin: Unlocked, *, user: str, reason: str) -> SignedEntry:
        if self.registry().user(user) is None:
            raise Refused(f"{user} is not enrolled")

        def clear(tx: Tx, _e: SignedEntry) -> None:
            self.store.set_account(user, tx=tx, failed=0, locked=False)

        return self.append("user.unlock", user,
                           {"user": user, "reason": plain_text(reason, "reason")},
                           [Party(admin, "approved")], after=clear, internal=True)

    def users(self) -> list[dict[str, Any]]:
        reg = self.registry()
        out = []
        for u in sorted(reg.users.values(), key=lambda r: r.user):
            failed, locked = self.store.account(u.user)
            out.append({"user": u.user, "name": u.name, "roles": sorted(u.roles),
                        "active": u.key is not None, "locked": locked or u.locked_at is not None,
                        "key_id": key_id(u.key) if u.key else None,
                        "enrolled_at": u.enrolled_at, "failed_attempts": failed})
        return out

