"""The tamper matrix: change anything stored and ``verify`` must fail, and say where.

Every column of every row of ``ledger_entry`` and ``tree_node``, plus ``ledger_head`` and
``checkpoint``, is mutated with the append-only triggers out of the way (SQLite: ``DROP
TRIGGER``; PostgreSQL: ``ALTER TABLE … DISABLE TRIGGER ALL``), then ``LedgerService.verify``
must raise ``VerificationError``:

* an entry row → ``err.index`` is that row's index;
* a tree node (level, idx) → ``err.index`` is the last leaf of the node's range,
  ``((idx + 1) << level) - 1``: the entry whose append completes the node;
* the head and checkpoints → a ``VerificationError`` (the head and checkpoints are about the
  ledger as a whole).

Mutations: ``bitflip`` (one bit of the value: the low bit of a number, a bit of a hash's bytes,
of a text's last character, of a blob's middle byte; key columns flip a high bit so the row
moves instead of colliding with its neighbour), ``other`` (another row's value), ``spaces`` and
``reordered`` (the statement or signatures JSON re-encoded non-canonically: same value, other
bytes), and ``null``. Which apply where:

* ``null`` on SQLite: every column is NOT NULL and SQLite cannot drop that constraint, so the
  database itself refuses it (``test_sqlite_refuses_null``); on PostgreSQL the matrix drops
  NOT NULL from every non-key column first and NULL is one more mutation.
* ``other`` on a UNIQUE or key column (``idx``, ``prev_hash``, ``entry_hash``) would give two
  rows the same value: the database refuses it (``test_unique_columns_refuse_copies``); the
  structural tests below rebuild the table without its constraints to show that ``verify``
  catches duplicates anyway.

SQLite runs the matrix on a private file copy of the 24-entry template ledger per case; the
PostgreSQL matrix (marked ``postgres``) runs on one 7-entry ledger per module, reverting each
mutation afterwards and checking that the ledger verifies again.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from coi.ledger import merkle, note
from coi.ledger.clock import FixedClock
from coi.ledger.errors import VerificationError
from coi.service.ledger import LedgerService, Party
from tests.conftest import PG_ENV, Ledger, make_ledger, postgres_server

SQLITE_SIZE = 24  # the conftest template: genesis, 3 enrolments, 20 notes
PG_SIZE = 7  # genesis, 1 enrolment, 5 notes
CHECKPOINT_SIZES = (10,)  # besides the one at the head (SQLite)
PG_CHECKPOINT_SIZES = (3,)

KEYS = {
    "ledger_entry": ("idx",),
    "tree_node": ("level", "idx"),
    "ledger_head": ("id",),
    "checkpoint": ("size",),
}
ENTRY_COLUMNS = ("idx", "prev_hash", "entry_hash", "time_ms", "type", "subject", "signer",
                 "statement", "signatures")
UNIQUE_ENTRY_COLUMNS = ("idx", "prev_hash", "entry_hash")
HEX_COLUMNS = ("prev_hash", "entry_hash", "last_hash")
JSON_COLUMNS = ("statement", "signatures")
HIGH_BIT = {("ledger_entry", "idx"): 1 << 20, ("tree_node", "idx"): 1 << 20,
            ("tree_node", "level"): 1 << 4}


def tree_nodes(size: int) -> list[tuple[int, int]]:
    """Every complete subtree stored for a tree of ``size`` leaves, as (level, idx)."""
    return [(level, idx) for level in range(size.bit_length())
            for idx in range(size >> level)]


# -- mutations -------------------------------------------------------------------------------

def _flip(table: str, col: str, v: Any) -> Any:
    if isinstance(v, int):
        return v ^ HIGH_BIT.get((table, col), 1)
    if isinstance(v, str) and col in HEX_COLUMNS:
        b = bytearray(bytes.fromhex(v))
        b[0] ^= 0x01
        return b.hex()
    if isinstance(v, str):
        return v[:-1] + chr(ord(v[-1]) ^ 0x01)
    b = bytearray(v)
    b[len(b) // 2] ^= 0x01
    return bytes(b)


def _reordered(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _reordered(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [_reordered(x) for x in obj]
    return obj


def mutated_value(kind: str, table: str, col: str, row: dict[str, Any],
                  rows: list[dict[str, Any]]) -> Any:
    v = row[col]
    if kind == "bitflip":
        return _flip(table, col, v)
    if kind == "other":
        keys = KEYS[table]
        others = [r for r in rows if r[col] != v]
        # the nearest row after this one (wrapping), so each case is deterministic
        after = [r for r in others if [r[k] for k in keys] > [row[k] for k in keys]]
        return bytes(after[0][col] if after else others[0][col]) \
            if isinstance(v, bytes | memoryview) else (after[0][col] if after else others[0][col])
    if kind == "null":
        return None
    obj = json.loads(bytes(v))
    if kind == "spaces":
        out = json.dumps(obj, separators=(", ", ": "), ensure_ascii=False).encode()
    elif kind == "reordered":
        out = json.dumps(_reordered(obj), separators=(",", ":"), ensure_ascii=False).encode()
    else:
        raise AssertionError(kind)
    assert out != bytes(v) and json.loads(out) == obj  # same JSON value, other bytes
    return out


def entry_mutations(*, null: bool) -> list[tuple[str, str]]:
    out = []
    for col in ENTRY_COLUMNS:
        kinds = ["bitflip"]
        if col not in UNIQUE_ENTRY_COLUMNS:
            kinds.append("other")
        if col in JSON_COLUMNS:
            kinds += ["spaces", "reordered"]
        if null and col != "idx":
            kinds.append("null")
        out += [(col, k) for k in kinds]
    return out


def node_mutations(*, null: bool) -> list[tuple[str, str]]:
    return [("level", "bitflip"), ("idx", "bitflip"), ("hash", "bitflip"), ("hash", "other")] + (
        [("hash", "null")] if null else [])


HEAD_MUTATIONS = [(c, "bitflip") for c in
                  ("id", "origin", "size", "root", "last_hash", "last_time_ms")] + [
    ("size", "other"), ("root", "other"), ("last_hash", "other")]
HEAD_NULLS = [(c, "null") for c in ("origin", "size", "root", "last_hash", "last_time_ms")]
CHECKPOINT_MUTATIONS = [("size", "bitflip"), ("note", "bitflip"), ("note", "other")]
CHECKPOINT_NULLS = [("note", "null")]


# -- database helpers ------------------------------------------------------------------------

def q(name: str) -> str:
    return f'"{name}"'


def table_rows(engine: Engine, table: str) -> list[dict[str, Any]]:
    order = ", ".join(q(k) for k in KEYS[table])
    with engine.connect() as c:
        result = c.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))
        rows = [dict(r._mapping) for r in result]
    for r in rows:
        for k, v in r.items():
            if isinstance(v, memoryview):
                r[k] = bytes(v)
    return rows


def set_cell(engine: Engine, table: str, key: dict[str, Any], col: str, value: Any) -> None:
    where = " AND ".join(f"{q(k)} = :k_{k}" for k in key)
    with engine.begin() as c:
        c.execute(text(f"UPDATE {table} SET {q(col)} = :v WHERE {where}"),
                  {"v": value, **{f"k_{k}": v for k, v in key.items()}})


def execute(engine: Engine, *statements: str, params: dict[str, Any] | None = None) -> None:
    with engine.begin() as c:
        for s in statements:
            c.execute(text(s), params or {})


def drop_guards(engine: Engine) -> None:
    """Take the append-only triggers out of the way, as an attacker with file access would."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as c:
            names = [r[0] for r in c.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))]
        execute(engine, *[f"DROP TRIGGER {n}" for n in names])
    else:
        execute(engine, *[f"ALTER TABLE {t} DISABLE TRIGGER ALL" for t in KEYS])


def add_checkpoints(led: Ledger, sizes: tuple[int, ...] = CHECKPOINT_SIZES) -> list[str]:
    """Signed checkpoints at ``sizes`` (as if signed back then) and at the head."""
    svc = led.svc
    origin = svc.origin()
    out = []
    for size in sizes:
        body = note.format_checkpoint(origin, size, svc.root_at(size))
        signed = note.sign_note(body, origin, svc.log_key())
        svc.store.save_checkpoint(size, signed)
        out.append(signed)
        led.clock.advance(1000)
    out.append(svc.checkpoint())
    return out


def expect_failure(svc: LedgerService, table: str, row: dict[str, Any],
                   **verify_args: Any) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        svc.verify(**verify_args)
    err = info.value
    if table == "ledger_entry":
        assert err.index == row["idx"], err
    elif table == "tree_node":
        first = row["idx"] << row["level"]
        last = first + (1 << row["level"]) - 1
        assert err.index == last, err
    return err


def mutate(engine: Engine, table: str, col: str, kind: str, key: tuple[int, ...]
           ) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Apply one mutation; return (original row, key of the mutated row, new value)."""
    rows = table_rows(engine, table)
    keys = KEYS[table]
    row = next(r for r in rows if tuple(r[k] for k in keys) == key)
    new = mutated_value(kind, table, col, row, rows)
    assert new != row[col]
    where = {k: row[k] for k in keys}
    set_cell(engine, table, where, col, new)
    after = dict(where)
    if col in keys:
        after[col] = new
    return row, after, new


# -- SQLite: one private copy of the template ledger per case --------------------------------

def _copy_files(src: str, dst: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(dst + suffix).unlink(missing_ok=True)
        if Path(src + suffix).exists():
            shutil.copy(src + suffix, dst + suffix)


@pytest.fixture(scope="module")
def _prepared(_template_ledger: Ledger, tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """The template ledger plus checkpoints, with its triggers dropped: copied for each case."""
    d = tmp_path_factory.mktemp("tamper")
    _template_ledger.svc.engine.dispose()
    _copy_files(_template_ledger.db, str(d / "coi.db"))
    shutil.copy(str(_template_ledger.log_key), d / "coi.db.logkey")
    clock = FixedClock(_template_ledger.clock.now_ms())
    led = Ledger(svc=LedgerService.open(str(d / "coi.db"), str(d / "coi.db.logkey"), clock=clock),
                 clock=clock, people=dict(_template_ledger.people), db=str(d / "coi.db"),
                 log_key=d / "coi.db.logkey")
    add_checkpoints(led)
    assert led.svc.store.head().size == SQLITE_SIZE  # type: ignore[union-attr]
    drop_guards(led.svc.engine)
    execute(led.svc.engine, "PRAGMA wal_checkpoint(TRUNCATE)")
    led.svc.engine.dispose()
    return led


@pytest.fixture
def sample(_prepared: Ledger, tmp_path: Path) -> Iterator[Ledger]:
    db = str(tmp_path / "coi.db")
    _copy_files(_prepared.db, db)
    clock = FixedClock(_prepared.clock.now_ms())
    led = Ledger(svc=LedgerService.open(db, str(_prepared.log_key), clock=clock), clock=clock,
                 people=_prepared.people, db=db, log_key=_prepared.log_key)
    yield led
    led.svc.engine.dispose()


def test_clean_sample_verifies(sample: Ledger) -> None:
    result = sample.svc.verify()
    assert result.size == SQLITE_SIZE
    assert sample.svc.verify(jobs=2).root == result.root


@pytest.mark.parametrize("index", range(SQLITE_SIZE))
@pytest.mark.parametrize(("col", "kind"), entry_mutations(null=False))
def test_entry_cell(sample: Ledger, col: str, kind: str, index: int) -> None:
    row, _, _ = mutate(sample.svc.engine, "ledger_entry", col, kind, (index,))
    expect_failure(sample.svc, "ledger_entry", row)


@pytest.mark.parametrize("node", tree_nodes(SQLITE_SIZE), ids=lambda n: f"L{n[0]}-{n[1]}")
@pytest.mark.parametrize(("col", "kind"), node_mutations(null=False))
def test_tree_node_cell(sample: Ledger, col: str, kind: str, node: tuple[int, int]) -> None:
    row, _, _ = mutate(sample.svc.engine, "tree_node", col, kind, node)
    expect_failure(sample.svc, "tree_node", row)


@pytest.mark.parametrize("index", [0, 3, SQLITE_SIZE - 1])
def test_proofs_at_the_head_are_checked_against_its_root(sample: Ledger, index: int) -> None:
    """A changed node on a proof's path: the service hands out no proof at the head's size
    (it would prove membership in a tree whose root neither the head nor any checkpoint
    signs)."""
    svc = sample.svc
    size = SQLITE_SIZE
    level, idx = merkle.inclusion_plan(index, size)[-1]  # the sibling nearest the root
    assert svc.prove_inclusion(index)["size"] == size
    set_cell(svc.engine, "tree_node", {"level": level, "idx": idx}, "hash", bytes(32))
    with pytest.raises(VerificationError, match="inclusion proof"):
        svc.prove_inclusion(index)


@pytest.mark.parametrize("old", [1, 5, SQLITE_SIZE - 1])
def test_consistency_proofs_to_the_head_are_checked_against_its_root(sample: Ledger,
                                                                     old: int) -> None:
    svc = sample.svc
    level, idx = next(n for n in merkle.consistency_plan(old, SQLITE_SIZE)
                      if n not in merkle.frontier_nodes(old))  # a node the old root lacks
    assert svc.prove_consistency(old)["new_size"] == SQLITE_SIZE
    set_cell(svc.engine, "tree_node", {"level": level, "idx": idx}, "hash", bytes(32))
    with pytest.raises(VerificationError, match="consistency proof"):
        svc.prove_consistency(old)


@pytest.mark.parametrize(("col", "kind"), HEAD_MUTATIONS)
def test_head_cell(sample: Ledger, col: str, kind: str) -> None:
    if kind == "other":  # the head is one row: "another row's value" = a value of another state
        rows = table_rows(sample.svc.engine, "ledger_entry")
        other = {"size": 13, "root": sample.svc.root_at(13),
                 "last_hash": rows[12]["entry_hash"]}[col]
        set_cell(sample.svc.engine, "ledger_head", {"id": 1}, col, other)
    else:
        mutate(sample.svc.engine, "ledger_head", col, kind, (1,))
    with pytest.raises(VerificationError):
        sample.svc.verify()


@pytest.mark.parametrize(("col", "kind"), CHECKPOINT_MUTATIONS)
@pytest.mark.parametrize("size", [*CHECKPOINT_SIZES, SQLITE_SIZE])
def test_checkpoint_cell(sample: Ledger, col: str, kind: str, size: int) -> None:
    mutate(sample.svc.engine, "checkpoint", col, kind, (size,))
    with pytest.raises(VerificationError):
        sample.svc.verify()


@pytest.mark.parametrize("jobs", [2])
@pytest.mark.parametrize(("col", "index"), [("statement", 13), ("signatures", 2)])
def test_parallel_verify_names_the_same_index(sample: Ledger, col: str, index: int,
                                              jobs: int, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    from coi.verify_pool import pool as verifying

    row, _, _ = mutate(sample.svc.engine, "ledger_entry", col, "bitflip", (index,))
    here = expect_failure(sample.svc, "ledger_entry", row)
    # batches of 8, each sent to a worker (more on this in test_verify_batches)
    monkeypatch.setattr(verifying, "BATCH", 8)
    monkeypatch.setattr(verifying, "PARENT_CHECKS", False)
    there = expect_failure(sample.svc, "ledger_entry", row, jobs=jobs)
    assert str(there) == str(here)


@pytest.mark.parametrize(("table", "col"), [(t, c) for t, cols in {
    "ledger_entry": ENTRY_COLUMNS, "tree_node": ("level", "idx", "hash"),
    "ledger_head": ("origin", "size", "root", "last_hash", "last_time_ms"),
    "checkpoint": ("note",)}.items() for c in cols])
def test_sqlite_refuses_null(sample: Ledger, table: str, col: str) -> None:
    """NOT NULL cannot be dropped on SQLite: the NULL mutation is refused by the database (the
    row id ``ledger_entry.idx`` refuses anything but an integer: "datatype mismatch")."""
    key = {k: table_rows(sample.svc.engine, table)[0][k] for k in KEYS[table]}
    with pytest.raises(DBAPIError, match="NOT NULL|datatype mismatch"):
        set_cell(sample.svc.engine, table, key, col, None)
    sample.svc.verify()


@pytest.mark.parametrize("col", UNIQUE_ENTRY_COLUMNS)
def test_unique_columns_refuse_copies(sample: Ledger, col: str) -> None:
    """Another row's value in idx, prev_hash or entry_hash: refused (no fork can be stored)."""
    rows = table_rows(sample.svc.engine, "ledger_entry")
    with pytest.raises(DBAPIError, match="UNIQUE"):
        set_cell(sample.svc.engine, "ledger_entry", {"idx": 5}, col, rows[9][col])
    sample.svc.verify()


# -- SQLite: rows deleted, inserted, reordered, duplicated -----------------------------------

def _insert_entry(engine: Engine, row: dict[str, Any]) -> None:
    cols = list(row)
    execute(engine, f"INSERT INTO ledger_entry ({', '.join(q(c) for c in cols)}) "
                    f"VALUES ({', '.join(':' + c for c in cols)})", params=row)


def _foreign_row(led: Ledger, tmp_path: Path) -> dict[str, Any]:
    """A genuinely signed entry 24 from a copy of the same ledger that went another way."""
    other = tmp_path / "other"
    other.mkdir()
    led.svc.engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        if Path(led.db + suffix).exists():
            shutil.copy(led.db + suffix, str(other / "coi.db") + suffix)
    svc = LedgerService.open(str(other / "coi.db"), str(led.log_key), clock=led.clock)
    from coi.service.ledger import Party

    e = svc.append("test.note", "OTHER", {"n": 99}, [Party(led.people["carol"], "authored")])
    row = table_rows(svc.engine, "ledger_entry")[e.index]
    svc.engine.dispose()
    return row


@pytest.mark.req("AUDIT-TRAIL")
@pytest.mark.parametrize("index", [0, 1, 7, 16, SQLITE_SIZE - 1])
def test_row_deleted(sample: Ledger, index: int) -> None:
    execute(sample.svc.engine, f"DELETE FROM ledger_entry WHERE idx = {index}")
    expect_failure(sample.svc, "ledger_entry", {"idx": index})


def test_rows_deleted_in_a_run_longer_than_a_batch(sample: Ledger) -> None:
    execute(sample.svc.engine, "DELETE FROM ledger_entry WHERE idx BETWEEN 3 AND 9")
    expect_failure(sample.svc, "ledger_entry", {"idx": 3})


def test_row_appended_behind_the_service(sample: Ledger, tmp_path: Path) -> None:
    """A validly signed entry 24 stored without its tree nodes and head: caught at 24."""
    _insert_entry(sample.svc.engine, _foreign_row(sample, tmp_path))
    expect_failure(sample.svc, "ledger_entry", {"idx": SQLITE_SIZE})


@pytest.mark.parametrize("at", [SQLITE_SIZE + 5, 5000, 2**40])
def test_row_stored_beyond_the_head(sample: Ledger, tmp_path: Path, at: int) -> None:
    """A row stored far past the tail is reported, however far (and promptly)."""
    row = _foreign_row(sample, tmp_path)
    row["idx"] = at
    _insert_entry(sample.svc.engine, row)
    with pytest.raises(VerificationError) as info:
        sample.svc.verify()
    assert info.value.index is not None and info.value.index >= SQLITE_SIZE


@pytest.mark.req("TAMPER-DETECTION")
@pytest.mark.parametrize("index", [1, 12, SQLITE_SIZE - 1])
def test_row_inserted_in_the_middle(sample: Ledger, tmp_path: Path, index: int) -> None:
    """Later rows shifted up by one and a signed entry put in the gap: caught at the gap."""
    row = _foreign_row(sample, tmp_path)
    for k in range(SQLITE_SIZE - 1, index - 1, -1):
        execute(sample.svc.engine, f"UPDATE ledger_entry SET idx = {k + 1} WHERE idx = {k}")
    row["idx"] = index
    _insert_entry(sample.svc.engine, row)
    expect_failure(sample.svc, "ledger_entry", {"idx": index})


@pytest.mark.req("TAMPER-DETECTION")
@pytest.mark.parametrize(("i", "j"), [(0, 1), (4, 5), (6, 17), (22, 23)])
def test_rows_swapped(sample: Ledger, i: int, j: int) -> None:
    """Two rows' contents exchanged (reordered): caught at the first of them."""
    rows = table_rows(sample.svc.engine, "ledger_entry")
    execute(sample.svc.engine, f"DELETE FROM ledger_entry WHERE idx IN ({i}, {j})")
    _insert_entry(sample.svc.engine, {**rows[j], "idx": i})
    _insert_entry(sample.svc.engine, {**rows[i], "idx": j})
    expect_failure(sample.svc, "ledger_entry", {"idx": i})


def _without_constraints(engine: Engine) -> None:
    """Rebuild ledger_entry with no key or UNIQUE constraint (an attacker owning the file)."""
    execute(engine,
            "CREATE TABLE loose AS SELECT * FROM ledger_entry",
            "DROP TABLE ledger_entry",
            "ALTER TABLE loose RENAME TO ledger_entry")


@pytest.mark.parametrize(("src", "dst"), [(3, 3), (10, 10), (23, 23), (4, 9), (0, 23)])
def test_row_duplicated(sample: Ledger, src: int, dst: int) -> None:
    """A row stored twice (at its own index or over another's) is caught at the copy."""
    _without_constraints(sample.svc.engine)
    rows = table_rows(sample.svc.engine, "ledger_entry")
    if dst != src:
        execute(sample.svc.engine, f"DELETE FROM ledger_entry WHERE idx = {dst}")
    _insert_entry(sample.svc.engine, {**rows[src], "idx": dst})
    expect_failure(sample.svc, "ledger_entry", {"idx": dst})


# -- tail truncated, old copy restored, history forked: caught against saved checkpoints ---

def _truncate_to(led: Ledger, size: int) -> None:
    """Cut the tail and rewrite the head and tree so the rest is self-consistent."""
    engine = led.svc.engine
    rows = table_rows(engine, "ledger_entry")
    root = led.svc.root_at(size)
    execute(engine,
            f"DELETE FROM ledger_entry WHERE idx >= {size}",
            f"DELETE FROM tree_node WHERE ((idx + 1) << level) > {size}",
            f"DELETE FROM checkpoint WHERE size > {size}")
    set_cell(engine, "ledger_head", {"id": 1}, "size", size)
    set_cell(engine, "ledger_head", {"id": 1}, "root", root)
    set_cell(engine, "ledger_head", {"id": 1}, "last_hash", rows[size - 1]["entry_hash"])
    set_cell(engine, "ledger_head", {"id": 1}, "last_time_ms", rows[size - 1]["time_ms"])


@pytest.mark.parametrize("size", [1, 11, 20, SQLITE_SIZE - 1])
def test_tail_truncated(sample: Ledger, size: int) -> None:
    saved = sample.svc.checkpoint()
    _truncate_to(sample, size)
    assert sample.svc.verify().size == size  # self-consistent: only a kept checkpoint can tell
    with pytest.raises(VerificationError, match="deleted from the tail") as info:
        sample.svc.verify(checkpoints=[saved])
    assert info.value.index == size


@pytest.mark.req("TAMPER-DETECTION")
def test_tail_truncation_caught_by_a_stored_checkpoint_left_behind(sample: Ledger) -> None:
    kept = table_rows(sample.svc.engine, "checkpoint")[-1]
    assert kept["size"] == SQLITE_SIZE
    _truncate_to(sample, 20)
    execute(sample.svc.engine, "INSERT INTO checkpoint (size, note) VALUES (:size, :note)",
            params=kept)
    with pytest.raises(VerificationError, match="deleted from the tail"):
        sample.svc.verify()


@pytest.mark.req("TAMPER-DETECTION")
def test_old_copy_restored(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    led = sqlite_ledger
    led.svc.engine.dispose()
    backup = str(tmp_path / "backup.db")
    _copy_files(led.db, backup)
    led.note(3)
    saved = led.svc.checkpoint()
    led.svc.engine.dispose()
    _copy_files(backup, led.db)
    svc = led.reopen()
    assert svc.verify().size == SQLITE_SIZE  # the old copy is consistent on its own
    with pytest.raises(VerificationError, match="old copy was restored") as info:
        svc.verify(checkpoints=[saved])
    assert info.value.index == SQLITE_SIZE


def forked_copy(led: Ledger, tmp_path: Path) -> LedgerService:
    """A copy of ``led``'s files as they are now, opened on its own (the same log key)."""
    led.svc.engine.dispose()
    fork = str(tmp_path / "fork.db")
    _copy_files(led.db, fork)
    return LedgerService.open(fork, str(led.log_key), clock=led.clock)


def fork_note(led: Ledger, svc: LedgerService, n: int) -> None:
    """Carol appends a note to ``svc`` (a forked copy of ``led``)."""
    svc.append("test.note", "FORK", {"n": n}, [Party(led.people["carol"], "authored")])


def test_forked_copy_caught_by_the_other_copys_checkpoint(sqlite_ledger: Ledger,
                                                          tmp_path: Path) -> None:
    """Two copies of the same ledger that each append entry 24: their checkpoints disagree."""
    led = sqlite_ledger
    svc = forked_copy(led, tmp_path)
    led.note(1)
    saved = led.svc.checkpoint()
    fork_note(led, svc, 1)
    assert svc.verify().size == SQLITE_SIZE + 1
    with pytest.raises(VerificationError, match="history was rewritten") as info:
        svc.verify(checkpoints=[saved])
    assert info.value.index == SQLITE_SIZE


def test_checkpoint_of_another_ledger_is_refused(sample: Ledger, tmp_path: Path) -> None:
    other = make_ledger(str(tmp_path / "o.db"), tmp_path / "o.db.logkey", users=())
    with pytest.raises(VerificationError):
        sample.svc.verify(checkpoints=[other.svc.checkpoint()])


# -- the triggers refuse UPDATE and DELETE, on both backends ---------------------------------

@pytest.fixture
def guarded(backend_db: tuple[str, Path]) -> Iterator[Ledger]:
    db, log_key = backend_db
    led = make_ledger(db, log_key, users=())
    led.svc.checkpoint()
    yield led
    led.svc.engine.dispose()


GUARDED = [("ledger_entry", "subject = 'x'"), ("tree_node", "hash = hash"),
           ("checkpoint", "note = note"), ("user_key", "created_ms = 0")]


@pytest.mark.req("AUDIT-TRAIL")
@pytest.mark.parametrize(("table", "assignment"), GUARDED)
def test_triggers_refuse_update_and_delete(guarded: Ledger, table: str, assignment: str) -> None:
    engine = guarded.svc.engine
    before = table_rows(engine, table) if table in KEYS else None
    with pytest.raises(DBAPIError, match="append-only"):
        execute(engine, f"UPDATE {table} SET {assignment}")
    with pytest.raises(DBAPIError, match="append-only"):
        execute(engine, f"DELETE FROM {table}")
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            execute(engine, f"TRUNCATE {table}")
    if before is not None:
        assert table_rows(engine, table) == before
    guarded.svc.verify()


def test_head_cannot_be_deleted(guarded: Ledger) -> None:
    with pytest.raises(DBAPIError, match="cannot be deleted|append-only"):
        execute(guarded.svc.engine, "DELETE FROM ledger_head")
    guarded.svc.verify()


# -- PostgreSQL: the matrix on one smaller ledger, each mutation reverted afterwards ---------

@dataclass
class PgSample:
    led: Ledger
    checkpoints: list[str]


@pytest.fixture(scope="module")
def pg_sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgSample]:
    server = postgres_server()
    if not server:
        pytest.skip(f"PostgreSQL tests need {PG_ENV}; .ci/run sets it")
    import uuid

    import psycopg

    name = f"coi_tamper_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{server.rsplit('/', 1)[0]}/{name}"
    d = tmp_path_factory.mktemp("pgtamper")
    try:
        led = make_ledger(url, d / "pg.logkey", users=("alice",))
        led.note(PG_SIZE - 2, witness=None)
        cps = add_checkpoints(led, PG_CHECKPOINT_SIZES)
        engine = led.svc.engine
        drop_guards(engine)
        nullable = {"ledger_entry": ENTRY_COLUMNS[1:], "tree_node": ("hash",),
                    "ledger_head": ("origin", "size", "root", "last_hash", "last_time_ms"),
                    "checkpoint": ("note",)}
        execute(engine, *[f"ALTER TABLE {t} ALTER COLUMN {q(c)} DROP NOT NULL"
                          for t, cols in nullable.items() for c in cols])
        assert led.svc.verify().size == PG_SIZE
        yield PgSample(led, cps)
    finally:
        try:
            led.svc.engine.dispose()
        except NameError:
            pass
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_case(pg: PgSample, table: str, col: str, kind: str, key: tuple[int, ...]) -> None:
    svc = pg.led.svc
    row, after, _ = mutate(svc.engine, table, col, kind, key)
    try:
        expect_failure(svc, table, row)
    finally:
        set_cell(svc.engine, table, after, col, row[col])
    svc.verify()  # reverted: clean again


@pytest.mark.postgres
@pytest.mark.parametrize("index", range(PG_SIZE))
@pytest.mark.parametrize(("col", "kind"), entry_mutations(null=True))
def test_pg_entry_cell(pg_sample: PgSample, col: str, kind: str, index: int) -> None:
    _pg_case(pg_sample, "ledger_entry", col, kind, (index,))


@pytest.mark.postgres
@pytest.mark.parametrize("node", tree_nodes(PG_SIZE), ids=lambda n: f"L{n[0]}-{n[1]}")
@pytest.mark.parametrize(("col", "kind"), node_mutations(null=True))
def test_pg_tree_node_cell(pg_sample: PgSample, col: str, kind: str,
                           node: tuple[int, int]) -> None:
    _pg_case(pg_sample, "tree_node", col, kind, node)


@pytest.mark.postgres
@pytest.mark.parametrize(("col", "kind"), [m for m in HEAD_MUTATIONS if m[1] != "other"]
                         + HEAD_NULLS)
def test_pg_head_cell(pg_sample: PgSample, col: str, kind: str) -> None:
    _pg_case(pg_sample, "ledger_head", col, kind, (1,))


@pytest.mark.postgres
@pytest.mark.parametrize(("col", "kind"), CHECKPOINT_MUTATIONS + CHECKPOINT_NULLS)
@pytest.mark.parametrize("size", [*PG_CHECKPOINT_SIZES, PG_SIZE])
def test_pg_checkpoint_cell(pg_sample: PgSample, col: str, kind: str, size: int) -> None:
    _pg_case(pg_sample, "checkpoint", col, kind, (size,))


@pytest.mark.postgres
@pytest.mark.parametrize("index", range(PG_SIZE))
def test_pg_row_deleted(pg_sample: PgSample, index: int) -> None:
    svc = pg_sample.led.svc
    row = table_rows(svc.engine, "ledger_entry")[index]
    execute(svc.engine, f"DELETE FROM ledger_entry WHERE idx = {index}")
    try:
        expect_failure(svc, "ledger_entry", row)
    finally:
        _insert_entry(svc.engine, row)
    svc.verify()


@pytest.mark.postgres
@pytest.mark.parametrize(("i", "j"), [(0, 1), (2, 5), (PG_SIZE - 2, PG_SIZE - 1)])
def test_pg_rows_swapped(pg_sample: PgSample, i: int, j: int) -> None:
    svc = pg_sample.led.svc
    rows = table_rows(svc.engine, "ledger_entry")

    def put(a: dict[str, Any], b: dict[str, Any]) -> None:
        execute(svc.engine, f"DELETE FROM ledger_entry WHERE idx IN ({i}, {j})")
        _insert_entry(svc.engine, {**a, "idx": i})
        _insert_entry(svc.engine, {**b, "idx": j})

    put(rows[j], rows[i])
    try:
        expect_failure(svc, "ledger_entry", {"idx": i})
    finally:
        put(rows[i], rows[j])
    svc.verify()


@pytest.mark.postgres
@pytest.mark.parametrize("index", [0, 3, PG_SIZE - 1])
def test_pg_row_duplicated(pg_sample: PgSample, index: int) -> None:
    """With the key and UNIQUE constraints dropped too, a second copy of a row is caught."""
    svc = pg_sample.led.svc
    rows = table_rows(svc.engine, "ledger_entry")
    constraints = ("pk_ledger_entry", "uq_ledger_entry_prev_hash", "uq_ledger_entry_entry_hash")
    execute(svc.engine, *[f"ALTER TABLE ledger_entry DROP CONSTRAINT {c}" for c in constraints])
    try:
        _insert_entry(svc.engine, rows[index])
        expect_failure(svc, "ledger_entry", {"idx": index})
    finally:
        execute(svc.engine, f"DELETE FROM ledger_entry WHERE idx = {index}")
        _insert_entry(svc.engine, rows[index])
        execute(svc.engine,
                "ALTER TABLE ledger_entry ADD CONSTRAINT pk_ledger_entry PRIMARY KEY (idx)",
                "ALTER TABLE ledger_entry ADD CONSTRAINT uq_ledger_entry_prev_hash "
                "UNIQUE (prev_hash)",
                "ALTER TABLE ledger_entry ADD CONSTRAINT uq_ledger_entry_entry_hash "
                "UNIQUE (entry_hash)")
    svc.verify()


@pytest.mark.postgres
def test_pg_tail_truncated(pg_sample: PgSample) -> None:
    svc = pg_sample.led.svc
    engine = svc.engine
    saved = pg_sample.checkpoints[-1]
    entries, nodes = table_rows(engine, "ledger_entry"), table_rows(engine, "tree_node")
    head, cps = table_rows(engine, "ledger_head")[0], table_rows(engine, "checkpoint")
    _truncate_to(pg_sample.led, 4)
    try:
        assert svc.verify().size == 4
        with pytest.raises(VerificationError, match="deleted from the tail") as info:
            svc.verify(checkpoints=[saved])
        assert info.value.index == 4
    finally:
        execute(engine, "DELETE FROM ledger_entry", "DELETE FROM tree_node",
                "DELETE FROM checkpoint", "DELETE FROM ledger_head")
        for r in entries:
            _insert_entry(engine, r)
        for table, rs in (("tree_node", nodes), ("ledger_head", [head]), ("checkpoint", cps)):
            for r in rs:
                execute(engine, f"INSERT INTO {table} ({', '.join(q(c) for c in r)}) "
                                f"VALUES ({', '.join(':' + c for c in r)})", params=r)
    svc.verify(checkpoints=[saved])


@pytest.mark.parametrize("value", [b"\x01\x02", None], ids=["short", "missing"])
def test_a_damaged_stored_node_is_reported_not_a_crash(sample: Ledger, value: bytes | None,
                                                       tmp_path: Path) -> None:
    """Proofs and exports read stored nodes: one that is not a 32-byte hash, or is gone, is a
    damaged ledger (VerificationError, ExportError: exit 1 with the reason), and no bundle is
    left behind."""
    from coi.service import exporting
    from coi.service.exporting import ExportError, Scope

    svc = sample.svc
    level, idx = merkle.inclusion_plan(3, SQLITE_SIZE)[0]
    if value is None:
        execute(svc.engine, f"DELETE FROM tree_node WHERE level = {level} AND idx = {idx}")
    else:
        set_cell(svc.engine, "tree_node", {"level": level, "idx": idx}, "hash", value)
    fault = "must be 32 bytes" if value is not None else "was not given"
    with pytest.raises(VerificationError, match=f"stored Merkle tree is damaged.*{fault}"):
        svc.prove_inclusion(3)
    with pytest.raises(VerificationError, match=f"stored Merkle tree is damaged.*{fault}"):
        svc.prove_consistency(3)
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "product.coi-bundle"  # a product's bundle carries inclusion proofs
    with pytest.raises(ExportError, match=f"stored Merkle tree is damaged.*{fault}"):
        exporting.export(svc, Scope("coi", coi="CHA99992600001A"), out)
    assert list(folder.iterdir()) == []


def test_a_statement_stored_as_text_is_reported_not_a_crash(sqlite_ledger: Ledger) -> None:
    """A damaged row whose blob column holds text is named by verify, with every reader."""
    sqlite_ledger.svc.engine.dispose()
    con = sqlite3.connect(sqlite_ledger.db)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f'DROP TRIGGER "{name}"')
    con.execute("UPDATE ledger_entry SET statement = CAST(statement AS TEXT) WHERE idx = 7")
    con.commit()
    con.close()
    for jobs in (1, 2):
        with pytest.raises(VerificationError) as e:
            sqlite_ledger.reopen().verify(jobs=jobs)
        assert e.value.index == 7 and "not bytes" in e.value.reason
