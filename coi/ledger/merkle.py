"""The ledger's Merkle tree: RFC 6962 / RFC 9162 hashing, proofs from stored nodes, verification.

This module owns everything about the tree and nothing about storage or entries:

* the hashes — ``leaf_hash`` = SHA-256(0x00 ‖ data), ``node_hash`` = SHA-256(0x01 ‖ left ‖ right),
  the empty tree's root SHA-256("") — and ``root`` over a list of leaf hashes;
* ``TreeBuilder``, the writer's incremental builder (a stack of complete-subtree roots, also
  called a compact range). Each ``append`` returns the complete-subtree nodes the new leaf
  completes, which is exactly what a database adapter stores, one row per node;
* proofs built from those stored nodes in two phases, so an adapter can fetch everything a proof
  needs in one query: ``inclusion_plan`` / ``consistency_plan`` name the complete nodes needed,
  ``inclusion_proof`` / ``consistency_proof`` / ``root_from_nodes`` turn the fetched hashes into
  proof hashes. A proof needs O(log n) nodes; no leaf beyond them is ever read;
* ``verify_inclusion`` / ``verify_consistency``: RFC 9162 §2.1.3.2 and §2.1.4.2 step by step, pure
  functions over already-loaded material that return nothing and raise ``VerificationError``.

Node addressing: node ``(level, index)`` is the root of the complete subtree over the leaves
``[index·2^level, (index+1)·2^level)``; level 0 is a leaf hash itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from coi.ledger.errors import VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Node",
    "NodeId",
    "TreeBuilder",
    "consistency_plan",
    "consistency_proof",
    "frontier_nodes",
    "inclusion_plan",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_nodes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in every hash of the tree (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of the empty tree, MTH({}) = SHA-256() (RFC 9162 §2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

NodeId = tuple[int, int]
"""``(level, index)`` of a complete subtree: it covers leaves [index·2^level, (index+1)·2^level)."""

Node = tuple[int, int, bytes]
"""``(level, index, hash)`` of a complete subtree, as stored by a database adapter."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 ‖ d): the hash of one leaf."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right): the hash of an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k (n >= 2): where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes already computed with ``leaf_hash`` (RFC 9162 §2.1.1)."""
    for i, h in enumerate(leaf_hashes):
        _check_hash(h, f"leaf hash {i}")
    builder = TreeBuilder()
    for h in leaf_hashes:
        builder.append(h)
    return builder.root()


# --- The writer's incremental builder --------------------------------------------------------


def frontier_nodes(size: int) -> list[NodeId]:
    """The complete subtrees that make up a tree of ``size`` leaves, left to right.

    One per set bit of ``size``, largest first: size 6 = 4 + 2 gives ``[(2, 0), (1, 2)]``.
    Their hashes are all a writer needs to resume appending (``TreeBuilder.from_frontier``).
    """
    _check_size(size, "size")
    nodes: list[NodeId] = []
    offset = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            nodes.append((level, offset >> level))
            offset += 1 << level
    return nodes


class TreeBuilder:
    """Append-only builder over a stack of complete-subtree roots (a compact range).

    Memory and work per append are O(log n); the builder never holds leaves.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @classmethod
    def from_frontier(cls, size: int, frontier_hashes: Sequence[bytes]) -> TreeBuilder:
        """Resume a tree of ``size`` leaves from the hashes of ``frontier_nodes(size)`` in order."""
        expected = frontier_nodes(size)
        if len(frontier_hashes) != len(expected):
            raise ValueError(
                f"a tree of size {size} has {len(expected)} frontier nodes, "
                f"got {len(frontier_hashes)} hashes"
            )
        for (level, index), h in zip(expected, frontier_hashes, strict=True):
            _check_hash(h, f"frontier node ({level}, {index})", error=ValueError)
        builder = cls()
        builder._size = size
        builder._stack = list(frontier_hashes)
        return builder

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def frontier(self) -> list[bytes]:
        """Hashes of ``frontier_nodes(self.size)``, left to right."""
        return list(self._stack)

    def append(self, leaf_hash: bytes) -> list[Node]:
        """Append one leaf hash; return the complete subtrees it completes, lowest level first.

        The first node is always the leaf itself, ``(0, index, leaf_hash)``; then one node per
        level where the new leaf closes a perfect subtree (the number of trailing one bits of
        the old size).
        """
        _check_hash(leaf_hash, "leaf hash", error=ValueError)
        index = self._size
        h = leaf_hash
        completed: list[Node] = [(0, index, h)]
        level, i, n = 0, index, index
        while n & 1:
            h = node_hash(self._stack.pop(), h)
            level, i, n = level + 1, i >> 1, n >> 1
            completed.append((level, i, h))
        self._stack.append(h)
        self._size += 1
        return completed

    def append_subtree(self, level: int, subtree_root: bytes) -> list[Node]:
        """Append the ``2**level`` leaves of a complete subtree at once, given its root.

        The size must be a multiple of ``2**level`` (the subtree starts on its own boundary).
        Returns the subtree's node and then the nodes above it that it completes, as ``append``
        does for one leaf (``append(h)`` is ``append_subtree(0, h)``).
        """
        _check_hash(subtree_root, "subtree root", error=ValueError)
        if level < 0 or self._size & ((1 << level) - 1):
            raise ValueError(f"a subtree of 2**{level} leaves cannot start at {self._size}")
        i = self._size >> level
        h = subtree_root
        completed: list[Node] = [(level, i, h)]
        n = i
        while n & 1:
            h = node_hash(self._stack.pop(), h)
            level, i, n = level + 1, i >> 1, n >> 1
            completed.append((level, i, h))
        self._stack.append(h)
        self._size += 1 << completed[0][0]
        return completed

    def root(self) -> bytes:
        """MTH of the tree so far: the frontier folded from the right."""
        return _fold(self._stack)

    def root_with(self, frontier: Sequence[bytes]) -> bytes:
        """MTH of this tree followed by the leaves of another tree, given that tree's frontier.

        The other tree starts where this one ends, which must be a boundary of all its complete
        subtrees (this size a multiple of the largest of them); nothing is appended.
        """
        return _fold(self._stack + list(frontier))


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Root of adjacent complete subtrees given left to right, each no larger than the last."""
    if not hashes:
        return EMPTY_ROOT
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


# --- Proofs from stored complete-subtree nodes -----------------------------------------------
#
# Every hash in an RFC 9162 proof is MTH(D[lo:hi]) for a subtree met while recursing: lo is a
# multiple of a power of two 2^k >= hi - lo. Such a range is a run of complete subtrees whose
# sizes are the set bits of hi - lo, largest first, so its hash comes from O(log n) stored nodes.

Range = tuple[int, int]


def _range_nodes(lo: int, hi: int) -> list[NodeId]:
    """The complete subtrees covering leaves [lo, hi), left to right (lo aligned as above)."""
    nodes: list[NodeId] = []
    width = hi - lo
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            nodes.append((level, lo >> level))
            lo += 1 << level
    return nodes


class NodeError(KeyError, ValueError):
    """A stored node that a proof or root needs is not given (a ``KeyError``) or is not a
    32-byte hash (a ``ValueError``): for stored nodes, a damaged tree."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "stored node error"


def stored_node(nodes: Mapping[NodeId, bytes], node: NodeId) -> bytes:
    """``nodes[node]``, which must be there and be a hash (else ``NodeError`` naming it)."""
    if node not in nodes:
        level, index = node
        raise NodeError(f"stored node (level {level}, index {index}) was not given")
    h = nodes[node]
    _check_hash(h, f"stored node {node}", error=NodeError)
    return h


def _range_hash(lo: int, hi: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    return _fold([stored_node(nodes, node) for node in _range_nodes(lo, hi)])


def _inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose roots form PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf upwards."""
    ranges: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))  # PATH(m, D[0:k]) : MTH(D[k:n])
            hi = lo + k
        else:
            ranges.append((lo, lo + k))  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            lo = lo + k
    ranges.reverse()
    return ranges


def _consistency_ranges(old: int, new: int) -> list[Range]:
    """The subtrees whose roots form PROOF(old, D[new]) (RFC 9162 §2.1.4.1), bottom upwards."""
    ranges: list[Range] = []
    if old == 0 or old == new:
        return ranges
    lo, hi, m, whole = 0, new, old, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            hi = lo + k
        else:
            ranges.append((lo, lo + k))  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            lo, m, whole = lo + k, m - k, False
    if not whole:
        ranges.append((lo, hi))  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
    ranges.reverse()
    return ranges


def _plan(ranges: Sequence[Range]) -> list[NodeId]:
    seen: dict[NodeId, None] = {}
    for lo, hi in ranges:
        for node in _range_nodes(lo, hi):
            seen[node] = None
    return list(seen)


def inclusion_plan(index: int, size: int) -> list[NodeId]:
    """The stored complete nodes ``inclusion_proof(index, size, ...)`` will read."""
    _check_index(index, size)
    return _plan(_inclusion_ranges(index, size))


def consistency_plan(old_size: int, new_size: int) -> list[NodeId]:
    """The stored complete nodes ``consistency_proof(old_size, new_size, ...)`` will read."""
    _check_sizes(old_size, new_size)
    return _plan(_consistency_ranges(old_size, new_size))


def inclusion_proof(index: int, size: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """PATH(index, D[size]) from stored nodes (at least those of ``inclusion_plan``)."""
    _check_index(index, size)
    return [_range_hash(lo, hi, nodes) for lo, hi in _inclusion_ranges(index, size)]


def consistency_proof(old_size: int, new_size: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """PROOF(old_size, D[new_size]) from stored nodes (at least those of ``consistency_plan``).

    Empty when ``old_size`` is 0 or equal to ``new_size``.
    """
    _check_sizes(old_size, new_size)
    return [_range_hash(lo, hi, nodes) for lo, hi in _consistency_ranges(old_size, new_size)]


def root_from_nodes(size: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH(D[size]) from the stored nodes of ``frontier_nodes(size)``."""
    _check_size(size, "size")
    return _range_hash(0, size, nodes)


# --- Verification -----------------------------------------------------------------------------


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    RFC 9162 §2.1.3.2, step by step. Returns nothing; raises ``VerificationError``.
    """
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root hash")
    # Step 1: the index must lie inside the tree.
    if not (isinstance(index, int) and isinstance(size, int)) or index < 0 or size < 0:
        raise VerificationError(f"inclusion proof: index {index} and size {size} must be ≥ 0")
    if index >= size:
        raise VerificationError(f"inclusion proof: index {index} is not below tree size {size}")
    # The proof's length is fixed by (index, size); checking it first names the fault precisely.
    expected = len(_inclusion_ranges(index, size))
    if len(proof) != expected:
        raise VerificationError(
            f"inclusion proof for index {index} in a tree of size {size} must have "
            f"{expected} hashes, it has {len(proof)}"
        )
    for i, p in enumerate(proof):
        _check_hash(p, f"inclusion proof hash {i}")
    # Step 2: fn = leaf_index, sn = tree_size - 1.  Step 3: r = hash.
    fn, sn = index, size - 1
    r = leaf_hash
    # Step 4: fold in each proof hash.
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    # Step 5: sn must be 0 and r must equal the root.
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise VerificationError(
            f"inclusion proof for index {index} in a tree of size {size} "
            f"leads to root {r.hex()}, not {root.hex()}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (``new_size``, ``new_root``) extends (``old_size``, ``old_root``).

    RFC 9162 §2.1.4.2, step by step, plus its edge cases: equal sizes need equal roots and an
    empty proof; an old size of 0 needs the empty tree's root and an empty proof. Returns
    nothing; raises ``VerificationError``.
    """
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    if not (isinstance(old_size, int) and isinstance(new_size, int)) or old_size < 0:
        raise VerificationError(f"consistency proof: sizes {old_size} and {new_size} must be ≥ 0")
    if old_size > new_size:
        raise VerificationError(
            f"consistency proof: old size {old_size} is larger than new size {new_size}"
        )
    expected = len(_consistency_ranges(old_size, new_size))
    if len(proof) != expected:
        raise VerificationError(
            f"consistency proof from size {old_size} to {new_size} must have "
            f"{expected} hashes, it has {len(proof)}"
        )
    for i, p in enumerate(proof):
        _check_hash(p, f"consistency proof hash {i}")
    if old_size == 0:
        if old_root != EMPTY_ROOT:
            raise VerificationError("a tree of size 0 must have the empty root")
        return
    if old_size == new_size:
        if old_root != new_root:
            raise VerificationError(
                f"two trees of size {old_size} have different roots "
                f"{old_root.hex()} and {new_root.hex()}"
            )
        return
    # Step 1: the proof is not empty (checked by the length above).
    # Step 2: if first is an exact power of 2, prepend first_hash to the path.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Step 3: fn = first - 1, sn = second - 1.
    fn, sn = old_size - 1, new_size - 1
    # Step 4: if LSB(fn) is set, right-shift both until it is not.
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # Step 5: fr and sr start at the first value of the path.
    fr = sr = path[0]
    # Step 6: fold in each subsequent value.
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    # Step 7: fr must equal first_hash, sr second_hash, and sn must be 0.
    if sn != 0:
        raise VerificationError("consistency proof is shorter than the path to the root")
    if fr != old_root:
        raise VerificationError(
            f"consistency proof does not lead to the old root of size {old_size} "
            f"({fr.hex()} instead of {old_root.hex()})"
        )
    if sr != new_root:
        raise VerificationError(
            f"consistency proof does not lead to the new root of size {new_size} "
            f"({sr.hex()} instead of {new_root.hex()})"
        )


# --- Input checks -----------------------------------------------------------------------------


def _check_hash(h: object, what: str, *, error: type[Exception] = VerificationError) -> None:
    if not isinstance(h, bytes):
        raise error(f"{what} must be bytes, got {type(h).__name__}")
    if len(h) != HASH_SIZE:
        raise error(f"{what} must be {HASH_SIZE} bytes, got {len(h)}")


def _check_size(size: int, what: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"{what} must be an integer ≥ 0, got {size!r}")


def _check_index(index: int, size: int) -> None:
    _check_size(size, "size")
    _check_size(index, "index")
    if index >= size:
        raise ValueError(f"index {index} is not below tree size {size}")


def _check_sizes(old_size: int, new_size: int) -> None:
    _check_size(old_size, "old size")
    _check_size(new_size, "new size")
    if old_size > new_size:
        raise ValueError(f"old size {old_size} is larger than new size {new_size}")
