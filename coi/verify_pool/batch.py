"""One batch of whole-ledger verification: read its rows and tree nodes, check them.

``check_range`` reads the rows of one batch and the stored tree nodes inside it and runs the
core's ``check_batch`` over them; the pool calls it in its own process and in workers.
``compare_nodes`` compares rebuilt tree nodes with the stored ones. Reading is the caller's:
a ``Reader`` gives rows and nodes by index range, a ``ReaderSource`` (sent to workers by
pickle) opens one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from coi.ledger.entry import StoredEntry
from coi.ledger.errors import VerificationError
from coi.ledger.merkle import Node
from coi.ledger.verify import Batch, NodeRun, check_batch

Checked = tuple[Batch, VerificationError | None]
"""A batch's ``check_batch`` result and the first stored tree node inside it that is wrong."""


class Reader(Protocol):
    """Stored rows and tree nodes by index range, each in index order."""

    def rows(self, lo: int, hi: int) -> Iterable[StoredEntry]: ...

    def nodes_in_range(self, level: int, lo: int, hi: int) -> list[tuple[int, bytes | None]]:
        """``(idx, hash)`` of the stored nodes at ``level`` with ``lo <= idx < hi``."""
        ...

    def close(self) -> None: ...


class ReaderSource(Protocol):
    """A picklable recipe for a ``Reader`` (unpickling it in a worker imports its module)."""

    def open(self) -> Reader: ...


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
