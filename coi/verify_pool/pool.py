"""Whole-ledger verification in batches, in this process or in several.

Rows are read in batches of at most ``BATCH`` (a power of two) by index range, each batch one
complete subtree of the tree. Each batch is checked by ``batch.check_range`` where it is read
— here, or with ``jobs > 1`` also in ``jobs - 1`` worker processes, each with its own reader
— which does the costly part (parsing, canonical bytes, columns, signatures, entry hashes), the
chain and time between the batch's own rows and the batch's tree nodes, compared there with the
stored ones; it sends back a small ``Batch`` (no statements but the few the registry must see).
``verify_batches`` feeds the batches in index order to the core's ``LedgerVerifier`` (the links
to the batch before, keys, process rules, the tree above the batches) and compares the tree
nodes above each batch with the stored ones. Memory stays bounded: at most ``WINDOW`` batches
are out or held here at once.

What is around it (the head, stored checkpoints, rows beyond the head) is the caller's: this
package reads only what a ``batch.Reader`` gives. It leaves the calling process's garbage
collector alone (a TUI may be running in it); workers tune their own (``worker``).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from coi.ledger.verify import LedgerVerifier, SizeCheck
from coi.verify_pool.batch import (
    Checked,
    Reader,
    ReaderSource,
    check_range,
    compare_nodes,
    node_runs,
)
from coi.verify_pool.worker import BOOT, READY

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

Progress = Callable[[int, int], None]


def verify_batches(v: LedgerVerifier, here: Reader, source: ReaderSource, *, upto: int,
                   jobs: int = 1, sizes: list[int] | None = None, everything: bool = False,
                   at_size: SizeCheck | None = None, progress: Progress | None = None) -> None:
    """Feed rows [0, ``upto``) to ``v`` batch by batch, in index order; raise the first error.

    ``here`` reads in this process, ``source`` opens a reader in each of the ``jobs - 1``
    workers. ``sizes``: the tree sizes ``at_size(n, root)`` is called at (checkpoints);
    ``everything``: give every checked entry to ``v`` (its hook needs them). Stops early at a
    batch with no row (rows missing: ``v`` raises, or its ``finish`` will). ``progress(done,
    upto)`` after each batch.
    """
    with closing(_checked(here, source, v.origin, upto, jobs, sorted(sizes or ()),
                          everything)) as batches:
        for b, bad_node in batches:
            above = v.feed_batch(b, at_size)
            if b.seen == 0:
                return
            if bad_node is not None:
                raise bad_node
            bad_node = compare_nodes(here, node_runs(above))
            if bad_node is not None:
                raise bad_node
            if progress is not None:
                progress(v.size, upto)


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
    """A worker child process, the batches it holds, and a thread that reads its answers as
    they come and gives it the next batch at once (so its pipe never fills, and nothing waits
    on a pipe, which not every platform can do)."""

    def __init__(self, source: ReaderSource, origin: str, schedule: _Schedule) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", BOOT], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.schedule = schedule
        self.held: deque[int] = deque()  # numbers of the batches it holds, oldest first
        self.alive = True
        self._send(worker_path())
        self._send((source, origin))
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


def _checked(here: Reader, source: ReaderSource, origin: str, upto: int, jobs: int,
             sizes: list[int], everything: bool) -> Generator[Checked, None, None]:
    """Every batch's ``check_range`` answer, in index order (lazy: ``upto`` comes from the
    head, which may have been tampered with)."""
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
        workers += (_Worker(source, origin, sched) for _ in range(jobs - 1))
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
