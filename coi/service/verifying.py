"""Whole-ledger verification over a store, in one process or several.

Rows are read in batches of ``BATCH`` (a power of two) by index range, each batch one complete
subtree of the tree. Each batch is checked by ``check_batch`` where it is read — here, or with
``jobs > 1`` also in ``jobs - 1`` worker processes, each with its own connection — which does
the costly part (parsing, canonical bytes, columns, signatures, entry hashes), the chain and
time between the batch's own rows and the batch's tree nodes, compared there with the stored
ones; it sends back a small ``Batch`` (no statements but the few the registry must see). This
process feeds the batches in index order to the ``LedgerVerifier`` (the links to the batch
before, keys, process rules, the tree above the batches), compares the tree nodes above each
batch with the stored ones, checks each stored and each given checkpoint against the rebuilt
root at its size, and finally the head. Memory stays bounded: at most ``WINDOW`` batches are
out or held here at once.
"""

from __future__ import annotations

import gc
import pickle
import subprocess
import sys
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from coi.db.reads import DriverReader
from coi.db.repo import Head, LedgerStore
from coi.ledger import note
from coi.ledger.entry import StoredEntry
from coi.ledger.errors import VerificationError
from coi.ledger.verify import EntryHook, LedgerVerifier, VerifiedLog
from coi.service.verify_worker import (
    BOOT,
    READY,
    Checked,
    Reader,
    check_range,
    compare_nodes,
    node_runs,
)

BATCH = 1024
"""Rows per batch, at most: a power of two, so that each batch is one complete subtree."""

FIRST_BATCH = 128
"""The first batches are smaller (doubling up to ``BATCH`` as alignment allows), so that this
process hands over to the workers soon after they start, and the last worker to finish has
little left to do."""

LAST_BATCH = 32
"""With several processes, the last batches shrink to this size (no smaller), so that this
process, which has no batch left, waits little for the last ones a worker holds."""

PARENT_CHECKS = True
"""With ``jobs > 1``, this process checks batches too, whenever the oldest batch a worker has is
not answered yet (tests turn this off to send every batch to a worker)."""

WORKER_QUEUE = 2
"""Batches each worker holds (the one it checks and the next), so that it never waits."""

WINDOW = 8
"""Batches out, or checked and held here, at most: how far ahead of the oldest batch not yet
handed on the checking may run (memory stays bounded)."""


class _StoreReader:
    """This process's reads, on the verification's one connection."""

    def __init__(self, store: LedgerStore, conn: Connection) -> None:
        self.store, self.conn = store, conn

    def rows(self, lo: int, hi: int) -> Iterator[StoredEntry]:
        return self.store.rows(lo, hi, batch=hi - lo, conn=self.conn)

    def nodes_in_range(self, level: int, lo: int, hi: int) -> list[tuple[int, bytes | None]]:
        return self.store.nodes_in_range(level, lo, hi, self.conn)


Job = tuple[int, int, int, list[int], bool]
"""A batch to check: ``(lo, hi, span, sizes, everything)`` (``check_range``'s arguments)."""


class _Schedule:
    """Who checks which batch, and the answers until they are handed on in order.

    Batches are numbered in index order. This process and each worker take the next batch
    when they are free: a worker's reader thread gives it another as soon as it answers one
    (so it never waits for this process), this process takes one whenever the oldest batch
    is not answered yet. No batch is given out ``WINDOW`` or more ahead of the oldest one
    not yet handed on."""

    def __init__(self, jobs: Iterator[Job]) -> None:
        self.cv = threading.Condition()
        self._jobs = jobs
        self._given = 0  # batches given out
        self._exhausted = False
        self.handed = 0  # batches handed on (in order)
        self.answers: dict[int, tuple[str, Any]] = {}  # batch -> ("ok", Checked) or failure

    def take_locked(self) -> tuple[int, Job] | None:
        """The next batch and its number, if there is one and the window allows."""
        if self._exhausted or self._given >= self.handed + WINDOW:
            return None
        job = next(self._jobs, None)
        if job is None:
            self._exhausted = True
            return None
        self._given += 1
        return self._given - 1, job

    def wait_locked(self, may_take: Callable[[], bool]
                    ) -> tuple[tuple[str, Any] | None, tuple[int, Job] | None]:
        """Wait for the oldest batch's answer (returned first) or, while ``may_take()``, for a
        batch to take (returned second); ``(None, None)`` once every batch is handed on."""
        while True:
            answer = self.answers.pop(self.handed, None)
            if answer is not None or (self._exhausted and self.handed == self._given):
                return answer, None
            mine = self.take_locked() if may_take() else None
            if mine is not None:
                return None, mine
            self.cv.wait()


class _Worker:
    """A ``verify_worker`` child process, the batches it holds, and a thread that reads its
    answers as they come and gives it the next batch at once (so its pipe never fills, and
    nothing waits on a pipe, which not every platform can do)."""

    def __init__(self, url: str, origin: str, schedule: _Schedule) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", BOOT], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.schedule = schedule
        self.held: deque[int] = deque()  # numbers of the batches it holds, oldest first
        self.alive = True
        self._send(worker_path())
        self._send((url, origin))
        with schedule.cv:
            self.refill_locked()
        self._reader = threading.Thread(target=self._read, name="coi-verify-reader",
                                        daemon=True)
        self._reader.start()

    def _send(self, obj: Any) -> None:
        try:
            self.stdin.write(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
            self.stdin.flush()
        except (OSError, ValueError):  # it has exited, or was told to: _read says why
            pass

    def refill_locked(self) -> None:
        """Give it batches until it holds ``WORKER_QUEUE`` (or none is to be had)."""
        while self.alive and len(self.held) < WORKER_QUEUE:
            got = self.schedule.take_locked()
            if got is None:
                return
            self.held.append(got[0])
            self._send(got[1])

    def _read(self) -> None:
        sched = self.schedule
        try:
            while True:
                msg = pickle.load(self.stdout)
                if msg == READY:
                    continue
                with sched.cv:
                    sched.answers[self.held.popleft()] = msg
                    self.refill_locked()
                    sched.cv.notify_all()
        except Exception:  # EOF (it exited) or a broken pipe: whatever it held is lost
            code = self.proc.wait()
            with sched.cv:
                self.alive = False
                while self.held:
                    sched.answers[self.held.popleft()] = ("lost", code)
                sched.cv.notify_all()

    def stop(self, *, finished: bool) -> None:
        """Tell it to exit (end of its input: it has answered everything) or kill it."""
        with self.schedule.cv:
            self.alive = False
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


def worker_path() -> list[str]:
    """The module path a worker uses: this process's, after the directory that holds the
    ``coi`` package in use (an editable install finds it through an import hook, which a
    worker started without ``site`` does not have)."""
    import coi

    home = str(Path(coi.__file__).resolve().parent.parent)
    return [home, *(p for p in sys.path if p != home)]


def _spans(upto: int, first: int, most: int, jobs: int = 1,
           last: int | None = None) -> Iterator[tuple[int, int, int]]:
    """``(lo, hi, span)`` of the batches covering [0, upto): spans are powers of two from
    ``first`` to ``most``, each dividing its ``lo`` (a span doubles once ``lo`` allows it).
    With several workers they shrink again towards the end (to no less than ``last``, a power
    of two, by default ``first``), so that the workers finish at about the same time."""
    least = first if last is None else min(first, last)
    lo, span = 0, first
    while lo < upto:
        while span < most and lo and lo % (2 * span) == 0:
            span *= 2
        if jobs > 1:
            share = (upto - lo) // (2 * jobs)
            while span > least and span > share:
                span //= 2
        yield lo, min(lo + span, upto), span
        lo += span


def _batches(store: LedgerStore, conn: Connection, origin: str, url: str, upto: int,
             jobs: int, sizes: list[int], everything: bool) -> Iterator[Checked]:
    # lazy: upto comes from the head, which may have been tampered with
    mine = store.engine.url.render_as_string(hide_password=False)
    if DriverReader.opens(mine):  # as the workers read (faster than through SQLAlchemy)
        driver = DriverReader(mine)
        try:
            yield from _batches_with(driver, origin, url, upto, jobs, sizes, everything)
        finally:
            driver.close()
    else:
        yield from _batches_with(_StoreReader(store, conn), origin, url, upto, jobs, sizes,
                                 everything)


def _batches_with(here: Reader, origin: str, url: str, upto: int, jobs: int,
                  sizes: list[int], everything: bool) -> Iterator[Checked]:
    ranges = ((lo, hi, span, sizes[bisect_right(sizes, lo):bisect_right(sizes, lo + span)],
               everything)
              for lo, hi, span in _spans(upto, min(FIRST_BATCH, BATCH), BATCH, jobs,
                                         LAST_BATCH))
    if jobs <= 1 or (PARENT_CHECKS and upto <= FIRST_BATCH):
        for r in ranges:
            yield check_range(here, origin, *r)
        return
    # ``jobs`` processes check batches: this one and ``jobs - 1`` plain child processes (safe
    # from threads: the TUI runs us in one), each importing only what a batch needs.
    sched = _Schedule(ranges)
    workers: list[_Worker] = []
    finished = False
    try:
        workers += (_Worker(url, origin, sched) for _ in range(jobs - 1))
        while True:
            with sched.cv:
                answer, mine = sched.wait_locked(
                    lambda: PARENT_CHECKS or not any(w.alive for w in workers))
            if mine is not None:
                checked = check_range(here, origin, *mine[1])
                with sched.cv:
                    sched.answers[mine[0]] = ("ok", checked)
                continue
            if answer is None:
                break
            status, value = answer
            if status == "lost":
                raise RuntimeError(
                    f"a verification worker stopped unexpectedly (exit code {value})")
            if status != "ok":
                raise RuntimeError(f"a verification worker failed:\n{value}")
            yield value
            with sched.cv:
                sched.handed += 1
                for w in workers:  # the window moved on
                    w.refill_locked()
        finished = True
    finally:
        for w in workers:
            w.stop(finished=finished)
        for w in workers:  # once all are told: they exit at the same time
            w.reap()


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The cyclic garbage collector's automatic runs off while the rows are checked, then as
    they were.

    Checking builds a few objects per row and keeps a batch's worth at a time, none of them in
    a cycle; the collector would keep walking them all (several per cent of the time) to find
    nothing. Reference counting still frees them as usual, and the loop collects the youngest
    generation after each batch (what a hook may leave in cycles). The switch is the process's:
    a verification run in a thread beside a UI pauses the collector for the UI too, until it
    ends.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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

    with store.engine.connect() as conn, _cyclic_gc_paused():
        for b, bad_node in _batches(store, conn, origin, url, upto, jobs, sizes,
                                    hook is not None):
            above = v.feed_batch(b, at_size)
            if b.seen == 0:
                break
            if bad_node is not None:
                raise bad_node
            bad_node = compare_nodes(_StoreReader(store, conn), node_runs(above))
            if bad_node is not None:
                raise bad_node
            if progress is not None:
                progress(v.size, upto)
            gc.collect(0)
        extra = _first_index_from(store.engine, v.size)
        if extra is not None and v.size < head.size:
            raise VerificationError(
                f"entries {v.size} to {min(extra, head.size) - 1} are missing", index=v.size)
        if extra is not None:
            raise VerificationError(
                f"a row is stored at index {extra}, beyond the head's {head.size} entries "
                "(inserted behind the ledger's back, or the head was rewound)", index=extra)
        result = v.finish(head_size=head.size, head_root=head.root)
        if head.last_hash != v.last_hash or head.last_time_ms != v.last_time:
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


def _first_index_from(engine: Engine, start: int) -> int | None:
    """The lowest stored index at or after ``start``, if any."""
    from sqlalchemy import func, select

    from coi.db.repo import E

    with engine.connect() as c:
        m = c.execute(select(func.min(E.c.idx)).where(E.c.idx >= start)).scalar()
    return None if m is None else int(m)
