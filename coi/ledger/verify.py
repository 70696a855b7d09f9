"""Verification of a whole ledger: one entry point, one error type.

Owns the order-dependent checks, applied to rows that ``entry.check_entry`` has already checked
one by one (possibly in other processes). Steps, cited where they happen:

1. each row checks out on its own (``check_entry``: canonical bytes, columns, signatures, hash);
2. indices are contiguous from 0;
3. each statement's ``prev`` is the previous entry's hash (the genesis's is 32 zero bytes);
   each version 2 statement's ``subject_prev`` names the previous entry on its subject
   (``links``; in batches: checked inside the batch, and the first on each subject here);
4. time never goes backwards;
5. every signer's key is valid at that position and key events obey the registry's rules;
6. an optional hook replays the entry against the process definition (the domain's rules);
7. the Merkle tree rebuilt from the entry hashes gives the stored head's root, every stored
   tree node, and is consistent with every checkpoint someone kept (docs/ledger-format.md §8).

``LedgerVerifier.feed`` raises ``VerificationError`` with the first bad index.

For whole ledgers the work is split by batches of rows aligned on a power of two:
``check_batch`` (anywhere, e.g. in a worker process) runs step 1 on every row of its batch and
the order-dependent checks that stay inside the batch (steps 2–4 between its own rows, the
batch's part of the tree), and hands back a small ``Batch``; ``LedgerVerifier.feed_batch``
then does what needs the ledger before it (steps 2–4 at the batch's first row, step 5 for the
rows that can change or test the registry, step 6, and the tree above the batch). Both raise
the same errors, for the same first bad index, as feeding every entry with ``feed``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from coi.ledger.entry import (
    GENESIS_PREV,
    CheckedEntry,
    SignatureCheck,
    StoredEntry,
    check_entry,
    first_bad_signature,
)
from coi.ledger.errors import VerificationError
from coi.ledger.links import LastOnSubject, Opening, SubjectLinks, claim_problem, link_problem
from coi.ledger.merkle import Node, TreeBuilder, frontier_nodes, node_hash
from coi.ledger.registry import KeyRegistry, PlainSigners, plain_signers

EntryHook = Callable[[CheckedEntry, KeyRegistry], None]
SizeCheck = Callable[[int, bytes], None]
"""Called with a tree size and the rebuilt root at that size (to compare a checkpoint)."""


class Batch(NamedTuple):
    """What ``check_batch`` found in the rows of one batch (small, cheap to send between
    processes).

    Entries ``lo .. lo + entries - 1`` were read in order at their own indices, each checked out
    on its own, each one's ``prev`` is the hash of the one before and time does not go back
    among them. ``full`` holds those the verifier must see whole: every one when asked for all,
    else each one that is not plain (``registry.plain_signers``) and the first one of each set
    of plain signers since the last entry that is not. ``tail`` is the row after them when it
    is out of place (another index, a broken chain, time going back); ``error`` the first row
    that does not check out on its own. At most one of them is set and reading stopped there.
    """

    lo: int
    seen: int  # rows up to the one where reading stopped (that one included)
    entries: int  # rows lo .. lo + entries - 1 checked out (see above)
    first_prev: bytes
    first_time: int
    last_hash: bytes
    last_time: int
    frontier: tuple[tuple[int, bytes], ...]  # (level, hash) of the batch's complete subtrees
    at_sizes: dict[int, tuple[bytes, ...]]  # a requested tree size -> the batch's frontier then
    full: tuple[CheckedEntry, ...]
    tail: CheckedEntry | None
    error: VerificationError | None
    openings: tuple[Opening, ...] = ()  # the first entry on each subject in the batch
    lasts: tuple[tuple[str, LastOnSubject], ...] = ()  # the last entry on each of them


NodeRun = tuple[int, int, list[bytes]]
"""``(level, index of the first, hashes)``: tree nodes side by side at one level."""


def check_batch(rows: Iterable[StoredEntry], origin: str, lo: int, span: int, *,
                sizes: Sequence[int] = (), everything: bool = False
                ) -> tuple[Batch, list[NodeRun]]:
    """Check the rows of the batch ``[lo, lo + span)`` (``span`` a power of two dividing
    ``lo``), given in index order; return the ``Batch`` and the tree nodes inside the batch
    that its entries complete, level by level from the leaves up (to compare with the stored
    ones).

    ``sizes``: tree sizes in ``(lo, lo + span]`` at which the root is wanted (checkpoints);
    ``everything``: put every entry in ``Batch.full`` (for a hook that sees each entry).
    """
    if span <= 0 or span & (span - 1) or lo % span:
        raise ValueError(f"a batch of {span} rows cannot start at {lo}")
    # Steps 2-4 among the rows checked (step 1), in order: stop at the first one out of place
    # or the first that does not check out on its own.
    leaves: list[bytes] = []
    full: list[CheckedEntry] = []
    signers_seen: set[PlainSigners] = set()
    count = 0
    first_prev = last_hash = GENESIS_PREV
    first_time = last_time = 0
    tail: CheckedEntry | None = None
    error: VerificationError | None = None
    local: dict[str, LastOnSubject] = {}
    openings: list[Opening] = []
    try:
        for c in _checked(rows, origin):
            st = c.statement
            if c.index != lo + count:
                tail = c
                break
            if count == span:
                raise ValueError(f"more than {span} rows given for the batch at {lo}")
            if count == 0:
                first_prev, first_time = st.prev, st.time_ms
            elif st.prev != last_hash or st.time_ms < last_time:
                tail = c
                break
            # Back-links (step 3b) inside the batch; the first on each subject is the caller's.
            before = local.get(st.subject)
            if before is None:
                openings.append(Opening(c.index, st.subject, st.version, st.subject_prev))
            elif link_problem(st, before) is not None:
                tail = c
                break
            local[st.subject] = LastOnSubject(c.index, c.entry_hash, st.version)
            if everything:
                full.append(c)
            else:
                key = plain_signers(st)
                if key is None:
                    full.append(c)
                    signers_seen.clear()
                elif key not in signers_seen:
                    signers_seen.add(key)
                    full.append(c)
            last_hash, last_time = c.entry_hash, st.time_ms
            leaves.append(last_hash)
            count += 1
    except VerificationError as e:
        error = e
    seen = count + (tail is not None or error is not None)
    # The batch's part of the tree: the leaves, then each level's complete nodes above them.
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[k], below[k + 1]) for k in range(0, len(below) - 1, 2)])
    runs = [(level, lo >> level, hashes) for level, hashes in enumerate(levels) if hashes]
    at_sizes = {n: tuple(h for _level, h in _frontier(levels, n - lo))
                for n in sizes if lo < n <= lo + count}
    return Batch(lo=lo, seen=seen, entries=count, first_prev=first_prev, first_time=first_time,
                 last_hash=last_hash, last_time=last_time,
                 frontier=tuple(_frontier(levels, count)), at_sizes=at_sizes,
                 full=tuple(full), tail=tail, error=error, openings=tuple(openings),
                 lasts=tuple(local.items())), runs


RUN = 64
"""Rows checked before their signatures are verified together (see ``_checked``)."""


def _checked(rows: Iterable[StoredEntry], origin: str) -> Iterator[CheckedEntry]:
    """``check_entry`` for each row in turn, until the first that does not check out on its
    own, which raises its error.

    The rows are checked ``RUN`` at a time with their signatures left for later, then those
    signatures are verified together before the run's entries are given (measured faster so
    on one machine of this kind, and no slower on another). The first bad row is the first
    with a bad signature, if that comes before the first to fail the rest, and
    ``check_entry`` alone says what is wrong with it.
    """
    it = iter(rows)
    while True:
        run = list(islice(it, RUN))
        checked: list[CheckedEntry] = []
        ends: list[int] = []  # per row checked: how many signatures ``later`` holds after it
        later: list[SignatureCheck] = []
        error: VerificationError | None = None
        try:
            for row in run:
                checked.append(check_entry(row, origin, later))
                ends.append(len(later))
        except VerificationError as e:
            error = e
        bad = first_bad_signature(later)
        if bad is not None:
            del checked[bisect_right(ends, bad):]
            error = _exact_error(run[len(checked)], origin)
        yield from checked
        if error is not None:
            raise error
        if len(run) < RUN:
            return


def _exact_error(row: StoredEntry, origin: str) -> VerificationError:
    """What ``check_entry`` alone says is wrong with ``row``, known to have a bad signature."""
    try:
        check_entry(row, origin)
    except VerificationError as e:
        return e
    raise AssertionError(f"row {row.index} checked out alone but not with others")


def _frontier(levels: list[list[bytes]], n: int) -> list[tuple[int, bytes]]:
    """``(level, hash)`` of the complete subtrees of the first ``n`` leaves, largest first
    (``merkle.frontier_nodes``), from the batch's levels."""
    return [(level, levels[level][idx]) for level, idx in frontier_nodes(n)]


@dataclass(frozen=True)
class VerifiedLog:
    origin: str
    size: int
    root: bytes
    registry: KeyRegistry


class LedgerVerifier:
    """Feed checked entries in index order; ``finish`` returns the verified size and root."""

    def __init__(self, origin: str, *, hook: EntryHook | None = None) -> None:
        self.origin = origin
        self.registry = KeyRegistry()
        self.tree = TreeBuilder()
        self.hook = hook
        self._prev = GENESIS_PREV
        self._time = 0
        self.links = SubjectLinks()
        self.nodes_seen = 0
        # Plain signers admitted since the last entry that is not plain (registry.plain_signers).
        self._admitted: set[PlainSigners] = set()

    @property
    def size(self) -> int:
        return self.tree.size

    @property
    def last_hash(self) -> bytes:
        """The entry hash of the last entry fed (the genesis ``prev`` before any)."""
        return self._prev

    @property
    def last_time(self) -> int:
        """The time (ms) of the last entry fed (0 before any)."""
        return self._time

    def feed(self, c: CheckedEntry) -> list[tuple[int, int, bytes]]:
        """Apply one checked entry; returns the tree nodes it completes (for comparison)."""
        st = c.statement
        self._in_order(c.index, st.prev, st.time_ms)
        self.links.check(c.index, st, c.entry_hash)  # step 3b: the back-link on its subject
        self._admit(c)
        self._prev, self._time = c.entry_hash, st.time_ms
        return self.tree.append(c.entry_hash)

    def _in_order(self, index: int, prev: bytes, time_ms: int) -> None:
        # Step 2: contiguous indices.
        if index != self.tree.size:
            if index < self.tree.size:
                raise VerificationError(
                    f"index {index} appears again after {self.tree.size - 1} "
                    "(duplicated or reordered row)", index=index)
            raise VerificationError(f"entries {self.tree.size} to {index - 1} are missing",
                                    index=self.tree.size)
        # Step 3: the hash chain.
        if prev != self._prev:
            raise VerificationError(
                "prev does not match the previous entry's hash (an entry before it was "
                "changed, removed or inserted)", index=index)
        # Step 4: time is monotonic.
        if time_ms < self._time:
            raise VerificationError("time goes backwards", index=index)

    def _admit(self, c: CheckedEntry) -> None:
        st = c.statement
        # Step 5: keys and key events. Plain signers already admitted since the registry last
        # changed are admitted again without asking it (registry.plain_signers says why).
        key = plain_signers(st)
        if key is None:
            self._admitted.clear()
            self.registry.admit(st)
        elif key in self._admitted and st.index >= self.registry.size:
            self.registry.size = st.index + 1
        else:
            self.registry.admit(st)
            self._admitted.add(key)
        # Step 6: the process rules.
        if self.hook is not None:
            self.hook(c, self.registry)

    def feed_batch(self, b: Batch, at_size: SizeCheck | None = None) -> list[Node]:
        """Apply a batch from ``check_batch``; return the tree nodes above the batch that it
        completes (those inside it come with ``check_batch``).

        Calls ``at_size(n, root)`` for each size of ``b.at_sizes`` once the first ``n`` entries
        are in. Raises as ``feed`` of each entry would, then for ``b.tail`` and ``b.error``.
        """
        completed: list[Node] = []
        if b.entries:
            self._in_order(b.lo, b.first_prev, b.first_time)
            sizes = sorted(b.at_sizes)
            openings = list(reversed(b.openings))
            for c in b.full:
                while sizes and sizes[0] <= c.index:
                    self._check_size(sizes.pop(0), b, at_size)
                while openings and openings[-1].index <= c.index:
                    self._check_opening(openings.pop())
                self._admit(c)
            while sizes:
                self._check_size(sizes.pop(0), b, at_size)
            while openings:
                self._check_opening(openings.pop())
            self.links.last.update(b.lasts)
            end = b.lo + b.entries
            if self.registry.size < end:
                self.registry.size = end
            self._prev, self._time = b.last_hash, b.last_time
            for level, h in b.frontier:
                completed += self.tree.append_subtree(level, h)[1:]
        if b.tail is not None:
            self.feed(b.tail)  # out of place: this raises
        if b.error is not None:
            if b.error.index is not None and b.error.index > self.size:
                raise VerificationError(f"entries {self.size} to {b.error.index - 1} are "
                                        "missing", index=self.size)
            raise b.error
        return completed

    def _check_opening(self, o: Opening) -> None:
        problem = claim_problem(o.version, o.subject, o.claim, self.links.last.get(o.subject))
        if problem is not None:
            raise VerificationError(problem, index=o.index)

    def _check_size(self, n: int, b: Batch, at_size: SizeCheck | None) -> None:
        if at_size is not None:
            at_size(n, self.tree.root_with(b.at_sizes[n]))

    def finish(self, *, head_size: int | None = None, head_root: bytes | None = None
               ) -> VerifiedLog:
        if self.tree.size == 0:
            raise VerificationError("the ledger is empty: there is not even a genesis entry")
        root = self.tree.root()
        # Step 7: the head agrees with what was rebuilt.
        if head_size is not None and head_size != self.tree.size:
            raise VerificationError(
                f"the head says {head_size} entries but {self.tree.size} are stored",
                index=min(head_size, self.tree.size))
        if head_root is not None and head_root != root:
            raise VerificationError("the head's root is not the root of the stored entries")
        return VerifiedLog(origin=self.origin, size=self.tree.size, root=root,
                           registry=self.registry)


def verify_rows(rows: Iterable[StoredEntry], origin: str, *, hook: EntryHook | None = None,
                head_size: int | None = None, head_root: bytes | None = None) -> VerifiedLog:
    """Verify rows given in index order, in this process (the single-worker path)."""
    v = LedgerVerifier(origin, hook=hook)
    for row in rows:
        v.feed(check_entry(row, origin))
    return v.finish(head_size=head_size, head_root=head_root)
