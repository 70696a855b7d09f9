"""Per-subject back-links (ledger format version 2): complete product bundles.

Every entry coi writes names the previous entry on its subject inside what its author signs;
`coi verify` checks every link (in one process and split in batches), and `verify-export`
refuses a product bundle with an entry dropped (even re-sealed with the site's own log key),
moved or out of the chain, naming the entry; a legacy ledger's bundle is complete from its
first linked entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from coi.cli.main import app
from coi.export.bundle import Scope, export_bundle
from coi.export.verifier import encode_line, manifest_note_text, verify_bundle
from coi.ledger import jcs, note
from coi.ledger.entry import SignedEntry, SignerRef, Statement, SubjectLink, read_statement, sign
from coi.ledger.errors import ProfileError, VerificationError
from coi.ledger.links import LastOnSubject, bundle_link_problem
from coi.service.ledger import LedgerService
from tests.conftest import Ledger

PRODUCT = "CHA99992600001A"
OTHER = "CHA99992600002B"


def _statements(svc: LedgerService) -> list[Statement]:
    return [read_statement(r.statement) for r in svc.store.rows()]


def test_each_new_entry_names_the_previous_one_on_its_subject(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    led.note(2, subject=OTHER)
    rows = list(led.svc.store.rows())
    last: dict[str, tuple[int, bytes]] = {}
    for r in rows:
        st = read_statement(r.statement)
        assert st.version == 2
        want = last.get(st.subject)
        assert st.subject_prev == (None if want is None else SubjectLink(*want))
        last[st.subject] = (r.index, bytes.fromhex(r.entry_hash))
    first_other = next(r.index for r in rows if r.subject == OTHER)
    assert read_statement(rows[first_other].statement).subject_prev is None


def _force(led: Ledger, subject: str, *, version: int = 2,
           link: SubjectLink | None | str = "right") -> SignedEntry:
    """Sign an entry by alice and store it below the service (no append-path rule runs), with
    its back-link as given: what a writer that does not follow the format would store."""
    svc = led.svc

    def build(ctx: Any) -> SignedEntry:
        last = svc.store.last_on_subject(subject, ctx.size, tx=ctx.tx)
        right = None if last is None else SubjectLink(*last)
        st = Statement(log=svc.origin(), index=ctx.size, prev=ctx.prev,
                       time_ms=ctx.last_time_ms + 1, tz="Europe/Paris", type="test.note",
                       subject=subject, signers=(SignerRef("alice", led.people["alice"].public_key,
                                                           "Alice Apheresis", "authored"),),
                       data=jcs.normalise({"forced": True}), version=version,
                       subject_prev=right if link == "right" else link)  # type: ignore[arg-type]
        return sign(st, [led.people["alice"].key])

    return svc.store.append(build, origin=svc.origin())


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("wrong", ["null", "older", "hash", "v1 after v2"])
def test_verify_names_the_entry_whose_back_link_is_wrong(sqlite_ledger: Ledger, wrong: str,
                                                         jobs: int) -> None:
    led = sqlite_ledger
    rows = [r for r in led.svc.store.rows() if r.subject == PRODUCT]
    first, last = rows[0], rows[-1]
    link: SubjectLink | None | str = {
        "null": None,
        "older": SubjectLink(first.index, bytes.fromhex(first.entry_hash)),
        "hash": SubjectLink(last.index, bytes(32)),
        "v1 after v2": None,
    }[wrong]
    bad = _force(led, PRODUCT, version=1 if wrong == "v1 after v2" else 2, link=link)
    led.note(3)  # entries after it, so the bad one is not the last of a batch
    with pytest.raises(VerificationError) as e:
        led.svc.verify(jobs=jobs)
    assert e.value.index == bad.index
    assert {"null": "subject_prev is null", "older": f"previous entry on subject '{PRODUCT}' "
            f"is entry {last.index}", "hash": "another hash",
            "v1 after v2": "version 1 statement after version 2"}[wrong] in e.value.reason


def test_a_right_link_written_below_the_service_verifies(sqlite_ledger: Ledger) -> None:
    _force(sqlite_ledger, PRODUCT)
    sqlite_ledger.note(1)
    sqlite_ledger.svc.verify(jobs=2)


def _export(led: Ledger, out: Path, coi: str = PRODUCT) -> Path:
    export_bundle(led.svc.store, out, scope=Scope("coi", coi=coi),
                  checkpoint=led.svc.checkpoint(), log_key=led.svc.log_key(),
                  created_ms=led.clock.now_ms())
    return out


def _reseal(led: Ledger, lines: list[bytes]) -> bytes:
    """The bundle rewritten from ``lines`` (header to last entry) with a manifest recomputed and
    signed by the site's own log key: what the sender's operator can do."""
    body = b"".join(lines)
    counts: dict[str, int] = {}
    shas: dict[str, Any] = {}
    for ln in lines:
        k = json.loads(ln)["kind"]
        counts[k] = counts.get(k, 0) + 1
        shas.setdefault(k, hashlib.sha256()).update(ln)
    whole = hashlib.sha256(body).hexdigest()
    origin = led.svc.origin()
    manifest = {"kind": "manifest", "counts": counts,
                "sha256": {k: h.hexdigest() for k, h in shas.items()},
                "bundle_sha256": whole,
                "signature": note.sign_note(manifest_note_text(origin, whole), origin,
                                            led.svc.log_key())}
    return body + encode_line(manifest)


def _in_scope(lines: list[bytes]) -> list[int]:
    return [n for n, ln in enumerate(lines) if json.loads(ln).get("in_scope") is True]


@pytest.mark.req("OFFLINE-VERIFY")
def test_a_dropped_entry_resealed_with_the_log_key_is_refused_and_named(
        sqlite_ledger: Ledger, tmp_path: Path) -> None:
    led = sqlite_ledger
    out = _export(led, tmp_path / "b.jsonl")
    assert verify_bundle(out).complete
    lines = out.read_bytes().splitlines(keepends=True)[:-1]
    for pos in _in_scope(lines)[:-1]:  # every entry but the newest (the checkpoint covers it)
        dropped = json.loads(lines[pos])["index"]
        tampered = tmp_path / f"t{pos}.jsonl"
        tampered.write_bytes(_reseal(led, lines[:pos] + lines[pos + 1:]))
        with pytest.raises(VerificationError, match=f"entry {dropped} of product {PRODUCT} is "
                                                    "missing from the bundle"):
            verify_bundle(tampered, led.svc.log_verifier_key())
    # The control: re-sealed unchanged, the bundle verifies (the log key is the operator's).
    same = tmp_path / "same.jsonl"
    same.write_bytes(_reseal(led, lines))
    assert verify_bundle(same, led.svc.log_verifier_key()).complete


def test_entries_swapped_in_a_resealed_bundle_are_refused(sqlite_ledger: Ledger,
                                                          tmp_path: Path) -> None:
    led = sqlite_ledger
    out = _export(led, tmp_path / "b.jsonl")
    lines = out.read_bytes().splitlines(keepends=True)[:-1]
    a, b = _in_scope(lines)[3:5]
    moved = json.loads(lines[a])["index"]
    lines[a], lines[b] = lines[b], lines[a]
    tampered = tmp_path / "t.jsonl"
    tampered.write_bytes(_reseal(led, lines))
    with pytest.raises(VerificationError, match=f"entry {moved} of product {PRODUCT} is "
                                                "missing"):
        verify_bundle(tampered)


def test_the_chain_judges_what_a_bundle_holds() -> None:
    """Dropped, inserted and substituted entries, named (the bundle's rule on its own)."""
    h1, h2 = b"\x01" * 32, b"\x02" * 32

    def st(index: int, link: SubjectLink | None) -> Statement:
        return Statement(log="o", index=index, prev=bytes(32), time_ms=0, tz="UTC", type="t",
                         subject=PRODUCT, signers=(), version=2, subject_prev=link)

    assert bundle_link_problem(st(9, SubjectLink(5, h1)), 9, LastOnSubject(5, h1, 2)) is None
    assert "entry 7 of the product is missing" in str(
        bundle_link_problem(st(9, SubjectLink(7, h1)), 9, LastOnSubject(5, h1, 2)))
    assert "entry 5 is not in the back-link chain" in str(
        bundle_link_problem(st(9, SubjectLink(3, h1)), 9, LastOnSubject(5, h1, 2)))
    assert "entry 5 of the product was substituted" in str(
        bundle_link_problem(st(9, SubjectLink(5, h2)), 9, LastOnSubject(5, h1, 2)))
    assert "says it is the first" in str(bundle_link_problem(st(9, None), 9,
                                                             LastOnSubject(5, h1, 2)))
    assert "entry 4 of the product is missing" in str(
        bundle_link_problem(st(9, SubjectLink(4, h1)), 9, None))


def test_a_legacy_ledger_bundle_is_complete_from_its_first_linked_entry(
        sqlite_ledger: Ledger, tmp_path: Path) -> None:
    led = sqlite_ledger
    first = _force(led, OTHER, version=1).index
    _force(led, OTHER, version=1)
    linked = led.note(1, subject=OTHER)
    led.note(1, subject=OTHER)
    led.svc.verify(jobs=2)
    out = _export(led, tmp_path / "legacy.jsonl", OTHER)
    r = verify_bundle(out)
    assert (r.complete, r.complete_from) == (False, linked)
    assert read_statement(led.svc.store.row(linked).statement).subject_prev.index == first + 1  # type: ignore[union-attr]
    key = led.svc.log_verifier_key()
    res = CliRunner().invoke(app, ["verify-export", str(out), "--trust", key])
    assert res.exit_code == 0, res.output
    assert f"complete from index {linked}" in res.output
    full = CliRunner().invoke(app, ["verify-export", str(_export(led, tmp_path / "p.jsonl")),
                                    "--trust", key])
    assert f"complete: every entry of {PRODUCT}" in full.output


links = st.one_of(st.none(), st.fixed_dictionaries({
    "index": st.integers(min_value=-3, max_value=40),
    "hash": st.binary(min_size=30, max_size=34).map(lambda b: base64.b64encode(b).decode())}))


@given(version=st.sampled_from([0, 1, 2, 3, True]), link=links, has_link=st.booleans())
def test_the_one_parser_takes_version_1_and_2_statements_only(version: Any, link: Any,
                                                              has_link: bool) -> None:
    obj: dict[str, Any] = {
        "v": version, "log": "o", "index": 30, "prev": "00" * 32, "time": 1, "tz": "UTC",
        "type": "test.note", "subject": PRODUCT,
        "signers": [{"user": "alice", "key": base64.b64encode(b"\x05" * 32).decode(),
                     "name": "Alice", "meaning": "authored"}], "data": {}}
    if has_link:
        obj["subject_prev"] = link
    ok_link = link is None or (0 <= link["index"] < 30
                               and len(base64.b64decode(link["hash"])) == 32)
    ok = (type(version) is int and (version == 1 and not has_link)
          or (version == 2 and has_link and ok_link))
    try:
        parsed = Statement.from_json(obj)
    except ProfileError:
        assert not ok
        return
    assert ok
    assert parsed.version == version
    assert jcs.decode(parsed.encode()) == obj


@pytest.mark.parametrize("wrong", ["null", "older", "hash", "v1 after v2", "right"])
def test_back_links_judged_alike_in_any_batches_and_workers(
        sqlite_ledger: Ledger, monkeypatch: pytest.MonkeyPatch, wrong: str) -> None:
    """A wrong link first in its batch (checked by the ledger verifier) or inside one (checked
    by ``check_batch``, then named by ``feed``) fails at the same index with the same reason."""
    from tests.test_verify_batches import same_everywhere

    led = sqlite_ledger
    rows = [r for r in led.svc.store.rows() if r.subject == PRODUCT]
    first, last = rows[0], rows[-1]
    link: SubjectLink | None | str = {
        "null": None, "older": SubjectLink(first.index, bytes.fromhex(first.entry_hash)),
        "hash": SubjectLink(last.index, bytes(32)), "v1 after v2": None, "right": "right",
    }[wrong]
    led.note(2, subject=OTHER)
    bad = _force(led, PRODUCT, version=1 if wrong == "v1 after v2" else 2, link=link)
    led.note(3, subject=OTHER)
    led.note(2)
    got = same_everywhere(led.svc, monkeypatch)
    if wrong == "right":
        assert isinstance(got, bytes)
    else:
        assert isinstance(got, tuple) and got[0] == bad.index
