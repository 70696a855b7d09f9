"""Lockouts live in the ledger: the account table is a cache. Lifting a lock in the database
(``UPDATE account SET locked=0``) neither lets the user sign through coi nor hides a signature
written behind coi's back from ``coi verify``. Real SQLite, real keys, real signatures."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from coi.cli.main import app
from coi.db.repo import AppendContext
from coi.ledger.entry import FORMAT_VERSION, SignedEntry, SignerRef, Statement, SubjectLink, sign
from coi.ledger.errors import VerificationError
from coi.service.errors import Refused
from coi.service.ledger import Party
from tests.conftest import PASSWORDS, Ledger, make_ledger

runner = CliRunner()


def _lock(led: Ledger, user: str = "alice") -> int:
    for _ in range(5):
        with pytest.raises(Refused):
            led.svc.unlock(user, "not-the-password")
    head = led.svc.store.head()
    assert head is not None
    return head.size - 1  # the system.lockout entry


def _cache_cleared(led: Ledger) -> None:
    with led.svc.engine.begin() as c:
        c.execute(text("UPDATE account SET locked = 0, failed_attempts = 0"))


def _behind_coi(led: Ledger, user: str) -> SignedEntry:
    """An entry genuinely signed by ``user``, written straight to the store: what someone who
    cleared the cache and kept the user's key could write without coi's checks."""
    svc, who = led.svc, led.people[user]
    reg = svc.registry()
    rec = reg.user(user)
    assert rec is not None and reg.genesis is not None
    origin = svc.origin()

    def build(ctx: AppendContext) -> SignedEntry:
        last = svc.store.last_on_subject("CHA99992600001A", ctx.size, tx=ctx.tx)
        st = Statement(log=origin, index=ctx.size, prev=ctx.prev, version=FORMAT_VERSION,
                       subject_prev=None if last is None else SubjectLink(*last),
                       time_ms=max(led.clock.now_ms(), ctx.last_time_ms),
                       tz=str(reg.genesis.site["tz"]) if reg.genesis else "UTC",
                       type="test.note", subject="CHA99992600001A",
                       signers=(SignerRef(user, who.public_key, rec.name, "authored"),),
                       data={"text": "signed while locked"})
        return sign(st, [who.key])

    return svc.store.append(build, origin=origin)


@pytest.mark.req("LOCKOUT")
def test_clearing_the_account_table_does_not_unlock(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    lockout = _lock(led)
    assert led.svc.registry().locked_at("alice") == lockout
    _cache_cleared(led)
    fresh = led.reopen()  # another process: its registry is rebuilt from the ledger
    with pytest.raises(Refused, match="alice is locked") as exc:
        fresh.unlock("alice", PASSWORDS["alice"])
    assert exc.value.recorded_index is not None
    # a key opened before the lockout cannot sign through coi either
    with pytest.raises(Refused, match="alice is locked"):
        fresh.append("test.note", "S", {"n": 1}, [Party(led.people["alice"], "authored")])
    assert [u["locked"] for u in fresh.users() if u["user"] == "alice"] == [True]
    fresh.verify()


@pytest.mark.req("LOCKOUT", "TAMPER-DETECTION")
def test_verify_flags_a_signature_made_while_locked(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    lockout = _lock(led)
    _cache_cleared(led)
    bad = _behind_coi(led, "alice")
    for jobs in (1, 2):
        with pytest.raises(VerificationError) as exc:
            led.reopen().verify(jobs=jobs)
        assert exc.value.index == bad.index
        assert (f"alice signed while their account was locked (lockout at entry {lockout}, no "
                "unlock entry since)") in exc.value.reason
    led.svc.engine.dispose()
    res = runner.invoke(app, ["verify", "--db", led.db])
    assert res.exit_code == 1
    assert "signed while their account was locked" in res.output


@pytest.mark.req("LOCKOUT")
def test_an_unlock_or_a_reset_in_the_ledger_lifts_the_lock(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    _lock(led, "alice")
    _lock(led, "bob")
    admin = led.people["admin"]
    led.svc.unlock_account(admin, user="alice", reason="Identity confirmed by phone")
    led.svc.reset(admin, user="bob", password="bob-new-password-1", reason="Forgot it")
    _behind_coi(led, "alice")  # signed after the unlock entry: fine
    assert led.svc.registry().locked_at("alice") is None
    assert led.svc.registry().locked_at("bob") is None
    bob = led.svc.unlock("bob", "bob-new-password-1")
    led.svc.append("test.note", "S", {"n": 2}, [Party(bob, "authored")])
    led.reopen().verify()


@pytest.mark.req("LOCKOUT")
def test_the_lock_is_read_from_the_ledger_on_every_backend(backend_db: tuple[str, Path]) -> None:
    """SQLite and PostgreSQL alike: a new process reads the lock from the ledger, and verify
    flags what was signed behind coi's back while it held."""
    led = make_ledger(backend_db[0], backend_db[1], users=("alice",))
    lockout = _lock(led)
    _cache_cleared(led)
    with pytest.raises(Refused, match="alice is locked"):
        led.reopen().unlock("alice", PASSWORDS["alice"])
    bad = _behind_coi(led, "alice")
    with pytest.raises(VerificationError, match=f"lockout at entry {lockout}") as exc:
        led.reopen().verify()
    assert exc.value.index == bad.index
    led.svc.engine.dispose()
