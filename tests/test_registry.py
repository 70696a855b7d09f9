"""The key registry, replayed from the ledger: who may sign, judged by position in the log.

The first part drives ``KeyRegistry.admit`` with statements built in memory (signatures are
``check_entry``'s business, tested in test_jcs_entry); the second goes through the service on a
copy of the template ledger: a revoked key is refused at append, and flagged by ``verify`` when
an entry is forced in below the service (``LedgerStore.append`` skips the registry).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from coi.db.repo import AppendContext
from coi.ledger import jcs, note
from coi.ledger.entry import SITE_USER, SignedEntry, SignerRef, Statement, b64, sign
from coi.ledger.errors import VerificationError
from coi.ledger.keys import generate, public_bytes
from coi.ledger.registry import KeyRegistry
from coi.service.errors import Refused
from coi.service.ledger import Party
from tests.conftest import PASSWORDS, Ledger

ORIGIN = "coi.test/registry"
LOG = generate(bytes([9]) * 32)
ADMIN, ALICE, BOB, ALICE2 = (generate(bytes([n]) * 32) for n in (10, 11, 12, 13))


def pk(k: Any) -> bytes:
    return public_bytes(k)


def ref(user: str, key: Any, name: str, meaning: str) -> SignerRef:
    return SignerRef(user, pk(key), name, meaning)


def stmt(index: int, type_: str, signers: tuple[SignerRef, ...], data: dict[str, Any],
         *, time_ms: int | None = None, subject: str = "s") -> Statement:
    return Statement(log=ORIGIN, index=index, prev=bytes(32), time_ms=time_ms or 1000 + index,
                     tz="UTC", type=type_, subject=subject, signers=signers, data=data)


def genesis_data(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "origin": ORIGIN, "log_key": note.verifier_key(ORIGIN, pk(LOG)), "site": {"tz": "UTC"},
        "process": None,
        "admins": [{"user": "admin", "name": "Ada Admin", "key": b64(pk(ADMIN)),
                    "roles": ["admin"]}],
    }
    d.update(over)
    return d


GENESIS_SIGNERS = (ref("admin", ADMIN, "Ada Admin", "approved"),
                   ref(SITE_USER, LOG, "Site log key", "possession"))


def genesis(**over: Any) -> Statement:
    return stmt(0, "ledger.genesis", GENESIS_SIGNERS, genesis_data(**over))


def enrol(index: int, user: str, key: Any, name: str, *, by: SignerRef | None = None,
          roles: tuple[str, ...] = ("apheresis",), possession: SignerRef | None = None
          ) -> Statement:
    by = by or ref("admin", ADMIN, "Ada Admin", "approved")
    poss = possession or ref(user, key, name, "possession")
    return stmt(index, "key.enrol", (by, poss),
                {"user": user, "name": name, "key": b64(pk(key)), "roles": list(roles)})


def note_by(index: int, signer: SignerRef, **kw: Any) -> Statement:
    return stmt(index, "test.note", (signer,), {"n": index}, **kw)


ALICE_REF = ref("alice", ALICE, "Alice Apheresis", "authored")


def registry(*extra: Statement) -> KeyRegistry:
    reg = KeyRegistry()
    reg.admit(genesis())
    reg.admit(enrol(1, "alice", ALICE, "Alice Apheresis"))
    for s in extra:
        reg.admit(s)
    return reg


def refused(reg: KeyRegistry, st: Statement, why: str) -> None:
    with pytest.raises(VerificationError, match=why) as info:
        reg.admit(st)
    assert info.value.index == st.index


# -- genesis ---------------------------------------------------------------------------------

def test_genesis_sets_up_the_log() -> None:
    reg = KeyRegistry()
    reg.admit(genesis())
    assert reg.genesis is not None and reg.genesis.origin == ORIGIN
    assert reg.genesis.log_public_key == pk(LOG)
    assert reg.is_admin("admin") and reg.size == 1


@pytest.mark.parametrize(("st", "why"), [
    (note_by(0, ALICE_REF), "entry 0 must be the genesis"),
    (genesis(origin="coi.test/other"), "origin differs"),
    (genesis(log_key=note.verifier_key("coi.test/other", pk(LOG))), "named for another log"),
    (genesis(log_key="nonsense"), "log_key"),
    (genesis(admins=[]), "at least one administrator"),
    (genesis(admins=[{"user": "admin", "name": "Ada Admin", "key": b64(pk(ADMIN)),
                      "roles": ["qa"]}]), "lacks the admin role"),
    (genesis(admins=[{"user": "admin", "name": "Ada Admin", "key": b64(pk(ALICE)),
                      "roles": ["admin"]}]), "genesis signer 0"),
    (genesis(admins=[{"user": "admin", "name": "Other Name", "key": b64(pk(ADMIN)),
                      "roles": ["admin"]}]), "genesis signer 0"),
    (genesis(site="x"), "site must be an object"),
    (replace(genesis(), signers=GENESIS_SIGNERS[:1]), "each administrator and then by the log"),
    (replace(genesis(), signers=(GENESIS_SIGNERS[0], ref(SITE_USER, ALICE, "Site log key",
                                                         "possession"))), "log key"),
    (replace(genesis(), signers=(replace(GENESIS_SIGNERS[0], meaning="authored"),
                                 GENESIS_SIGNERS[1])), "genesis signer 0"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_genesis_rules(st: Statement, why: str) -> None:
    refused(KeyRegistry(), st, why)


def test_second_genesis_refused() -> None:
    refused(registry(), replace(genesis(), index=2), "second genesis")


# -- enrolment -------------------------------------------------------------------------------

def test_enrolment_by_admin_with_proof_of_possession() -> None:
    reg = registry()
    alice = reg.user("alice")
    assert alice is not None and alice.key == pk(ALICE) and alice.roles == {"apheresis"}
    assert not reg.is_admin("alice")
    reg.admit(note_by(2, ALICE_REF))  # valid from the next index on


def test_new_key_cannot_author_its_own_enrolment_entry() -> None:
    assert not registry().keys[pk(ALICE)].valid_at(1)


@pytest.mark.parametrize(("st", "why"), [
    (enrol(2, "bob", BOB, "Bob Builder", by=ALICE_REF), "approved by an administrator"),
    (enrol(2, "bob", BOB, "Bob Builder", by=replace(ALICE_REF, meaning="approved")),
     "not an administrator"),
    (enrol(2, "bob", BOB, "Bob Builder", by=ref("admin", ADMIN, "Ada Admin", "authored")),
     "approved by an administrator"),
    (replace(enrol(2, "bob", BOB, "Bob Builder"),
             signers=(ref("admin", ADMIN, "Ada Admin", "approved"),)), "signed by an admin"),
    (enrol(2, "bob", BOB, "Bob Builder", possession=ref("bob", ALICE2, "Bob Builder",
                                                        "possession")), "proof of possession"),
    (enrol(2, "bob", BOB, "Bob Builder", possession=ref("bob", BOB, "Bob Builder", "authored")),
     "proof of possession"),
    (enrol(2, "bob", BOB, "Bob Builder", possession=ref("bob", BOB, "Robert", "possession")),
     "name differs"),
    (enrol(2, "alice", ALICE2, "Alice Apheresis"), "already enrolled"),
    (enrol(2, "bob", ALICE, "Bob Builder"), "never reused"),
    (enrol(2, "bob", ADMIN, "Bob Builder"), "proof of possession|never reused"),
    (enrol(2, "Bob!", BOB, "Bob Builder"), "not a valid user id"),
    (enrol(2, "bob", BOB, "Bob Builder", roles=("b", "a")), "sorted"),
    (enrol(2, "bob", BOB, "Bob Builder", roles=()), "roles"),
], ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.req("SIG-UNIQUE")
def test_enrolment_rules(st: Statement, why: str) -> None:
    refused(registry(), st, why)


# -- signers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("signer", "why"), [
    (ref("bob", BOB, "Bob Builder", "authored"), "never enrolled"),
    (ref("admin", ALICE, "Ada Admin", "authored"), "enrolled to alice"),
    (replace(ALICE_REF, name="Alice Someone"), "enrolled as 'Alice Apheresis'"),
    (ref(SITE_USER, LOG, "Site log key", "recorded"), "system"),
])
def test_signer_must_match_the_registry(signer: SignerRef, why: str) -> None:
    refused(registry(), note_by(2, signer), why)


def test_site_signs_system_entries_only_with_the_log_key() -> None:
    site = ref(SITE_USER, LOG, "Site log key", "recorded")
    registry().admit(stmt(2, "system.login_failed", (site,), {"user": "x"}))
    refused(registry(), stmt(2, "system.login_failed", (replace(site, key=pk(ALICE)),), {}),
            "not the log key")
    refused(registry(), stmt(2, "system.lockout", (ALICE_REF,), {}), "signed by the site")


# -- revocation, by position -----------------------------------------------------------------

def revoke(index: int, user: str, key: Any, by: SignerRef, **kw: Any) -> Statement:
    return stmt(index, "key.revoke", (by,),
                {"user": user, "key": b64(pk(key)), "reason": "left the site"}, **kw)


ADMIN_APPROVES = ref("admin", ADMIN, "Ada Admin", "approved")


@pytest.mark.req("KEY-PROTECTION")
def test_revocation_takes_effect_at_its_index() -> None:
    reg = registry(note_by(2, ALICE_REF), revoke(3, "alice", ALICE, ADMIN_APPROVES))
    assert reg.keys[pk(ALICE)].valid_at(2) and not reg.keys[pk(ALICE)].valid_at(4)
    refused(reg, note_by(4, ALICE_REF), "revoked at entry 3")


def test_validity_is_by_position_never_by_time() -> None:
    """A back-dated entry after the revocation is still refused; a late time changes nothing."""
    reg = registry(revoke(2, "alice", ALICE, ADMIN_APPROVES, time_ms=10**12))
    refused(reg, note_by(3, ALICE_REF, time_ms=1), "revoked at entry 2")
    ok = registry(note_by(2, ALICE_REF, time_ms=10**13))
    assert ok.size == 3


def test_self_revocation_and_its_limits() -> None:
    registry(revoke(2, "alice", ALICE, ALICE_REF))  # anyone may revoke their own key
    refused(registry(enrol(2, "bob", BOB, "Bob Builder")),
            revoke(3, "alice", ALICE, ref("bob", BOB, "Bob Builder", "approved")),
            "not an administrator")
    refused(registry(revoke(2, "alice", ALICE, ADMIN_APPROVES)),
            revoke(3, "alice", ALICE, ADMIN_APPROVES), "already revoked at entry 2")
    refused(registry(), revoke(2, "alice", ADMIN, ADMIN_APPROVES), "not enrolled to alice")


# -- rotation and reset ----------------------------------------------------------------------

def rotate(index: int, by: SignerRef, new: Any = ALICE2, previous: Any = ALICE,
           name: str = "Alice Apheresis") -> Statement:
    return stmt(index, "key.rotate", (by, ref("alice", new, name, "possession")),
                {"user": "alice", "key": b64(pk(new)), "previous": b64(pk(previous)),
                 "reason": "password forgotten"})


@pytest.mark.parametrize("by", [ADMIN_APPROVES, ALICE_REF], ids=["reset", "self"])
def test_rotation_replaces_the_key_at_its_index(by: SignerRef) -> None:
    reg = registry(rotate(2, by))
    assert reg.user("alice").key == pk(ALICE2)  # type: ignore[union-attr]
    refused(reg, note_by(3, ALICE_REF), "revoked at entry 2")
    reg.admit(note_by(3, ref("alice", ALICE2, "Alice Apheresis", "authored")))


@pytest.mark.parametrize(("st", "why"), [
    (rotate(2, replace(ALICE_REF, meaning="approved")), "previous key"),
    (rotate(2, ref("alice", ALICE2, "Alice Apheresis", "authored")), "never enrolled"),
    (rotate(2, ADMIN_APPROVES, new=ALICE), "never reused"),
    (rotate(2, ADMIN_APPROVES, name="Alice Other"), "name differs"),
    (rotate(2, ADMIN_APPROVES, previous=ADMIN), "not a key of alice"),
    (rotate(2, replace(ADMIN_APPROVES, meaning="authored")), "approved by an administrator"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_rotation_rules(st: Statement, why: str) -> None:
    refused(registry(), st, why)


def test_user_update_changes_the_name_from_its_index() -> None:
    upd = stmt(2, "user.update", (ADMIN_APPROVES,),
               {"user": "alice", "name": "Alice Married", "roles": ["apheresis", "qa"],
                "reason": "name change"})
    reg = registry(upd)
    refused(reg, note_by(3, ALICE_REF), "enrolled as 'Alice Married'")
    reg.admit(note_by(3, replace(ALICE_REF, name="Alice Married")))
    refused(registry(), replace(upd, signers=(ALICE_REF,)), "approved by an administrator")


# -- through the service ---------------------------------------------------------------------

def test_revoked_key_refused_at_append(sqlite_ledger: Ledger) -> None:
    led, svc = sqlite_ledger, sqlite_ledger.svc
    r = svc.revoke(led.people["admin"], user="alice", reason="left the site")
    size = svc.store.head().size  # type: ignore[union-attr]
    with pytest.raises(Refused, match="revoked or replaced"):
        svc.append("test.note", "S", {"n": 1}, [Party(led.people["alice"], "authored")])
    with pytest.raises(Refused, match="revoked or replaced"):  # not as a witness either
        svc.append("test.note", "S", {"n": 1}, [Party(led.people["bob"], "authored"),
                                               Party(led.people["alice"], "witnessed")])
    assert svc.store.head().size == size == r.index + 1  # type: ignore[union-attr]
    with pytest.raises(Refused, match="wrong password"):  # no key left to unlock
        svc.unlock("alice", PASSWORDS["alice"])
    svc.verify()


def _force(led: Ledger, signer: str, name: str) -> SignedEntry:
    """Sign and store an entry below the service, where no registry check runs."""
    svc = led.svc
    who = led.people[signer]

    def build(ctx: AppendContext) -> SignedEntry:
        st = Statement(log=svc.origin(), index=ctx.size, prev=ctx.prev,
                       time_ms=ctx.last_time_ms + 1, tz="Europe/Paris", type="test.note",
                       subject="FORCED", signers=(SignerRef(signer, who.public_key, name,
                                                            "authored"),),
                       data=jcs.normalise({"forced": True}))
        return sign(st, [who.key])

    return svc.store.append(build, origin=svc.origin())


def test_revoked_key_forced_in_is_flagged_by_verify(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    r = led.svc.revoke(led.people["admin"], user="alice", reason="left the site")
    e = _force(led, "alice", "Alice Apheresis")
    with pytest.raises(VerificationError, match=f"revoked at entry {r.index}") as info:
        led.svc.verify()
    assert info.value.index == e.index


def test_wrong_printed_name_forced_in_is_flagged_by_verify(sqlite_ledger: Ledger) -> None:
    e = _force(sqlite_ledger, "bob", "Robert Builder")
    with pytest.raises(VerificationError, match="enrolled as 'Bob Builder'") as info:
        sqlite_ledger.svc.verify()
    assert info.value.index == e.index


@pytest.mark.req("AUTHORITY")
def test_non_admin_cannot_enrol(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    size = led.svc.store.head().size  # type: ignore[union-attr]
    with pytest.raises(Refused, match="not an administrator"):
        led.svc.enrol(led.people["carol"], user="dave", name="Dave", roles=["qa"],
                      password="dave-password-1")
    assert led.svc.store.head().size == size  # type: ignore[union-attr]
    assert led.svc.registry().user("dave") is None


def test_reset_retires_the_old_key(sqlite_ledger: Ledger) -> None:
    led, svc = sqlite_ledger, sqlite_ledger.svc
    e = svc.reset(led.people["admin"], user="bob", password="bob-new-password", reason="forgot")
    with pytest.raises(Refused, match="revoked or replaced"):
        svc.append("test.note", "S", {}, [Party(led.people["bob"], "authored")])
    bob = svc.unlock("bob", "bob-new-password")
    assert bob.public_key != led.people["bob"].public_key
    later = svc.append("test.note", "S", {}, [Party(bob, "authored")])
    assert later.index == e.index + 1
    assert svc.verify().registry.user("bob").key == bob.public_key  # type: ignore[union-attr]


def test_reserved_types_refused_through_the_generic_append(sqlite_ledger: Ledger) -> None:
    for t in ("key.enrol", "ledger.genesis", "user.update", "system.lockout"):
        with pytest.raises(Refused, match="reserved"):
            sqlite_ledger.svc.append(t, "S", {}, [Party(sqlite_ledger.people["admin"],
                                                        "approved")])
