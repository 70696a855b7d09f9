"""Verification of a whole ledger: one entry point, one error type.

Owns the order-dependent checks, applied to rows that ``entry.check_entry`` has already checked
one by one (possibly in other processes). Steps, cited where they happen:

1. each row checks out on its own (``check_entry``: canonical bytes, columns, signatures, hash);
2. indices are contiguous from 0;
3. each statement's ``prev`` is the previous entry's hash (the genesis's is 32 zero bytes);
4. time never goes backwards;
5. every signer's key is valid at that position and key events obey the registry's rules;
6. an optional hook replays the entry against the process definition (the domain's rules);
7. the Merkle tree rebuilt from the entry hashes gives the stored head's root, every stored
   tree node, and is consistent with every checkpoint someone kept (docs/ledger-format.md §8).

``LedgerVerifier.feed`` raises ``VerificationError`` with the first bad index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from coi.ledger.entry import GENESIS_PREV, CheckedEntry, StoredEntry, check_entry
from coi.ledger.errors import VerificationError
from coi.ledger.merkle import TreeBuilder
from coi.ledger.registry import KeyRegistry

EntryHook = Callable[[CheckedEntry, KeyRegistry], None]


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
        self.nodes_seen = 0

    @property
    def size(self) -> int:
        return self.tree.size

    def feed(self, c: CheckedEntry) -> list[tuple[int, int, bytes]]:
        """Apply one checked entry; returns the tree nodes it completes (for comparison)."""
        st = c.statement
        # Step 2: contiguous indices.
        if c.index != self.tree.size:
            if c.index < self.tree.size:
                raise VerificationError(
                    f"index {c.index} appears again after {self.tree.size - 1} "
                    "(duplicated or reordered row)", index=c.index)
            raise VerificationError(f"entries {self.tree.size} to {c.index - 1} are missing",
                                    index=self.tree.size)
        # Step 3: the hash chain.
        if st.prev != self._prev:
            raise VerificationError(
                "prev does not match the previous entry's hash (an entry before it was "
                "changed, removed or inserted)", index=c.index)
        # Step 4: time is monotonic.
        if st.time_ms < self._time:
            raise VerificationError("time goes backwards", index=c.index)
        # Step 5: keys and key events.
        self.registry.admit(st)
        # Step 6: the process rules.
        if self.hook is not None:
            self.hook(c, self.registry)
        self._prev, self._time = c.entry_hash, st.time_ms
        return self.tree.append(c.entry_hash)

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
