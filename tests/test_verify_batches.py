"""Whole-ledger verification in batches, here and in worker processes, says what one pass says.

``LedgerService.verify`` checks rows in batches aligned on a power of two (``pool.BATCH``):
``check_batch`` does each batch's own part (rows, chain and time inside it, its tree nodes,
checked against the stored ones) wherever it runs, and ``LedgerVerifier.feed_batch`` the rest in
order (the first row's links, keys, checkpoints, the tree above the batch). Whatever the batch
size and however many workers, a ledger verifies to the same root, and a damaged or forged one
fails with the same first bad index and the same reason as when every entry is fed one by one.
The tamper matrix (test_tamper) covers every cell with the default batch; here small batches
make a 24-entry ledger span many of them, and ``PARENT_CHECKS = False`` sends each to a worker
(with it on, this process checks batches too).
"""

from __future__ import annotations

import base64
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coi.db.reads import DriverSource
from coi.db.url import DatabaseUrl
from coi.ledger import jcs, verify
from coi.ledger.entry import CheckedEntry, StoredEntry, check_entry, envelope_bytes
from coi.ledger.errors import VerificationError
from coi.ledger.merkle import TreeBuilder, leaf_hash, root
from coi.ledger.verify import LedgerVerifier, check_batch, verify_rows
from coi.service.ledger import LedgerService, Party
from coi.verify_pool import pool as verifying
from tests.conftest import Ledger, make_ledger
from tests.test_registry import _force
from tests.test_tamper import (
    SQLITE_SIZE,
    _foreign_row,
    _insert_entry,
    add_checkpoints,
    drop_guards,
    execute,
    fork_note,
    forked_copy,
    mutate,
    table_rows,
)

SPANS = ((1, 1), (4, 4), (8, 8), (1, 8))  # (first batch, largest batch)


def outcome(svc: LedgerService, **kw: Any) -> tuple[int | None, str] | bytes:
    """The root if the ledger verifies, else the error's index and message."""
    try:
        return svc.verify(**kw).root
    except VerificationError as e:
        return e.index, str(e)


def same_everywhere(svc: LedgerService, monkeypatch: pytest.MonkeyPatch, *,
                    workers: bool = True, **kw: Any) -> tuple[int | None, str] | bytes:
    """Verify with the default batch here, then with small batches here and in workers:
    the outcome must be the same each time."""
    expected = outcome(svc, **kw)
    with monkeypatch.context() as m:
        m.setattr(verifying, "PARENT_CHECKS", False)
        for first, most in SPANS:
            m.setattr(verifying, "FIRST_BATCH", first)
            m.setattr(verifying, "BATCH", most)
            assert outcome(svc, **kw) == expected, f"batches {first} to {most}"
        if workers:
            m.setattr(verifying, "FIRST_BATCH", 2)
            m.setattr(verifying, "BATCH", 4)
            before = set(live_children())  # e.g. multiprocessing's resource tracker
            # one worker that checks every batch; then two and this process, which checks
            # batches too while they start
            for jobs, parent in ((2, False), (3, True)):
                m.setattr(verifying, "PARENT_CHECKS", parent)
                assert outcome(svc, jobs=jobs, **kw) == expected, f"batches 2 to 4, jobs={jobs}"
            assert set(live_children()) <= before, "workers left running"
    return expected


def live_children() -> list[int]:
    """This process's child processes still running (Linux; empty where /proc is missing)."""
    out: list[int] = []
    if not Path("/proc/self/task").is_dir():
        return out
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
            if state != "Z":
                out.append(int(pid))
    return out


@pytest.fixture
def tampered(sqlite_ledger: Ledger) -> Iterator[Ledger]:
    """The template ledger with checkpoints at 10 and at the head, its triggers dropped."""
    add_checkpoints(sqlite_ledger)
    drop_guards(sqlite_ledger.svc.engine)
    yield sqlite_ledger


# -- a clean ledger ----------------------------------------------------------------------------

def test_clean_ledger_same_root_in_any_batches(tampered: Ledger,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rows = list(tampered.svc.store.rows())
    expected = root([bytes.fromhex(r.entry_hash) for r in rows])
    assert same_everywhere(tampered.svc, monkeypatch) == expected
    assert same_everywhere(tampered.svc, monkeypatch,
                           checkpoints=[tampered.svc.checkpoint()]) == expected


def test_check_batch_gives_the_batch_subtree_and_nodes(sqlite_ledger: Ledger) -> None:
    rows = list(sqlite_ledger.svc.store.rows())
    origin = sqlite_ledger.svc.origin()
    whole = TreeBuilder()
    nodes = [n for r in rows for n in whole.append(bytes.fromhex(r.entry_hash))]
    got = []
    for lo in range(0, len(rows), 8):
        b, inside = check_batch(rows[lo:lo + 8], origin, lo, 8, sizes=[lo + 3, lo + 8])
        assert (b.entries, b.tail, b.error) == (len(rows[lo:lo + 8]), None, None)
        assert b.frontier == ((3, whole_root(rows[lo:lo + 8])),)
        assert set(b.at_sizes) == {lo + 3, lo + 8}
        got += [(level, i + k, h) for level, i, hashes in inside for k, h in enumerate(hashes)]
    assert sorted(got) == sorted(n for n in nodes if n[0] <= 3)
    with pytest.raises(ValueError, match="cannot start"):
        check_batch(rows[4:12], origin, 4, 8)


def test_batch_spans_grow_and_stay_aligned() -> None:
    spans = list(verifying._spans(5000, 128, 1024))  # noqa: SLF001
    assert [s for _lo, _hi, s in spans[:6]] == [128, 128, 256, 512, 1024, 1024]
    assert spans[0][0] == 0 and spans[-1][1] == 5000
    assert all(lo % span == 0 and hi - lo <= span for lo, hi, span in spans)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert [s[:2] for s in verifying._spans(3, 4, 4)] == [(0, 3)]  # noqa: SLF001
    for upto in (1, 127, 128, 1000, 5000, 20_000, 65_537):
        for jobs in (1, 2, 3):
            spans = list(verifying._spans(upto, 128, 1024, jobs))  # noqa: SLF001
            assert spans[0][0] == 0 and spans[-1][1] == upto
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
            assert all(lo % span == 0 and 0 < hi - lo <= span and 128 <= span <= 1024
                       for lo, hi, span in spans)
    tail = [s for _lo, _hi, s in verifying._spans(20_000, 128, 1024, 2)][-6:]  # noqa: SLF001
    assert tail == sorted(tail, reverse=True) and tail[-1] == 128
    # the last batches may shrink further than the first ones start (LAST_BATCH)
    for upto in (1, 127, 1000, 5000, 20_000, 65_537):
        spans = list(verifying._spans(upto, 128, 1024, 2, 32))  # noqa: SLF001
        assert spans[0][0] == 0 and spans[-1][1] == upto
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        assert all(lo % span == 0 and 0 < hi - lo <= span and 32 <= span <= 1024
                   for lo, hi, span in spans)
        assert spans[0][2] == (128 if upto >= 4 * 128 else 32)  # a small ledger: shared too
    tail = [s for _lo, _hi, s in verifying._spans(20_000, 128, 1024, 2, 32)][-8:]  # noqa: SLF001
    assert tail == sorted(tail, reverse=True) and tail[-1] == 32
    # one process: nothing to balance, no shrinking
    one = list(verifying._spans(20_000, 128, 1024, 1, 32))  # noqa: SLF001
    assert one == list(verifying._spans(20_000, 128, 1024))  # noqa: SLF001


def whole_root(rows: list[Any]) -> bytes:
    return root([bytes.fromhex(r.entry_hash) for r in rows])


# -- stored tree nodes: compared inside each batch (in its worker) and above it (here) ---------

NODES = [(0, 0), (0, 5), (0, 23), (1, 1), (1, 6), (2, 0), (2, 1), (2, 5), (3, 0), (3, 2),
         (4, 0)]


@pytest.mark.parametrize("node", NODES, ids=lambda n: f"L{n[0]}-{n[1]}")
@pytest.mark.parametrize(("col", "kind"), [("hash", "bitflip"), ("idx", "bitflip")])
def test_tree_node_tampered(tampered: Ledger, monkeypatch: pytest.MonkeyPatch, col: str,
                            kind: str, node: tuple[int, int]) -> None:
    mutate(tampered.svc.engine, "tree_node", col, kind, node)
    got = same_everywhere(tampered.svc, monkeypatch)
    level, idx = node
    assert got == (((idx + 1) << level) - 1,
                   f"entry {((idx + 1) << level) - 1}: stored tree node (level {level}, "
                   f"index {idx}) is {'wrong' if col == 'hash' else 'missing'}")


# -- rows: changed, deleted, inserted, swapped ---------------------------------------------------

@pytest.mark.parametrize("index", [0, 3, 4, 13, 23])
@pytest.mark.parametrize(("col", "kind"), [("statement", "bitflip"), ("signatures", "other"),
                                           ("prev_hash", "bitflip"), ("time_ms", "other"),
                                           ("entry_hash", "bitflip")])
def test_entry_cell_tampered(tampered: Ledger, monkeypatch: pytest.MonkeyPatch, col: str,
                             kind: str, index: int) -> None:
    mutate(tampered.svc.engine, "ledger_entry", col, kind, (index,))
    got = same_everywhere(tampered.svc, monkeypatch, workers=index in (4, 13))
    assert isinstance(got, tuple) and got[0] == index


@pytest.mark.parametrize("index", [0, 3, 4, 13, 23])
def test_row_deleted(tampered: Ledger, monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    execute(tampered.svc.engine, f"DELETE FROM ledger_entry WHERE idx = {index}")
    got = same_everywhere(tampered.svc, monkeypatch)
    assert isinstance(got, tuple) and got[0] == index


def test_rows_deleted_across_batches(tampered: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    execute(tampered.svc.engine, "DELETE FROM ledger_entry WHERE idx BETWEEN 6 AND 17")
    assert same_everywhere(tampered.svc, monkeypatch) == (6, "entry 6: entries 6 to 17 are "
                                                             "missing")


@pytest.mark.parametrize("index", [1, 12, 23])
def test_row_inserted(tampered: Ledger, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                      index: int) -> None:
    row = _foreign_row(tampered, tmp_path)
    for k in range(SQLITE_SIZE - 1, index - 1, -1):
        execute(tampered.svc.engine, f"UPDATE ledger_entry SET idx = {k + 1} WHERE idx = {k}")
    row["idx"] = index
    _insert_entry(tampered.svc.engine, row)
    got = same_everywhere(tampered.svc, monkeypatch)
    assert isinstance(got, tuple) and got[0] == index


@pytest.mark.parametrize(("i", "j"), [(0, 1), (3, 4), (6, 17)])
def test_rows_swapped(tampered: Ledger, monkeypatch: pytest.MonkeyPatch, i: int, j: int) -> None:
    rows = table_rows(tampered.svc.engine, "ledger_entry")
    execute(tampered.svc.engine, f"DELETE FROM ledger_entry WHERE idx IN ({i}, {j})")
    _insert_entry(tampered.svc.engine, {**rows[j], "idx": i})
    _insert_entry(tampered.svc.engine, {**rows[i], "idx": j})
    got = same_everywhere(tampered.svc, monkeypatch)
    assert isinstance(got, tuple) and got[0] == i


# -- checkpoints inside a batch ------------------------------------------------------------------

def test_stored_checkpoint_inside_a_batch(tampered: Ledger, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """The stored checkpoint at 10 is re-signed over another root: caught at entry 9."""
    from coi.ledger import note

    svc = tampered.svc
    body = note.format_checkpoint(svc.origin(), 10, svc.root_at(11))
    execute(svc.engine, "UPDATE checkpoint SET note = :n WHERE size = 10",
            params={"n": note.sign_note(body, svc.origin(), svc.log_key())})
    assert same_everywhere(svc, monkeypatch) == (
        9, "entry 9: stored checkpoint at size 10 does not match the first 10 entries")


def test_forked_copy_caught_inside_a_batch(sqlite_ledger: Ledger, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    led = sqlite_ledger
    other = forked_copy(led, tmp_path)
    led.note(3)
    saved = led.svc.checkpoint()
    fork_note(led, other, 1)
    led.note(0)
    fork_note(led, other, 2)
    fork_note(led, other, 3)
    got = same_everywhere(other, monkeypatch, checkpoints=[saved])
    assert isinstance(got, tuple) and got[0] == SQLITE_SIZE + 2
    assert "history was rewritten" in got[1]


# -- keys: the registry between key events ---------------------------------------------------

def test_revoked_key_forced_in_after_plain_entries(sqlite_ledger: Ledger,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """alice signs, is revoked, bob signs on, then an entry by alice is forced in: the entries
    before the revocation do not vouch for her after it, whatever the batches."""
    led = sqlite_ledger
    led.note(3, by="alice", witness=None)
    r = led.svc.revoke(led.people["admin"], user="alice", reason="left the site")
    led.note(2, by="bob", witness="carol")
    e = _force(led, "alice", "Alice Apheresis")
    led.note(2, by="bob", witness=None)
    got = same_everywhere(led.svc, monkeypatch)
    assert got == (e.index, f"entry {e.index}: alice's key was revoked at entry {r.index} "
                            "(left the site) and cannot sign later")


def test_rotated_key_forced_in_after_a_system_entry(sqlite_ledger: Ledger,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """bob rotates his key; the site records something; an entry with bob's old key is forced
    in between entries with his new one."""
    led = sqlite_ledger
    led.note(2, by="bob", witness=None)
    r = led.svc.rotate(led.people["bob"], password="bob-new-password-1", reason="routine")
    led.svc.record_system("system.note", "S", {"n": 1})
    new_bob = led.svc.unlock("bob", "bob-new-password-1")
    led.svc.append("test.note", "S", {"n": 1}, [Party(new_bob, "authored")])
    e = _force(led, "bob", "Bob Builder")
    led.svc.append("test.note", "S", {"n": 2}, [Party(new_bob, "authored")])
    got = same_everywhere(led.svc, monkeypatch)
    assert got == (e.index, f"entry {e.index}: bob's key was revoked at entry {r.index} "
                            "(rotated: routine) and cannot sign later")


def test_feed_batch_agrees_with_feed_on_each_prefix(sqlite_ledger: Ledger) -> None:
    """Without the store: every prefix of a ledger gives the same root either way."""
    from coi.ledger.verify import LedgerVerifier

    rows = list(sqlite_ledger.svc.store.rows())
    origin = sqlite_ledger.svc.origin()
    for n in range(1, len(rows) + 1):
        one = verify_rows(rows[:n], origin)
        for span in (2, 4, 16):
            v = LedgerVerifier(origin)
            for lo in range(0, n, span):
                b, _nodes = check_batch(rows[lo:min(lo + span, n)], origin, lo, span)
                v.feed_batch(b)
            assert v.finish().root == one.root == root(
                [check_entry(r, origin).entry_hash for r in rows[:n]])
            assert v.registry.size == one.registry.size == n


# -- signatures verified together, after the rest of each row --------------------------------

def one_pass(rows: list[StoredEntry], origin: str, lo: int) -> tuple[Any, ...]:
    """What ``check_batch`` must find, by the rule it follows: each row checked whole by
    ``check_entry`` in turn, stopping at the first one that fails or is out of place."""
    checked: list[CheckedEntry] = []
    for row in rows:
        try:
            c = check_entry(row, origin)
        except VerificationError as e:
            return tuple(checked), None, (e.index, str(e))
        if c.index != lo + len(checked) or (checked and (
                c.statement.prev != checked[-1].entry_hash
                or c.statement.time_ms < checked[-1].statement.time_ms)):
            return tuple(checked), c.index, None
        checked.append(c)
    return tuple(checked), None, None


def bad_signature(row: StoredEntry, n: int, *, other_key: bool = False) -> StoredEntry:
    """``row`` with its ``n``-th signature (or its last) still in canonical form but wrong,
    and the entry hash column rewritten to match; ``other_key``: and its last signature's key
    id another key's."""
    sigs = jcs.decode(row.signatures)
    s = sigs[min(n, len(sigs) - 1)]
    raw = bytearray(base64.b64decode(s["sig"]))
    raw[7] ^= 0x10
    s["sig"] = base64.b64encode(bytes(raw)).decode("ascii")
    if other_key:
        sigs[-1]["keyid"] = "0" * 16
    column = jcs.encode(sigs)
    return row._replace(signatures=column,
                        entry_hash=leaf_hash(envelope_bytes(row.statement, column)).hex())


DAMAGES = {
    "signature": lambda r: bad_signature(r, 0),
    "second signature": lambda r: bad_signature(r, 1),
    "signature and hash column": lambda r: bad_signature(r, 0)._replace(entry_hash="0" * 64),
    "hash column": lambda r: r._replace(entry_hash="0" * 64),
    "statement": lambda r: r._replace(statement=r.statement.replace(b'"v":1', b'"v":2')),
    "signature, then another key's": lambda r: bad_signature(r, 0, other_key=True),
    "another key's": lambda r: r._replace(signatures=r.signatures.replace(b'"keyid":"',
                                                                          b'"keyid":"0', 1)),
}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.dictionaries(st.integers(0, 23), st.sampled_from(sorted(DAMAGES)), max_size=3),
       swap=st.none() | st.integers(0, 22), lo=st.sampled_from([0, 8, 16]),
       run=st.sampled_from([1, 3, verify.RUN]))
def test_signatures_checked_together_say_what_one_pass_says(
        sqlite_ledger: Ledger, damage: dict[int, str], swap: int | None, lo: int,
        run: int) -> None:
    """``check_batch`` verifies its rows' signatures in runs, after the rest of each row;
    whatever is wrong where, it stops at the same row, for the same reason, as checking each
    row whole in turn: a bad signature before a bad statement, a bad signature before a wrong
    hash column in the same row, a row out of place before a bad row after it."""
    rows = list(sqlite_ledger.svc.store.rows())
    origin = sqlite_ledger.svc.origin()
    for i, kind in damage.items():
        rows[i] = DAMAGES[kind](rows[i])
    if swap is not None:
        rows[swap], rows[swap + 1] = rows[swap + 1], rows[swap]
    given_rows = rows[lo:lo + 8]
    default, verify.RUN = verify.RUN, run
    try:
        b, _nodes = check_batch(given_rows, origin, lo, 8, everything=True)
    finally:
        verify.RUN = default
    checked, tail, error = one_pass(given_rows, origin, lo)
    assert b.full == checked and b.entries == len(checked)
    assert (b.tail.index if b.tail else None, b.error and (b.error.index, str(b.error))) == (
        tail, error)
    assert b.seen == len(checked) + (tail is not None or error is not None)
    if checked:
        assert b.last_hash == checked[-1].entry_hash


# -- both backends: the workers read rows and nodes with the driver alone ---------------------

@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_workers_on_each_backend(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    db = str(tmp_path / "coi.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    led = make_ledger(db, tmp_path / "coi.logkey", users=("alice",))
    led.note(10, witness=None)
    try:
        assert same_everywhere(led.svc, monkeypatch) == led.svc.verify().root
        drop_guards(led.svc.engine)
        mutate(led.svc.engine, "tree_node", "hash", "bitflip", (1, 3))
        assert same_everywhere(led.svc, monkeypatch) == (
            7, "entry 7: stored tree node (level 1, index 3) is wrong")
        mutate(led.svc.engine, "ledger_entry", "signatures", "bitflip", (5,))
        got = same_everywhere(led.svc, monkeypatch)
        assert isinstance(got, tuple) and got[0] == 5
    finally:
        led.svc.engine.dispose()


def test_a_worker_that_fails_is_reported(sqlite_ledger: Ledger,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that cannot open the database fails the verification loudly (not as a
    verification error about the ledger)."""
    monkeypatch.setattr(verifying, "PARENT_CHECKS", False)
    monkeypatch.setattr(verifying, "BATCH", 8)
    svc = sqlite_ledger.svc
    head = svc.store.head()
    assert head is not None
    nowhere = DriverSource(DatabaseUrl.parse("sqlite:////nonexistent/dir/coi.db"))
    here = svc.db.reader_source().open()  # this process reads the ledger; the worker cannot
    try:
        with pytest.raises(RuntimeError, match=r"(?s)verification worker failed.*unable to open"):
            verifying.verify_batches(LedgerVerifier(head.origin), here, nowhere,
                                     upto=head.size, jobs=2)
    finally:
        here.close()


def test_workers_answer_everything_then_exit_cleanly(sqlite_ledger: Ledger,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker answers every batch it was given, then exits at once with status 0 (it
    skips the interpreter's shutdown: nothing it holds needs one)."""
    monkeypatch.setattr(verifying, "PARENT_CHECKS", False)
    monkeypatch.setattr(verifying, "BATCH", 8)
    codes: list[int | None] = []
    reap = verifying._Worker.reap

    def reaped(w: verifying._Worker) -> None:
        reap(w)
        codes.append(w.proc.returncode)

    monkeypatch.setattr(verifying._Worker, "reap", reaped)
    assert sqlite_ledger.svc.verify(jobs=3).root == sqlite_ledger.svc.verify().root
    assert codes == [0, 0]


def test_the_callers_collector_is_left_alone(tampered: Ledger,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification never switches the calling process's cyclic garbage collector (a UI runs
    in it): on while every batch is checked, here and with workers, and off throughout if the
    caller turned it off; its thresholds untouched."""
    monkeypatch.setattr(verifying, "FIRST_BATCH", 2)
    monkeypatch.setattr(verifying, "BATCH", 4)
    thresholds = gc.get_threshold()
    for enabled in (True, False):
        seen: list[bool] = []

        def note(_done: int, _upto: int, seen: list[bool] = seen) -> None:
            seen.append(gc.isenabled())

        (gc.enable if enabled else gc.disable)()
        try:
            for jobs in (1, 2):
                tampered.svc.verify(jobs=jobs, progress=note)
                assert gc.isenabled() is enabled
        finally:
            gc.enable()
        assert len(seen) > 4 and set(seen) == {enabled}
    assert gc.get_threshold() == thresholds
    mutate(tampered.svc.engine, "ledger_entry", "statement", "bitflip", (5,))
    with pytest.raises(VerificationError):
        tampered.svc.verify(jobs=2)
    assert gc.isenabled()
