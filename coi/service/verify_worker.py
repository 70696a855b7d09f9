"""One batch of whole-ledger verification, and the worker process that checks batches.

``check_range`` reads the rows of one batch and the stored tree nodes inside it and runs
``check_batch`` over them; ``verifying`` calls it in its own process and in workers. A worker
is a plain ``python -c`` child started by ``verifying`` that imports only this module, the
ledger core and a database driver (``reads.DriverReader``): it is ready in a fraction of a
second, where a ``multiprocessing`` child would re-import the parent's main module (the whole
CLI or TUI) and SQLAlchemy first. It speaks pickle over its stdin and stdout: it reads
``sys.path``, then ``(url, origin)``, answers ``READY``, then for each ``(lo, hi, span, sizes,
everything)`` answers ``("ok", (Batch, bad node or None))`` or ``("failed", traceback)``. At
the end of its input it closes its connection and exits at once.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
import traceback
from collections.abc import Iterable
from typing import Any, BinaryIO, Protocol

from coi.ledger.entry import StoredEntry
from coi.ledger.errors import VerificationError
from coi.ledger.merkle import Node
from coi.ledger.verify import Batch, NodeRun, check_batch

READY = "ready"

Checked = tuple[Batch, VerificationError | None]
"""A batch's ``check_batch`` result and the first stored tree node inside it that is wrong."""

BOOT = ("import pickle, sys; i = sys.stdin.buffer; sys.path[:] = pickle.load(i); "
        "from coi.service.verify_worker import serve; serve(i, sys.stdout.buffer)")
"""The worker's ``python -c`` program."""


class Reader(Protocol):
    def rows(self, lo: int, hi: int) -> Iterable[StoredEntry]: ...

    def nodes_in_range(self, level: int, lo: int, hi: int) -> list[tuple[int, bytes | None]]:
        ...


def check_range(reader: Reader, origin: str, lo: int, hi: int, span: int, sizes: list[int],
                everything: bool) -> Checked:
    """Check rows [lo, hi) of the batch at ``lo`` and the stored tree nodes inside it."""
    b, nodes = check_batch(reader.rows(lo, hi), origin, lo, span, sizes=sizes,
                           everything=everything)
    if b.tail is not None or b.error is not None:
        return b, None  # the verifier stops at that row, before the nodes are compared
    return b, compare_nodes(reader, nodes)


def compare_nodes(reader: Reader, runs: Iterable[NodeRun]) -> VerificationError | None:
    """The first node of ``runs`` (given lowest level first, each run in index order) whose
    stored copy is missing or differs, as the error to raise; None if all are stored as
    rebuilt."""
    for level, first, hashes in runs:
        expected = list(zip(range(first, first + len(hashes)), hashes, strict=True))
        got = reader.nodes_in_range(level, first, first + len(hashes))
        if got == expected:
            continue
        stored = dict(got)
        for idx, h in expected:
            s = stored.get(idx)
            if s != h:
                first_leaf = idx << level
                what = "missing" if s is None else "wrong"
                return VerificationError(
                    f"stored tree node (level {level}, index {idx}) is {what}",
                    index=first_leaf + (1 << level) - 1)
    return None


def node_runs(nodes: Iterable[Node]) -> list[NodeRun]:
    """``(level, index, hash)`` nodes as runs, lowest level first, then lowest index."""
    return [(level, idx, [h]) for level, idx, h in sorted(nodes)]


class _EngineReader:
    """For a database URL the driver reader does not open: through SQLAlchemy."""

    def __init__(self, url: str) -> None:
        from coi.db.engine import make_engine
        from coi.db.repo import LedgerStore

        self.store = LedgerStore(make_engine(url))

    def rows(self, lo: int, hi: int) -> list[StoredEntry]:
        return list(self.store.rows(lo, hi, batch=max(1, hi - lo)))

    def nodes_in_range(self, level: int, lo: int, hi: int) -> list[tuple[int, bytes | None]]:
        with self.store.engine.connect() as conn:
            return self.store.nodes_in_range(level, lo, hi, conn)

    def close(self) -> None:
        self.store.engine.dispose()


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """The worker's loop (see the module's docstring)."""
    sys.stdout = sys.stderr  # a stray print must not land in the answers
    gc.disable()  # nothing checked here is in a cycle: see verifying._cyclic_gc_paused
    from coi.db.reads import DriverReader

    url, origin = pickle.load(inp)
    try:
        reader = DriverReader(url) if DriverReader.opens(url) else _EngineReader(url)
    except Exception:
        _send(out, ("failed", traceback.format_exc()))
        return
    _send(out, READY)
    while True:
        try:
            job = pickle.load(inp)
        except EOFError:  # told to stop: everything asked has been answered
            break
        try:
            answer: Any = ("ok", check_range(reader, origin, *job))
        except Exception:  # reported to the parent, which raises it there
            answer = ("failed", traceback.format_exc())
        _send(out, answer)
    reader.close()
    out.flush()
    sys.stderr.flush()
    # Exit now: the interpreter's own shutdown (freeing every module) takes longer than a small
    # ledger's last batch, and the verifier waits for this process to end.
    os._exit(0)


def _send(out: BinaryIO, obj: Any) -> None:
    out.write(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    out.flush()
