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

import pickle
import queue
import subprocess
import sys
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine

from coi.db.repo import Head, LedgerStore
from coi.ledger import note
from coi.ledger.entry import StoredEntry
from coi.ledger.errors import VerificationError
from coi.ledger.verify import EntryHook, LedgerVerifier, VerifiedLog
from coi.service.verify_worker import BOOT, READY, Checked, check_range, compare_nodes

BATCH = 1024
"""Rows per batch, at most: a power of two, so that each batch is one complete subtree."""

FIRST_BATCH = 128
"""The first batches are smaller (doubling up to ``BATCH`` as alignment allows), so that this
process hands over to the workers soon after they start, and the last worker to finish has
little left to do."""

HEAD_START = True
"""With ``jobs > 1``, check batches in this process while the workers start (tests turn this
off to send every batch to a worker)."""

class _StoreReader:
    """This process's reads, on the verification's one connection."""

    def __init__(self, store: LedgerStore, conn: Connection) -> None:
        self.store, self.conn = store, conn

    def rows(self, lo: int, hi: int) -> Iterator[StoredEntry]:
        return self.store.rows(lo, hi, batch=hi - lo, conn=self.conn)

    def nodes_in_range(self, level: int, lo: int, hi: int) -> list[tuple[int, bytes | None]]:
        return self.store.nodes_in_range(level, lo, hi, self.conn)


class _Worker:
    """A ``verify_worker`` child process and the batches it has been given.

    A thread reads its answers as they come (so its pipe never fills, and "has it started?"
    needs no polling of a pipe, which not every platform can do)."""

    def __init__(self, url: str, origin: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", BOOT], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.given = 0  # batches sent, not yet answered
        self.ready = False
        self._answers: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, name="coi-verify-reader",
                                        daemon=True)
        self._reader.start()
        self._send(list(sys.path))
        self._send((url, origin))

    def _read(self) -> None:
        try:
            while True:
                self._answers.put((True, pickle.load(self.stdout)))
        except Exception:  # EOF (it exited) or a broken pipe: answer() reports it
            self._answers.put((False, None))

    def _send(self, obj: Any) -> None:
        self.stdin.write(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        self.stdin.flush()

    def started(self) -> bool:
        """Has it said anything yet (that it is ready, or that it failed)?"""
        if not self.ready:
            self.ready = not self._answers.empty()
        return self.ready

    def give(self, job: tuple[Any, ...]) -> None:
        self._send(job)
        self.given += 1

    def answer(self) -> Checked:
        """The answer to the oldest batch given (waits for it)."""
        while True:
            ok, msg = self._answers.get()
            if not ok:
                raise RuntimeError("a verification worker stopped unexpectedly (exit code "
                                   f"{self.proc.wait()})")
            if msg == READY:
                self.ready = True
                continue
            self.given -= 1
            status, value = msg
            if status != "ok":
                raise RuntimeError(f"a verification worker failed:\n{value}")
            return value  # type: ignore[no-any-return]

    def stop(self, *, finished: bool) -> None:
        """Tell it to exit (end of its input: it has answered everything) or kill it."""
        try:
            self.stdin.close()
        except OSError:  # it is gone already
            pass
        if not finished:
            self.proc.kill()  # its answers are not wanted: do not wait for them

    def reap(self) -> None:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)  # it ends at the end of the pipe
        self.stdout.close()


def _spans(upto: int, first: int, most: int, jobs: int = 1) -> Iterator[tuple[int, int, int]]:
    """``(lo, hi, span)`` of the batches covering [0, upto): spans are powers of two from
    ``first`` to ``most``, each dividing its ``lo`` (a span doubles once ``lo`` allows it).
    With several workers they shrink again towards the end (to no less than ``first``), so
    that the workers finish at about the same time."""
    lo, span = 0, first
    while lo < upto:
        while span < most and lo and lo % (2 * span) == 0:
            span *= 2
        if jobs > 1:
            share = (upto - lo) // (2 * jobs)
            while span > first and span > share:
                span //= 2
        yield lo, min(lo + span, upto), span
        lo += span


def _batches(store: LedgerStore, conn: Connection, origin: str, url: str, upto: int,
             jobs: int, sizes: list[int], everything: bool) -> Iterator[Checked]:
    # lazy: upto comes from the head, which may have been tampered with
    here = _StoreReader(store, conn)
    ranges = ((lo, hi, span, sizes[bisect_right(sizes, lo):bisect_right(sizes, lo + span)],
               everything)
              for lo, hi, span in _spans(upto, min(FIRST_BATCH, BATCH), BATCH, jobs))
    if jobs <= 1 or (HEAD_START and upto <= FIRST_BATCH):
        for r in ranges:
            yield check_range(here, origin, *r)
        return
    # Plain child processes (safe from threads: the TUI runs us in one), each importing only
    # what a batch needs. Until one has started, check batches here, in order.
    workers = [_Worker(url, origin) for _ in range(jobs)]
    finished = False
    try:
        it = iter(ranges)
        while HEAD_START and not any(w.started() for w in workers):
            job = next(it, None)
            if job is None:
                break
            yield check_range(here, origin, *job)
        pending: deque[_Worker] = deque()  # who has each batch given, in index order
        for r in it:
            w = min(workers, key=lambda w: w.given)
            w.give(r)
            pending.append(w)
            if len(pending) >= 2 * jobs:
                break
        while pending:
            w = pending.popleft()
            yield w.answer()
            nxt = next(it, None)
            if nxt is not None:
                w.give(nxt)
                pending.append(w)
        finished = True
    finally:
        for w in workers:
            w.stop(finished=finished)
        for w in workers:  # once all are told: they exit at the same time
            w.reap()


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
        for b, bad_node in _batches(store, conn, origin, url, upto, jobs, sizes,
                                    hook is not None):
            above = v.feed_batch(b, at_size)
            if b.seen == 0:
                break
            if bad_node is not None:
                raise bad_node
            bad_node = compare_nodes(_StoreReader(store, conn), above)
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
