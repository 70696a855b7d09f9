"""Hand-offs between organisations that share no database: real, separate ledgers.

A collection centre (SQLite) ships a product to a manufacturer (SQLite; once on PostgreSQL):
`coi handoff export` at one, `coi handoff receive` at the other. Every refusal (replay, wrong
recipient, unknown partner, tampered file, dropped entry re-sealed with the sender's key, rolled
back or forked sender) has its own message, is recorded, and changes nothing else.
"""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from coi.cli.main import app
from coi.export.handoff_record import Handoff, Previous, handoff_json, read_handoff
from coi.export.records import encode_line, parse_line
from coi.export.verifier import verify_bundle
from coi.ledger import note
from coi.ledger.errors import VerificationError
from coi.ledger.keys import generate, public_bytes
from coi.service import partners
from coi.service.chain import CoiService, genesis_extras
from coi.service.demo import PLAN, MovableClock, Site, Walk, step
from coi.service.errors import Refused
from coi.service.handoff import export_handoff
from coi.service.handoff_receive import receive_handoff
from coi.service.handoff_state import HANDOFF_RECEIVED, HANDOFF_REFUSED, HANDOFF_SENT
from coi.service.ledger import LedgerService, Unlocked
from tests.test_subject_links import _reseal

runner = CliRunner()
T0 = 1_790_000_000_000
H = 3_600_000
CLINIC = ("collect.example/a9998", "A9998",
          (("admin", "Ada Admin", ()), ("alice", "Alice Apheresis", ("apheresis",)),
           ("amir", "Amir Apheresis", ("apheresis",)), ("colin", "Colin Courier", ("courier",))))
FACTORY = ("factory.example/a9997", "A9997",
           (("admin", "Ada Admin", ()), ("maya", "Maya Manufacturing", ("manufacturing",))))
ELSEWHERE = note.verifier_key("elsewhere.example/a9996", public_bytes(generate(b"\x09" * 32)))


def pw(user: str) -> str:
    return f"{user}-fed-password-1"


@dataclass
class Org:
    svc: CoiService
    clock: MovableClock
    people: dict[str, Unlocked]
    db: str
    key: Path

    @property
    def ledger(self) -> LedgerService:
        return self.svc.ledger

    def count(self) -> int:
        return self.ledger.store.count_rows()

    def last(self) -> tuple[str, dict[str, Any]]:
        head = self.ledger.store.head()
        assert head is not None
        row = self.ledger.store.row(head.size - 1)
        assert row is not None
        return row.type, json.loads(row.statement)["data"]


def build(db: str, key: Path, spec: Any) -> Org:
    origin, fin, staff = spec
    clock = MovableClock(T0)
    ledger = LedgerService.open(db, str(key), clock=clock)
    site_data, process = genesis_extras(fin)
    ledger.init(origin=origin, admin="admin", admin_name="Ada Admin",
                admin_password=pw("admin"), tz="Europe/Paris", site_data=site_data,
                process=process)
    people = {"admin": ledger.unlock("admin", pw("admin"))}
    for user, name, roles in staff[1:]:
        clock.set(clock.now_ms() + 1000)
        ledger.enrol(people["admin"], user=user, name=name, roles=list(roles),
                     password=pw(user))
        people[user] = ledger.unlock(user, pw(user))
    return Org(CoiService(ledger), clock, people, db, key)


def reopen(org: Org) -> Org:
    svc = CoiService(LedgerService.open(org.db, str(org.key), clock=org.clock))
    return Org(svc, org.clock, org.people, org.db, org.key)


_TEMPLATES: dict[str, Org] = {}


def _template(root: Path, name: str, spec: Any) -> Org:
    if name not in _TEMPLATES:
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        _TEMPLATES[name] = build(str(d / "coi.db"), d / "coi.db.logkey", spec)
        _TEMPLATES[name].ledger.engine.dispose()
    return _TEMPLATES[name]


def copy_org(t: Org, dest: Path) -> Org:
    dest.mkdir(parents=True, exist_ok=True)
    t.ledger.engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        if Path(t.db + suffix).exists():
            shutil.copy(t.db + suffix, str(dest / "coi.db") + suffix)
    shutil.copy(t.key, dest / "coi.db.logkey")
    phi_key = Path(t.db + ".phikey")  # the PHI key lives beside the database too
    if phi_key.exists():
        shutil.copy(phi_key, dest / "coi.db.phikey")
    clock = MovableClock(t.clock.now_ms())
    svc = CoiService(LedgerService.open(str(dest / "coi.db"), str(dest / "coi.db.logkey"),
                                        clock=clock))
    return Org(svc, clock, dict(t.people), str(dest / "coi.db"), dest / "coi.db.logkey")


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Org, Org]:
    root = tmp_path_factory.mktemp("federation")
    return _template(root, "clinic", CLINIC), _template(root, "factory", FACTORY)


def pin(a: Org, b: Org, name: str, role: str) -> None:
    """``a`` pins ``b`` as partner ``name``."""
    g = b.ledger.registry().genesis
    assert g is not None
    partners.add(a.ledger, a.people["admin"], name=name, log_key=b.ledger.log_verifier_key(),
                 fin=str(g.site["fin"]), role=role)


@pytest.fixture
def pair(templates: tuple[Org, Org], tmp_path: Path) -> tuple[Org, Org]:
    clinic, factory = (copy_org(t, tmp_path / n) for t, n in zip(templates, ("c", "f"),
                                                                   strict=True))
    pin(clinic, factory, "acme-factory", "manufacturing")
    pin(factory, clinic, "city-clinic", "collection")
    return clinic, factory


def ship(org: Org, seq: int, receiver: str = "ACME-FACTORY") -> str:
    """Enrol a product at ``org`` and record it up to the courier pickup naming ``receiver``."""
    site = Site(svc=org.svc, people=org.people)
    org.clock.set(org.clock.now_ms() + H)
    coi, _ = org.svc.enrol(actor=org.people["alice"], patient={"patient_id": f"MRN{seq:06d}"},
                           treatment_site="A9998-HEMATOLOGY", manufacturing_slot=f"SLOT-{seq}")
    w = Walk(coi=coi, seq=seq, din=f"A999826{seq:06d}")
    t0 = org.clock.now_ms()
    for n in range(4):
        org.clock.set(t0 + PLAN[n][1])
        if PLAN[n][0] == "courier_pickup":
            org.svc.record("courier_pickup", coi, actor=org.people["colin"],
                           fields={"shipper_id": f"SHP{seq:04d}", "logger_id": f"LOG{seq:04d}",
                                   "receiver": receiver})
        else:
            step(site, w, n, org.clock.now_ms())
    return coi


def send(org: Org, coi: str, to: str, out: Path) -> Path:
    export_handoff(org.svc, org.people["colin"], coi=coi, to=to, out=out)
    return out


def refused(org: Org, path: Path, match: str) -> None:
    """Receiving ``path`` is refused with ``match``; only the refusal is recorded."""
    before = org.count()
    with pytest.raises(Refused, match=match) as e:
        receive_handoff(org.svc, org.people["maya"], path)
    assert e.value.recorded_index == before
    assert org.count() == before + 1
    kind, data = org.last()
    assert kind == HANDOFF_REFUSED and data["reason"] in e.value.reason


@pytest.mark.req("OFFLINE-VERIFY")
def test_a_product_crosses_from_clinic_to_factory(pair: tuple[Org, Org], tmp_path: Path
                                                  ) -> None:
    clinic, factory = pair
    coi = ship(clinic, 1)
    f = send(clinic, coi, "acme-factory", tmp_path / "h1.jsonl")
    kind, data = clinic.last()
    assert kind == HANDOFF_SENT and data["to"] == "acme-factory" and data["items"] == ["C00001"]
    # Anyone verifies it offline with the sender's key: complete, and a hand-off.
    r = verify_bundle(f, clinic.ledger.log_verifier_key())
    assert r.complete and r.handoff is not None and r.handoff.coi == coi
    out = runner.invoke(app, ["verify-export", str(f), "--trust",
                              clinic.ledger.log_verifier_key()])
    assert out.exit_code == 0 and f"complete: every entry of {coi}" in out.output
    page = runner.invoke(app, ["report", str(f), "-o", str(tmp_path / "h1.html")])
    assert page.exit_code == 0, page.output  # the human-readable copy of a hand-off file
    got = receive_handoff(factory.svc, factory.people["maya"], f)
    assert (got.coi, got.partner, got.items, got.complete) == (coi, "city-clinic", ("C00001",),
                                                                True)
    kind, data = factory.last()
    assert kind == HANDOFF_RECEIVED and data["sender_origin"] == CLINIC[0]
    assert data["shipment"]["hash"] == r.handoff.shipment_hash
    assert data["checkpoint"]["size"] == r.tree_size
    # The product is expected at the factory, in the state the clinic's shipment left it.
    view = factory.svc.show(coi)
    assert view["state"]["state"] == "in_transit_to_manufacturing"
    assert view["expected"]["from"] == "city-clinic"
    assert view["state"]["items"] == {"C00001": {"kind": "collection", "status": "collected",
                                                 "created_index": factory.count() - 1}}
    assert [e["coi"] for e in factory.svc.status()["expected"]] == [coi]
    factory.svc.ledger.engine.dispose()
    res = runner.invoke(app, ["show", coi, "--db", factory.db])
    assert res.exit_code == 0, res.output
    assert "state: expected (hand-off from city-clinic" in res.output
    # A second product: its file proves the clinic's log grew from the checkpoint sent before.
    coi2 = ship(clinic, 2)
    f2 = send(clinic, coi2, "acme-factory", tmp_path / "h2.jsonl")
    r2 = verify_bundle(f2)
    assert r2.handoff is not None and [p.size for p in r2.handoff.previous] == [r.tree_size]
    receive_handoff(factory.svc, factory.people["maya"], f2)
    for org in (clinic, factory):  # the whole ledgers, the process replayed
        org.ledger.engine.dispose()
        res = runner.invoke(app, ["verify", "--db", org.db])
        assert res.exit_code == 0, res.output


def test_replay_wrong_recipient_unknown_partner_are_refused(pair: tuple[Org, Org],
                                                           tmp_path: Path) -> None:
    clinic, factory = pair
    f = send(clinic, ship(clinic, 1), "acme-factory", tmp_path / "h1.jsonl")
    receive_handoff(factory.svc, factory.people["maya"], f)
    refused(factory, f, "already received: this shipment .*a replayed file")
    # Addressed to another organisation.
    partners.add(clinic.ledger, clinic.people["admin"], name="elsewhere", log_key=ELSEWHERE,
                 fin="A9996", role="treatment")
    other = send(clinic, ship(clinic, 2, "ELSEWHERE"), "elsewhere", tmp_path / "other.jsonl")
    refused(factory, other, "wrong recipient: the file is addressed to elsewhere.example/a9996")
    # From an organisation the factory does not (or no longer) pins.
    partners.remove(factory.ledger, factory.people["admin"], name="city-clinic", reason="test")
    f3 = send(clinic, ship(clinic, 3), "acme-factory", tmp_path / "h3.jsonl")
    refused(factory, f3, "unknown partner")
    factory.ledger.verify()


@pytest.mark.req("TAMPER-DETECTION")
def test_tampered_and_incomplete_files_are_refused(pair: tuple[Org, Org], tmp_path: Path) -> None:
    clinic, factory = pair
    f = send(clinic, ship(clinic, 1), "acme-factory", tmp_path / "h1.jsonl")
    lines = f.read_bytes().splitlines(keepends=True)
    # One byte of a statement changed.
    bad = bytearray(f.read_bytes())
    at = bytes(bad).index(b'"statement":"') + 40
    bad[at] = ord("A") if bad[at] != ord("A") else ord("B")
    t = tmp_path / "tampered.jsonl"
    t.write_bytes(bytes(bad))
    refused(factory, t, "does not verify against partner city-clinic's pinned log key")
    # An entry of the product dropped and the file re-sealed with the clinic's own log key.
    entries = [n for n, ln in enumerate(lines) if json.loads(ln).get("in_scope") is True]
    drop = entries[1]
    dropped = json.loads(lines[drop])["index"]
    d = tmp_path / "dropped.jsonl"
    d.write_bytes(_reseal_org(clinic, lines[:drop] + lines[drop + 1:-1]))
    refused(factory, d, f"entry {dropped} of product .* is missing from the bundle")
    # Not a bundle at all.
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"hello\n")
    refused(factory, junk, "not a hand-off file")
    # Nothing accepted: the genuine file still goes in afterwards.
    receive_handoff(factory.svc, factory.people["maya"], f)


def _reseal_org(org: Org, lines: list[bytes]) -> bytes:
    class _L:
        svc = org.ledger
    return _reseal(_L(), lines)  # type: ignore[arg-type]


@pytest.mark.req("TAMPER-DETECTION")
def test_a_sender_rolled_back_or_forked_is_caught(pair: tuple[Org, Org], tmp_path: Path) -> None:
    clinic, factory = pair
    backup = tmp_path / "backup"
    copy_org(clinic, backup)  # the clinic's state before it shipped anything
    coi1 = ship(clinic, 1)
    receive_handoff(factory.svc, factory.people["maya"],
                    send(clinic, coi1, "acme-factory", tmp_path / "h1.jsonl"))
    # The clinic restores the old copy and ships again: it never sent a checkpoint, it says.
    old = reopen(Org(clinic.svc, clinic.clock, clinic.people, str(backup / "coi.db"),
                     backup / "coi.db.logkey"))
    old.clock.set(clinic.clock.now_ms())
    coi2 = ship(old, 2)
    ship(old, 3)
    f2 = send(old, coi2, "acme-factory", tmp_path / "h2.jsonl")
    refused(factory, f2, "sends no consistency proof, but this site accepted its checkpoint "
                         ".*rolled back")
    # It even claims it sent the checkpoint the factory holds, with its own (forked) root at
    # that size: the proof starts from another root.
    sent_size = json.loads(tmp_path.joinpath("h1.jsonl").read_bytes().splitlines()[0])[
        "tree_size"]
    forked_root = old.ledger.root_at(sent_size)
    from coi.ledger.entry import b64
    from coi.service.ledger import Party

    old.ledger.append(HANDOFF_SENT, coi2, {
        "to": "acme-factory", "to_origin": FACTORY[0], "to_fin": FACTORY[1],
        "shipment": {"index": 0, "hash": "00" * 32},
        "checkpoint": {"size": sent_size, "root": b64(forked_root)}, "items": ["C00001"],
        "file_sha256": "00" * 32}, [Party(old.people["colin"], "authored")], internal=True)
    f3 = send(old, coi2, "acme-factory", tmp_path / "h3.jsonl")
    refused(factory, f3, f"log at size {sent_size} has another root .* forked")


def test_export_refusals(pair: tuple[Org, Org], tmp_path: Path) -> None:
    clinic, _factory = pair
    coi = ship(clinic, 1, "SOMEONE-ELSE")
    with pytest.raises(Refused, match="names acme-factory as receiver"):
        send(clinic, coi, "acme-factory", tmp_path / "x.jsonl")
    with pytest.raises(Refused, match="not a registered partner"):
        send(clinic, coi, "nobody", tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
    coi2 = ship(clinic, 2)
    (tmp_path / "exists.jsonl").write_text("keep me")
    clinic.svc.ledger.engine.dispose()
    pwf = tmp_path / "colin.pw"
    pwf.write_text(pw("colin") + "\n")
    res = runner.invoke(app, ["handoff", "export", "--coi", coi2, "--to", "acme-factory",
                              "-o", str(tmp_path / "exists.jsonl"), "--as", "colin",
                              "--password-file", str(pwf), "--db", clinic.db])
    assert res.exit_code == 1 and "refusing to overwrite" in res.output
    assert (tmp_path / "exists.jsonl").read_text() == "keep me"
    res = runner.invoke(app, ["handoff", "export", "--coi", coi2, "--to", "acme-factory",
                              "-o", str(tmp_path / "exists.jsonl"), "--as", "colin", "--force",
                              "--password-file", str(pwf), "--db", clinic.db])
    assert res.exit_code == 0, res.output
    verify_bundle(tmp_path / "exists.jsonl")


def test_receive_command_exit_codes(pair: tuple[Org, Org], tmp_path: Path) -> None:
    clinic, factory = pair
    f = send(clinic, ship(clinic, 1), "acme-factory", tmp_path / "h1.jsonl")
    factory.ledger.engine.dispose()
    pwf = tmp_path / "maya.pw"
    pwf.write_text(pw("maya") + "\n")
    args = ["--as", "maya", "--password-file", str(pwf), "--db", factory.db]
    res = runner.invoke(app, ["handoff", "receive", str(f), *args])
    assert res.exit_code == 0 and "expected here" in res.output, res.output
    assert "at in_transit_to_manufacturing until its receipt" in res.output
    res = runner.invoke(app, ["handoff", "receive", str(f), *args])
    assert res.exit_code == 1 and "already received" in res.output
    assert "recorded as entry" in res.output
    res = runner.invoke(app, ["handoff", "receive", str(tmp_path / "none.jsonl"), *args])
    assert res.exit_code == 2


@pytest.mark.postgres
def test_receiver_on_postgresql(templates: tuple[Org, Org], pg_url: str, tmp_path: Path
                                ) -> None:
    clinic = copy_org(templates[0], tmp_path / "c")
    factory = build(pg_url, tmp_path / "pg.logkey", FACTORY)
    pin(clinic, factory, "acme-factory", "manufacturing")
    pin(factory, clinic, "city-clinic", "collection")
    f = send(clinic, ship(clinic, 1), "acme-factory", tmp_path / "h1.jsonl")
    got = receive_handoff(factory.svc, factory.people["maya"], f)
    assert got.complete
    refused(factory, f, "already received")
    # The product goes on there: its receipt, replayed by the verification with the state table.
    factory.clock.set(clinic.clock.now_ms() + H)
    factory.svc.record("receipt_at_manufacturing", got.coi, actor=factory.people["maya"],
                       fields={"outcome": "accept", "logger": "in_range",
                               "temperature_c": "5.0", "paperwork": got.coi},
                       entry_methods={"paperwork": "scanner"})
    product = factory.svc.chain().product(got.coi)
    assert product is not None and product.state == "received"
    factory.svc.verify()
    factory.ledger.engine.dispose()


handoffs = st.builds(
    Handoff,
    sender_origin=st.from_regex(r"[a-z]{1,10}\.example/[a-z0-9]{1,8}", fullmatch=True),
    sender_fin=st.from_regex(r"A999[0-9]", fullmatch=True),
    receiver_name=st.from_regex(r"[a-z][a-z0-9-]{1,20}", fullmatch=True),
    receiver_origin=st.from_regex(r"[a-z]{1,10}\.example", fullmatch=True),
    receiver_fin=st.from_regex(r"A999[0-9]", fullmatch=True),
    coi=st.from_regex(r"CHA99982[0-9]{7}", fullmatch=True),
    shipment_index=st.integers(0, 2**40),
    shipment_hash=st.binary(min_size=32, max_size=32).map(bytes.hex),
    items=st.lists(st.from_regex(r"[A-Z][0-9]{5}", fullmatch=True), min_size=1, max_size=4,
                   unique=True).map(tuple),
    signers=st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}", fullmatch=True),
                               st.from_regex(r"[A-Z][a-z]{1,8}", fullmatch=True),
                               st.binary(min_size=32, max_size=32).map(
                                   lambda b: base64.b64encode(b).decode())),
                     min_size=1, max_size=3, unique=True).map(lambda s: tuple(sorted(s))),
    previous=st.lists(st.integers(1, 1000), max_size=3, unique=True).map(
        lambda sizes: tuple(Previous(n, bytes(32), (bytes(32),)) for n in sorted(sizes))))


@given(h=handoffs)
def test_the_handoff_record_reads_back_as_written(h: Handoff) -> None:
    line = encode_line(handoff_json(h))
    assert read_handoff(parse_line(line)) == h


@given(h=handoffs, where=st.sampled_from(["sender", "receiver", "coi", "shipment", "items",
                                          "signers", "previous"]),
       junk=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.none())))
def test_a_mangled_handoff_record_is_refused_cleanly(h: Handoff, where: str, junk: Any) -> None:
    obj = handoff_json(h)
    obj[where] = junk
    try:
        read_handoff(obj)
    except VerificationError:
        return
    assert where == "previous" and junk == []  # (an empty list of previous checkpoints is valid)


@pytest.mark.req("OFFLINE-VERIFY")
def test_a_rollback_after_a_partner_cosigned_is_caught(pair: tuple[Org, Org], tmp_path: Path
                                                       ) -> None:
    """The factory cosigns the clinic checkpoint it accepted; the clinic keeps the cosignature
    and `coi verify` checks against it; restored from an old copy, the clinic fails verification
    against the partner's cosigned checkpoint (wherever it is kept)."""
    from coi.service.handoff_ack import record_ack

    clinic, factory = pair
    backup = tmp_path / "backup"
    copy_org(clinic, backup)
    f = send(clinic, ship(clinic, 1), "acme-factory", tmp_path / "h1.jsonl")
    ack = tmp_path / "ack.txt"
    receive_handoff(factory.svc, factory.people["maya"], f, ack=ack)
    kind, data = factory.last()
    assert kind == HANDOFF_RECEIVED and data["cosigned"] == ack.read_text()
    # At the clinic: the acknowledgement checks out and is kept.
    acked = record_ack(clinic.svc, clinic.people["colin"], ack)
    assert acked.partner == "acme-factory" and acked.size == verify_bundle(f).tree_size
    clinic.ledger.engine.dispose()
    res = runner.invoke(app, ["verify", "--db", clinic.db])
    assert res.exit_code == 0, res.output
    assert "pinned: consistent with the checkpoint of" in res.output
    assert "cosigned by partner acme-factory" in res.output
    # A ledger with nothing to pin against says so.
    res = runner.invoke(app, ["verify", "--db", str(backup / "coi.db")])
    assert res.exit_code == 0 and "internal consistency only (unpinned)" in res.output
    # The clinic restored from the old copy: the factory's cosigned checkpoint catches it.
    res = runner.invoke(app, ["verify", "--db", str(backup / "coi.db"), "--checkpoint",
                              str(ack)])
    assert res.exit_code == 1 and "old copy was restored" in res.output
    # ...and the old copy refuses that acknowledgement: not a state of its ledger.
    old = reopen(Org(clinic.svc, clinic.clock, clinic.people, str(backup / "coi.db"),
                     backup / "coi.db.logkey"))
    with pytest.raises(Refused, match="not a state of this ledger"):
        record_ack(old.svc, old.people["colin"], ack)
    # An acknowledgement not cosigned by a partner is refused.
    plain = tmp_path / "plain.txt"
    plain.write_text(clinic.ledger.checkpoint())
    with pytest.raises(Refused, match="no pinned partner cosigned"):
        record_ack(reopen(clinic).svc, clinic.people["colin"], plain)


@pytest.mark.req("TRACKING")
def test_verify_chain_across_the_two_organisations(pair: tuple[Org, Org], tmp_path: Path
                                                   ) -> None:
    from coi.export.bundle import Scope, export_bundle

    clinic, factory = pair
    coi = ship(clinic, 1)
    f = send(clinic, coi, "acme-factory", tmp_path / "h1.jsonl")
    factory.clock.set(clinic.clock.now_ms() + H)
    receive_handoff(factory.svc, factory.people["maya"], f)
    fb = tmp_path / "factory.jsonl"
    export_bundle(factory.ledger.store, fb, scope=Scope("coi", coi=coi),
                  checkpoint=factory.ledger.checkpoint(), log_key=factory.ledger.log_key(),
                  created_ms=factory.clock.now_ms())
    keys = ["--trust", clinic.ledger.log_verifier_key(), "--trust",
            factory.ledger.log_verifier_key()]
    res = runner.invoke(app, ["verify-chain", "--coi", coi, *keys, str(f), str(fb)])
    assert res.exit_code == 0, res.output
    assert f"link OK: {CLINIC[0]} #" in res.output and f"-> {FACTORY[0]} #" in res.output
    assert res.output.rstrip().endswith("verified across 2 organisation(s), 1 hand-off(s)")
    lines = [ln for ln in res.output.splitlines() if ln.startswith("  20")]
    assert lines == sorted(lines) and any("handoff.received" in ln for ln in lines)
    # Without the factory's file the link cannot be checked: exit 1, said plainly.
    res = runner.invoke(app, ["verify-chain", "--coi", coi, *keys, str(f)])
    assert res.exit_code == 1 and "the link is not checked" in res.output
    # A file whose key is not given: a usage error.
    res = runner.invoke(app, ["verify-chain", "--coi", coi, keys[0], keys[1], str(f), str(fb)])
    assert res.exit_code == 2 and "give its log key with --trust" in res.output
    # The factory's receipt dated before the shipment: the clocks disagree.
    factory2 = copy_org(_TEMPLATES["factory"], tmp_path / "f2")
    pin(factory2, clinic, "city-clinic", "collection")
    res = runner.invoke(app, ["verify-chain", "--coi", coi, keys[0], keys[1], "--trust",
                              factory2.ledger.log_verifier_key(), str(f),
                              str(_received_early(factory2, f, coi, tmp_path))])
    assert res.exit_code == 1 and "before it was shipped" in res.output


def _received_early(org: Org, f: Path, coi: str, tmp_path: Path) -> Path:
    from coi.export.bundle import Scope, export_bundle

    org.clock.set(T0 + 2 * H)  # hours before the clinic shipped it
    receive_handoff(org.svc, org.people["maya"], f)
    out = tmp_path / "early.jsonl"
    export_bundle(org.ledger.store, out, scope=Scope("coi", coi=coi),
                  checkpoint=org.ledger.checkpoint(), log_key=org.ledger.log_key(),
                  created_ms=org.clock.now_ms())
    return out


def test_the_handoff_coi_pattern_is_isbts() -> None:
    """The offline verifier keeps its own copy of the CoI pattern (it imports no domain module):
    the two must not drift apart."""
    from coi.domain import isbt
    from coi.export.handoff_record import COI_TEXT

    assert COI_TEXT.pattern == isbt._COI_TEXT_RE.pattern.replace("(", "").replace(")", "")
