"""Whole-ledger verification over a store, in one process or several.

Rows are read in batches of ``BATCH`` (a power of two) by index range, each batch one complete
subtree of the tree. Each batch is checked by ``check_batch`` where it is read — in a worker
process with its own connection when ``jobs > 1`` — which does the costly part (parsing,
canonical bytes, columns, signatures, entry hashes), the chain and time between the batch's own
rows and the batch's tree nodes, compared there with the stored ones; it sends back a small
``Batch`` (no statements but the few the registry must see). This process feeds the batches in
index order to the ``LedgerVerifier`` (the links to the batch before, keys, process rules, the
tree above the batches), compares the tree nodes above each batch with the stored ones, checks
each stored and each given checkpoint against the rebuilt root at its size, and finally the
head. Memory stays bounded: at most ``2 × jobs`` batches are in flight.
"""

from __future__ import annotations

import multiprocessing
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from sqlalchemy import Engine

from coi.db.engine import make_engine
from coi.db.repo import Head, LedgerStore
from coi.ledger import note
from coi.ledger.errors import VerificationError
from coi.ledger.verify import Batch, EntryHook, LedgerVerifier, VerifiedLog, check_batch

BATCH = 2048
"""Rows per batch: a power of two, so that each batch is one complete subtree of the tree."""

HEAD_START = True
"""With ``jobs > 1``, check batches in this process while the workers start (tests turn this
off to send every batch to a worker)."""

_worker_store: LedgerStore | None = None
_worker_origin = ""

Checked = tuple[Batch, VerificationError | None]
"""A batch's ``check_batch`` result and the first stored tree node inside it that is wrong."""


def _init_worker(url: str, origin: str) -> None:
    global _worker_store, _worker_origin
    _worker_store = LedgerStore(make_engine(url))
    _worker_origin = origin


def _check_range(lo: int, hi: int, span: int, sizes: list[int], everything: bool) -> Checked:
    """Worker: check rows [lo, hi) of the batch at ``lo`` and the tree nodes inside it."""
    assert _worker_store is not None
    return _check_rows(_worker_store, _worker_origin, lo, hi, span, sizes, everything)


def _check_rows(store: LedgerStore, origin: str, lo: int, hi: int, span: int,
                sizes: list[int], everything: bool) -> Checked:
    with store.engine.connect() as conn:
        b, nodes = check_batch(store.rows(lo, hi, batch=hi - lo, conn=conn), origin, lo, span,
                               sizes=sizes, everything=everything)
        if b.tail is not None or b.error is not None:
            return b, None  # the verifier stops at that row, before the nodes are compared
        return b, _compare_nodes(store, conn, nodes)


def _batches(store: LedgerStore, origin: str, url: str, upto: int, jobs: int,
             sizes: list[int], everything: bool) -> Iterator[Checked]:
    # lazy: upto comes from the head, which may have been tampered with
    span = BATCH
    ranges = ((lo, min(lo + span, upto), span,
               sizes[bisect_right(sizes, lo):bisect_right(sizes, lo + span)], everything)
              for lo in range(0, upto, span))
    if jobs <= 1:
        for r in ranges:
            yield _check_rows(store, origin, *r)
        return
    ctx = multiprocessing.get_context("spawn")  # safe from threads (the TUI runs us in one)
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(url, origin)) as pool:
        # Each worker is a fresh interpreter importing coi (a second or more): check batches
        # here meanwhile, in order, until one answers, so jobs > 1 is never slower than 1.
        ready = [pool.submit(int) for _ in range(jobs)]
        it = iter(ranges)
        while HEAD_START and not any(f.done() for f in ready):
            here = next(it, None)
            if here is None:
                break
            yield _check_rows(store, origin, *here)
        pending: deque[Future[Any]] = deque()
        for r in it:
            pending.append(pool.submit(_check_range, *r))
            if len(pending) >= 2 * jobs:
                break
        while pending:
            yield pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_check_range, *nxt))


def verify_store(store: LedgerStore, url: str, head: Head, *, jobs: int = 1,
                 checkpoints: Sequence[str] = (), hook: EntryHook | None = None,
                 progress: Callable[[int, int], None] | None = None) -> VerifiedLog:
    origin = head.origin
    if not all(isinstance(x, int) for x in (head.size, head.last_time_ms)) or not origin:
        raise VerificationError("the ledger's head row is damaged (an empty or malformed column)")
    # Read as far as the head says; rows it does not account for are looked for afterwards (a
    # tampered index or head size can be huge: never enumerate up to it).
    upto = head.size
    v = LedgerVerifier(origin, hook=hook)
    given = [_parse_given(n, origin) for n in checkpoints]
    stored = store.checkpoints()
    for size, text in stored:
        if not isinstance(text, str):
            raise VerificationError(f"stored checkpoint at size {size} is empty")
    sizes = sorted({g.size for g in given} | {size for size, _text in stored})

    def at_size(n: int, root: bytes) -> None:
        _at_size(n, root, given, stored)

    with store.engine.connect() as conn:
        for b, bad_node in _batches(store, origin, url, upto, jobs, sizes, hook is not None):
            above = v.feed_batch(b, at_size)
            if b.seen == 0:
                break
            if bad_node is not None:
                raise bad_node
            bad_node = _compare_nodes(store, conn, above)
            if bad_node is not None:
                raise bad_node
            if progress is not None:
                progress(v.size, upto)
        extra = _first_index_from(store.engine, v.size)
        if extra is not None and v.size < head.size:
            raise VerificationError(
                f"entries {v.size} to {min(extra, head.size) - 1} are missing", index=v.size)
        if extra is not None:
            raise VerificationError(
                f"a row is stored at index {extra}, beyond the head's {head.size} entries "
                "(inserted behind the ledger's back, or the head was rewound)", index=extra)
        result = v.finish(head_size=head.size, head_root=head.root)
        if head.last_hash != _last_hash(v) or head.last_time_ms != _last_time(v):
            raise VerificationError("the head's last entry hash or time is not the last entry's")
        expected_nodes = sum(result.size >> level for level in range(result.size.bit_length()))
        stored_nodes = store.count_nodes(conn)
        if stored_nodes != expected_nodes:
            raise VerificationError(f"the tree holds {stored_nodes} nodes where a tree of "
                                    f"{result.size} entries has {expected_nodes}")
    # Checkpoints: every stored one, and every one given, must match the rebuilt tree.
    g = result.registry.genesis
    assert g is not None
    verifier = note.parse_verifier_key(g.log_key)
    for size, text in stored:
        cp = _open(text, verifier, f"stored checkpoint at size {size}")
        if cp.size != size or cp.origin != origin:
            raise VerificationError(f"stored checkpoint row {size} holds a checkpoint of size "
                                    f"{cp.size} for {cp.origin!r}")
        if size > result.size:
            raise VerificationError(
                f"a checkpoint was signed at size {size} but only {result.size} entries are "
                "stored: entries were deleted from the tail or an old copy was restored",
                index=result.size)
    for text in checkpoints:
        cp = _open(text, verifier, "the given checkpoint")
        if cp.origin != origin:
            raise VerificationError(f"the given checkpoint is for log {cp.origin!r}")
        if cp.size > result.size:
            raise VerificationError(
                f"the given checkpoint is for {cp.size} entries but only {result.size} are "
                "stored: entries were deleted from the tail or an old copy was restored",
                index=result.size)
    return result


class _Given:
    def __init__(self, text: str, size: int, root: bytes) -> None:
        self.text, self.size, self.root = text, size, root


def _parse_given(text: str, origin: str) -> _Given:
    body = text.split("\n\n", 1)[0] + "\n"
    try:
        cp = note.parse_checkpoint(body)
    except (VerificationError, ValueError) as e:
        raise VerificationError(f"the given checkpoint cannot be read: {e}") from None
    return _Given(text, cp.size, cp.root)


def _at_size(n: int, root: bytes, given: list[_Given], stored: list[tuple[int, str]]) -> None:
    """The given and stored checkpoints of size ``n`` match the rebuilt ``root`` at ``n``."""
    for g in given:
        if g.size == n and root != g.root:
            raise VerificationError(
                f"the ledger's first {n} entries do not match the checkpoint of size {n}: "
                "history was rewritten (or the checkpoint is from another copy)", index=n - 1)
    for size, text in stored:
        if size == n:
            body = text.split("\n\n", 1)[0] + "\n"
            try:
                cp = note.parse_checkpoint(body)
            except (VerificationError, ValueError):
                raise VerificationError(f"stored checkpoint at size {size} cannot be read"
                                        ) from None
            if cp.root != root:
                raise VerificationError(
                    f"stored checkpoint at size {n} does not match the first {n} entries",
                    index=n - 1)


def _open(text: str, verifier: note.NoteVerifier, what: str) -> note.Checkpoint:
    try:
        opened = note.open_note(text, [verifier])
        return note.parse_checkpoint(opened.text)
    except VerificationError as e:
        raise VerificationError(f"{what}: {e.reason}") from None


def _last_hash(v: LedgerVerifier) -> bytes:
    return v._prev  # noqa: SLF001 (same package family; the verifier keeps it)


def _last_time(v: LedgerVerifier) -> int:
    return v._time  # noqa: SLF001 (as above)


def _first_index_from(engine: Engine, start: int) -> int | None:
    """The lowest stored index at or after ``start``, if any."""
    from sqlalchemy import func, select

    from coi.db.repo import E

    with engine.connect() as c:
        m = c.execute(select(func.min(E.c.idx)).where(E.c.idx >= start)).scalar()
    return None if m is None else int(m)


def _compare_nodes(store: LedgerStore, conn: Any, nodes: list[tuple[int, int, bytes]]
                   ) -> VerificationError | None:
    """The first of ``nodes`` (lowest level first, then lowest index) whose stored copy is
    missing or differs, as the error to raise; None if all are stored as rebuilt."""
    by_level: dict[int, list[tuple[int, bytes]]] = {}
    for level, idx, h in nodes:
        by_level.setdefault(level, []).append((idx, h))
    for level in sorted(by_level):
        items = by_level[level]
        items.sort()
        lo, hi = items[0][0], items[-1][0] + 1
        got = store.nodes_in_range(level, lo, hi, conn)
        if got == items:
            continue
        stored = dict(got)
        for idx, h in items:
            s = stored.get(idx)
            if s != h:
                first_leaf = idx << level
                what = "missing" if s is None else "wrong"
                return VerificationError(
                    f"stored tree node (level {level}, index {idx}) is {what}",
                    index=first_leaf + (1 << level) - 1)
    return None
