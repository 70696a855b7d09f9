"""Regression: an identifier with a final newline or a control character is refused everywhere.

``coi append $'step.qa_release\\n' --subject <CoI> --data '{"certificate_id":"X"}' --as
<apheresis-only user>`` used to exit 0 and show as a QA release (``$`` matches before a final
newline). Now the real command refuses it with nothing appended; a properly signed entry of
that kind written into the database by hand is refused by ``coi verify`` naming its index; the
offline verifier refuses it in a bundle too.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from coi.cli.main import app
from coi.export.bundle import Scope, export_bundle
from coi.export.verifier import verify_bundle
from coi.ledger import jcs, merkle
from coi.ledger.entry import SignerRef, Statement, envelope_bytes, sign
from coi.ledger.errors import VerificationError
from coi.service.demo import demo_password
from coi.service.errors import Refused
from tests.chain_site import ChainSite, H, copy_site, new_walk
from tests.conftest import PASSWORDS, Ledger

runner = CliRunner()


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> ChainSite:
    s = copy_site(tmp_path_factory.getbasetemp() / "chain-template", tmp_path / "site")
    s.at(time.time_ns() // 1_000_000 - 3 * H)
    return s


def test_cli_append_of_a_type_with_a_final_newline_is_refused(site: ChainSite,
                                                               tmp_path: Path) -> None:
    w = new_walk(site)
    before = site.entry_count()
    pw = tmp_path / "alice.pw"
    pw.write_text(demo_password("alice") + "\n")
    site.svc.ledger.engine.dispose()
    res = runner.invoke(app, ["append", "step.qa_release\n", "--subject", w.coi, "--data",
                              '{"certificate_id":"X"}', "--as", "alice", "--password-file",
                              str(pw), "--db", site.db])
    assert res.exit_code == 1, res.output
    assert "type" in res.stderr and "step.qa_release" in res.stderr
    assert site.entry_count() == before
    assert all(t != "step.qa_release\n" for (t,) in site.sql("SELECT type FROM ledger_entry"))
    site.svc.ledger.verify()


@pytest.mark.parametrize("user", ["alice\n", "alice\x00", " alice"])
def test_unlock_with_a_user_id_that_is_not_whole_is_refused(sqlite_ledger: Ledger,
                                                            user: str) -> None:
    with pytest.raises(Refused, match="unknown user"):
        sqlite_ledger.svc.unlock(user, PASSWORDS["alice"])


def _insert_signed(led: Ledger, sigs: Any = None, **fields: Any) -> int:
    """Sign a note by alice with ``fields`` changed and write it with raw SQL: the row, the
    tree nodes it completes and the head, all consistent, so only the statement (or the
    signatures column, changed by ``sigs``) is wrong."""
    svc, alice = led.svc, led.people["alice"]
    head = svc.store.head()
    assert head is not None
    st = Statement(log=svc.origin(), index=head.size, prev=head.last_hash,
                   time_ms=head.last_time_ms + 1, tz="Europe/Paris", type="note.comment",
                   subject="CHA99992600001A",
                   signers=(SignerRef("alice", alice.public_key, "Alice Apheresis", "authored"),),
                   data=jcs.normalise({"certificate_id": "X"}))
    st = Statement(**{**st.__dict__, **fields})
    e = sign(st, [alice.key])
    if sigs is not None:
        column = json.dumps(sigs(json.loads(e.signatures_bytes)), separators=(",", ":"),
                            sort_keys=True, ensure_ascii=False).encode()  # (as RFC 8785 would)
        e = replace(e, signatures_bytes=column,
                    entry_hash=merkle.leaf_hash(envelope_bytes(e.statement_bytes, column)))
    tree = merkle.TreeBuilder.from_frontier(
        head.size, [svc.store.nodes([n])[n] for n in merkle.frontier_nodes(head.size)])
    nodes = tree.append(e.entry_hash)
    with svc.engine.begin() as c:
        c.execute(text("INSERT INTO ledger_entry (idx, prev_hash, entry_hash, time_ms, type, "
                       "subject, signer, statement, signatures) VALUES (:i, :p, :h, :t, :ty, "
                       ":s, :a, :st, :sg)"),
                  {"i": st.index, "p": st.prev.hex(), "h": e.entry_hash.hex(), "t": st.time_ms,
                   "ty": st.type, "s": st.subject, "a": "alice", "st": e.statement_bytes,
                   "sg": e.signatures_bytes})
        for level, idx, h in nodes:
            c.execute(text("INSERT INTO tree_node (level, idx, hash) VALUES (:l, :i, :h)"),
                      {"l": level, "i": idx, "h": h})
        c.execute(text("UPDATE ledger_head SET size = :n, root = :r, last_hash = :h, "
                       "last_time_ms = :t WHERE id = 1"),
                  {"n": st.index + 1, "r": tree.root(), "h": e.entry_hash.hex(),
                   "t": st.time_ms})
    return st.index


@pytest.mark.parametrize(("field", "value", "why"), [
    ("type", "step.qa_release\n", "statement.type"),
    ("type", "step.qa_release\t", "statement.type"),
    ("subject", "CHA99992600001A\n", "statement.subject"),
    ("subject", "CHA99992600001\u00c4", "statement.subject"),
    ("tz", "Europe/Paris\n", "statement.tz"),
])
def test_a_signed_row_with_a_bad_identifier_fails_verify(sqlite_ledger: Ledger, field: str,
                                                         value: str, why: str) -> None:
    led = sqlite_ledger
    led.svc.verify()
    i = _insert_signed(led, **{field: value})
    for jobs in (1, 2):
        with pytest.raises(VerificationError, match=why) as info:
            led.svc.verify(jobs=jobs)
        assert info.value.index == i


def test_a_signed_row_whose_signer_id_has_a_newline_fails_verify(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    alice = led.people["alice"]
    i = _insert_signed(led, signers=(SignerRef("alice\n", alice.public_key, "Alice Apheresis",
                                               "authored"),))
    with pytest.raises(VerificationError, match=r"signers\[0\]\.user") as info:
        led.svc.verify()
    assert info.value.index == i


@pytest.mark.parametrize("edit", [lambda k: k + "\n", lambda k: k + "\x00", lambda k: " " + k,
                                  str.upper], ids=["newline", "nul", "space", "upper"])
def test_a_row_whose_key_id_is_not_whole_fails_verify(sqlite_ledger: Ledger, edit: Any) -> None:
    """The signatures column's key id, changed and the entry hash recomputed: refused."""
    def change(sigs: list[dict[str, str]]) -> list[dict[str, str]]:
        assert edit(sigs[0]["keyid"]) != sigs[0]["keyid"]
        return [{**sigs[0], "keyid": edit(sigs[0]["keyid"])}]

    i = _insert_signed(sqlite_ledger, sigs=change)
    with pytest.raises(VerificationError, match="signature 0 is by key|signatures:") as info:
        sqlite_ledger.svc.verify(jobs=2)
    assert info.value.index == i


def test_a_bundle_with_a_bad_type_fails_verify_export(sqlite_ledger: Ledger,
                                                      tmp_path: Path) -> None:
    """The offline verifier reads the entry with the same reader: refused, naming the entry."""
    led = sqlite_ledger
    i = _insert_signed(led, type="step.qa_release\n")
    out = tmp_path / "b.jsonl"
    export_bundle(led.svc.store, out, scope=Scope("all"), checkpoint=led.svc.checkpoint(),
                  log_key=led.svc.log_key(), created_ms=1)
    with pytest.raises(VerificationError, match="statement.type") as info:
        verify_bundle(out)
    assert info.value.index == i
    assert json.loads(out.read_text().splitlines()[-1])["kind"] == "manifest"
