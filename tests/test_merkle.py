"""The Merkle tree against published vectors, pymerkle, and tampering of every kind."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from coi.ledger import merkle
from coi.ledger.errors import VerificationError
from coi.ledger.merkle import (
    EMPTY_ROOT,
    NodeId,
    TreeBuilder,
    consistency_plan,
    consistency_proof,
    frontier_nodes,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_from_nodes,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

# transparency-dev/merkle testonly/constants.go: LeafInputs, NodeHashes, RootHashes.
LEAF_INPUTS = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
NODE_HASHES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]
ROOT_HASHES = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# transparency-dev/merkle proof/verify_test.go: inclusionProofs (1-based leaf), consistencyProofs.
INCLUSION_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (3, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        2,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
CONSISTENCY_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def build(leaf_hashes: Sequence[bytes]) -> tuple[TreeBuilder, dict[NodeId, bytes]]:
    """A tree and the complete-subtree nodes a database adapter would have stored for it."""
    builder = TreeBuilder()
    nodes: dict[NodeId, bytes] = {}
    for lh in leaf_hashes:
        for level, index, node in builder.append(lh):
            assert (level, index) not in nodes
            nodes[(level, index)] = node
    return builder, nodes


def leaves_of(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


VECTOR_LEAVES = [leaf_hash(d) for d in LEAF_INPUTS]
_, VECTOR_NODES = build(VECTOR_LEAVES)


def only(nodes: dict[NodeId, bytes], plan: Sequence[NodeId]) -> dict[NodeId, bytes]:
    """Exactly the planned nodes: proves the proof reads nothing else."""
    return {node: nodes[node] for node in plan}


# --- Hashing and roots ------------------------------------------------------------------------


def test_hash_prefixes_are_rfc6962() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("size", range(9))
def test_roots_of_sizes_0_to_8_match_transparency_dev(size: int) -> None:
    assert root(VECTOR_LEAVES[:size]) == ROOT_HASHES[size]
    builder, nodes = build(VECTOR_LEAVES[:size])
    assert builder.size == size
    assert builder.root() == ROOT_HASHES[size]
    assert root_from_nodes(size, only(nodes, frontier_nodes(size))) == ROOT_HASHES[size]


def test_root_of_size_8_is_the_published_one() -> None:
    assert root(VECTOR_LEAVES).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )


def test_every_stored_node_matches_transparency_dev_node_hashes() -> None:
    for level, row in enumerate(NODE_HASHES):
        for index, node in enumerate(row):
            assert VECTOR_NODES[(level, index)] == node
    assert len(VECTOR_NODES) == sum(len(row) for row in NODE_HASHES)


def test_append_returns_the_nodes_it_completes() -> None:
    builder = TreeBuilder()
    sizes = [len(builder.append(lh)) for lh in VECTOR_LEAVES]
    # One leaf node plus one node per trailing one bit of the old size.
    assert sizes == [1, 2, 1, 3, 1, 2, 1, 4]
    assert builder.append(leaf_hash(b"9"))[0] == (0, 8, leaf_hash(b"9"))


def test_frontier_nodes() -> None:
    assert frontier_nodes(0) == []
    assert frontier_nodes(1) == [(0, 0)]
    assert frontier_nodes(6) == [(2, 0), (1, 2)]
    assert frontier_nodes(7) == [(2, 0), (1, 2), (0, 6)]
    assert frontier_nodes(8) == [(3, 0)]
    assert frontier_nodes(13) == [(3, 0), (2, 2), (0, 12)]


def test_resume_from_frontier_gives_the_same_tree() -> None:
    leaves = leaves_of(40)
    full, nodes = build(leaves)
    for size in range(41):
        frontier = [nodes[n] for n in frontier_nodes(size)]
        resumed = TreeBuilder.from_frontier(size, frontier)
        assert resumed.frontier == frontier
        resumed_nodes: dict[NodeId, bytes] = {}
        for lh in leaves[size:]:
            for level, index, node in resumed.append(lh):
                resumed_nodes[(level, index)] = node
        assert resumed.root() == full.root()
        assert all(nodes[k] == v for k, v in resumed_nodes.items())


def test_from_frontier_refuses_the_wrong_number_of_hashes() -> None:
    with pytest.raises(ValueError, match="3 frontier nodes"):
        TreeBuilder.from_frontier(7, [SOME_HASH, SOME_HASH])
    with pytest.raises(ValueError, match="32 bytes"):
        TreeBuilder.from_frontier(1, [b"short"])


def test_builder_refuses_a_leaf_hash_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TreeBuilder().append(b"leaf data, not a hash")


# --- Published proof vectors ------------------------------------------------------------------


@pytest.mark.parametrize(("leaf", "size", "expected"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_transparency_dev(
    leaf: int, size: int, expected: list[bytes]
) -> None:
    index = leaf - 1
    plan = inclusion_plan(index, size)
    proof = inclusion_proof(index, size, only(VECTOR_NODES, plan))
    assert proof == expected
    verify_inclusion(VECTOR_LEAVES[index], index, size, proof, ROOT_HASHES[size])


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_transparency_dev(
    old: int, new: int, expected: list[bytes]
) -> None:
    plan = consistency_plan(old, new)
    proof = consistency_proof(old, new, only(VECTOR_NODES, plan))
    assert proof == expected
    verify_consistency(old, new, ROOT_HASHES[old], ROOT_HASHES[new], proof)


def inclusion_probes(
    index: int, size: int, proof: list[bytes], root_: bytes, lh: bytes
) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    """transparency-dev's corruptInclusionProof: every probe must fail."""
    probes = [
        ("index - 1", index - 1, size, lh, proof, root_),
        ("index + 1", index + 1, size, lh, proof, root_),
        ("index ^ 2", index ^ 2, size, lh, proof, root_),
        ("size * 2", index, size * 2, lh, proof, root_),
        ("size // 2", index, size // 2, lh, proof, root_),
        ("wrong leaf", index, size, leaf_hash(b"WrongLeaf"), proof, root_),
        ("empty root", index, size, lh, proof, EMPTY_ROOT),
        ("random root", index, size, lh, proof, SOME_HASH),
        ("trailing garbage", index, size, lh, [*proof, b""], root_),
        ("trailing root", index, size, lh, [*proof, root_], root_),
        ("preceding garbage", index, size, lh, [b"", *proof], root_),
        ("preceding root", index, size, lh, [root_, *proof], root_),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((f"proof[{i}] bit 3", index, size, lh, wrong, root_))
    if proof:
        probes.append(("removed component", index, size, lh, proof[:-1], root_))
    if len(proof) > 1:
        probes.append(
            ("inserted component", index, size, lh, [proof[0], SOME_HASH, *proof[1:]], root_)
        )
    return probes


@pytest.mark.parametrize(("leaf", "size", "expected"), INCLUSION_VECTORS)
def test_corrupted_inclusion_proofs_fail(leaf: int, size: int, expected: list[bytes]) -> None:
    index = leaf - 1
    for desc, i, n, lh, proof, root_ in inclusion_probes(
        index, size, expected, ROOT_HASHES[size], VECTOR_LEAVES[index]
    ):
        with pytest.raises(VerificationError):
            verify_inclusion(lh, i, n, proof, root_)
            pytest.fail(f"verified against {desc}")


def consistency_probes(
    old: int, new: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """transparency-dev's corruptConsistencyProof: every probe must fail."""
    probes = [
        ("old - 1", old - 1, new, root1, root2, proof),
        ("old + 1", old + 1, new, root1, root2, proof),
        ("old ^ 2", old ^ 2, new, root1, root2, proof),
        ("new * 2", old, new * 2, root1, root2, proof),
        ("new // 2", old, new // 2, root1, root2, proof),
        ("wrong root1", old, new, SOME_HASH, root2, proof),
        ("wrong root2", old, new, root1, SOME_HASH, proof),
        ("swapped roots", old, new, root2, root1, proof),
        ("empty proof", old, new, root1, root2, []),
        ("trailing garbage", old, new, root1, root2, [*proof, b""]),
        ("trailing root1", old, new, root1, root2, [*proof, root1]),
        ("trailing root2", old, new, root1, root2, [*proof, root2]),
        ("preceding garbage", old, new, root1, root2, [b"", *proof]),
        ("preceding root1", old, new, root1, root2, [root1, *proof]),
        ("preceding root2", old, new, root1, root2, [root2, *proof]),
        ("preceding proof[0]", old, new, root1, root2, [proof[0], *proof]),
        ("truncated proof", old, new, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((f"proof[{i}] bit 4", old, new, root1, root2, wrong))
    return probes


@pytest.mark.parametrize(("old", "new", "expected"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_corrupted_consistency_proofs_fail(old: int, new: int, expected: list[bytes]) -> None:
    for desc, o, n, r1, r2, proof in consistency_probes(
        old, new, ROOT_HASHES[old], ROOT_HASHES[new], expected
    ):
        with pytest.raises(VerificationError):
            verify_consistency(o, n, r1, r2, proof)
            pytest.fail(f"verified against {desc}")


# --- Degenerate inputs (transparency-dev TestVerifyInclusion / TestVerifyConsistency) ------------


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (1, 1), (-1, 1)])
def test_inclusion_refuses_an_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(VerificationError, match="index"):
        verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


def test_inclusion_single_entry() -> None:
    lh = leaf_hash(b"data")
    verify_inclusion(lh, 0, 1, [], lh)
    with pytest.raises(VerificationError, match="leaf hash must be 32 bytes"):
        verify_inclusion(b"", 0, 1, [], lh)
    with pytest.raises(VerificationError, match="root hash must be 32 bytes"):
        verify_inclusion(lh, 0, 1, [], b"")
    with pytest.raises(VerificationError, match="leads to root"):
        verify_inclusion(lh, 0, 1, [], SOME_HASH)


def test_inclusion_names_a_wrong_proof_length() -> None:
    with pytest.raises(VerificationError, match="must have 3 hashes, it has 2"):
        verify_inclusion(VECTOR_LEAVES[0], 0, 8, [SOME_HASH, SOME_HASH], ROOT_HASHES[8])


def test_consistency_edge_cases() -> None:
    r1, r2 = SOME_HASH, leaf_hash(b"other")
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, r2, [])
    verify_consistency(1, 1, r2, r2, [])
    with pytest.raises(VerificationError, match="different roots"):
        verify_consistency(1, 1, r1, r2, [])
    with pytest.raises(VerificationError, match="empty root"):
        verify_consistency(0, 0, r1, r1, [])
    with pytest.raises(VerificationError, match="old size 1 is larger than new size 0"):
        verify_consistency(1, 0, r1, r2, [])
    with pytest.raises(VerificationError, match="larger"):
        verify_consistency(2, 1, r1, r2, [])
    with pytest.raises(VerificationError, match="must have 1 hashes, it has 0"):
        verify_consistency(1, 2, r1, r2, [])
    for old, new in [(0, 0), (0, 1), (1, 1)]:
        with pytest.raises(VerificationError, match="must have 0 hashes, it has 1"):
            verify_consistency(old, new, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    with pytest.raises(VerificationError, match="must be 32 bytes"):
        verify_consistency(1, 1, b"don't care 1", b"don't care 1", [])


def test_plans_refuse_degenerate_requests() -> None:
    with pytest.raises(ValueError, match="not below"):
        inclusion_plan(3, 3)
    with pytest.raises(ValueError, match="larger"):
        consistency_plan(4, 3)
    with pytest.raises(ValueError, match="≥ 0"):
        inclusion_plan(-1, 3)
    assert consistency_plan(0, 5) == []
    assert consistency_plan(5, 5) == []


def test_a_missing_stored_node_is_named() -> None:
    with pytest.raises(KeyError, match=r"level 1, index 1"):
        inclusion_proof(0, 4, {(0, 1): SOME_HASH})


# --- Properties over random trees -------------------------------------------------------------

_, BIG_NODES = build(leaves_of(320))
BIG_LEAVES = leaves_of(320)
BIG_ROOTS = [root(BIG_LEAVES[:n]) for n in range(321)]


def flip(proof: list[bytes], item: int, bit: int) -> list[bytes]:
    wrong = list(proof)
    byte, shift = divmod(bit, 8)
    target = bytearray(wrong[item])
    target[byte] ^= 1 << shift
    wrong[item] = bytes(target)
    return wrong


def path_shape(index: int, size: int) -> list[bool]:
    """For each proof hash, leaf upwards: is the sibling on the right?"""
    return [lo > index for lo, _ in merkle._inclusion_ranges(index, size)]


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(min_value=1, max_value=300))
    return draw(st.integers(min_value=0, max_value=size - 1)), size


@st.composite
def old_and_new(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(min_value=1, max_value=300))
    return draw(st.integers(min_value=1, max_value=new)), new


@settings(max_examples=300, deadline=None)
@given(index_and_size(), st.data())
def test_every_inclusion_proof_from_stored_nodes_verifies(
    case: tuple[int, int], data: st.DataObject
) -> None:
    index, size = case
    plan = inclusion_plan(index, size)
    assert len(plan) <= 2 * size.bit_length()  # O(log n) node reads
    proof = inclusion_proof(index, size, only(BIG_NODES, plan))
    verify_inclusion(BIG_LEAVES[index], index, size, proof, BIG_ROOTS[size])

    # Any single-bit change to a proof hash, the leaf or the root makes it fail.
    if proof:
        item = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        with pytest.raises(VerificationError):
            verify_inclusion(
                BIG_LEAVES[index], index, size, flip(proof, item, bit), BIG_ROOTS[size]
            )
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(VerificationError):
        verify_inclusion(flip([BIG_LEAVES[index]], 0, bit)[0], index, size, proof, BIG_ROOTS[size])
    with pytest.raises(VerificationError):
        verify_inclusion(BIG_LEAVES[index], index, size, proof, flip([BIG_ROOTS[size]], 0, bit)[0])

    # A wrong index or size makes it fail.
    other_index = data.draw(st.integers(0, 320).filter(lambda i: i != index))
    with pytest.raises(VerificationError):
        verify_inclusion(BIG_LEAVES[index], other_index, size, proof, BIG_ROOTS[size])
    other_size = data.draw(st.integers(1, 320).filter(lambda n: n != size))
    with pytest.raises(VerificationError):
        verify_inclusion(BIG_LEAVES[index], index, other_size, proof, BIG_ROOTS[other_size])
    # With this tree's own root a wrong size fails too, unless both sizes give the path the same
    # left/right shape (leaf 0 of 129 or 130 leaves): RFC 9162 proofs do not bind the size; the
    # signed checkpoint binds size and root together.
    try:
        verify_inclusion(BIG_LEAVES[index], index, other_size, proof, BIG_ROOTS[size])
    except VerificationError:
        pass
    else:
        assert path_shape(index, other_size) == path_shape(index, size)


@settings(max_examples=300, deadline=None)
@given(old_and_new(), st.data())
def test_every_consistency_proof_from_stored_nodes_verifies(
    case: tuple[int, int], data: st.DataObject
) -> None:
    old, new = case
    plan = consistency_plan(old, new)
    assert len(plan) <= 2 * new.bit_length()
    proof = consistency_proof(old, new, only(BIG_NODES, plan))
    verify_consistency(old, new, BIG_ROOTS[old], BIG_ROOTS[new], proof)
    if old == new:
        return

    item = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(VerificationError):
        verify_consistency(old, new, BIG_ROOTS[old], BIG_ROOTS[new], flip(proof, item, bit))
    with pytest.raises(VerificationError):
        verify_consistency(old, new, flip([BIG_ROOTS[old]], 0, bit)[0], BIG_ROOTS[new], proof)
    with pytest.raises(VerificationError):
        verify_consistency(old, new, BIG_ROOTS[old], flip([BIG_ROOTS[new]], 0, bit)[0], proof)

    # A wrong size on either side fails, even with the true root of that wrong size.
    other_old = data.draw(st.integers(1, new).filter(lambda n: n != old))
    with pytest.raises(VerificationError):
        verify_consistency(other_old, new, BIG_ROOTS[other_old], BIG_ROOTS[new], proof)
    other_new = data.draw(st.integers(old, 320).filter(lambda n: n != new))
    with pytest.raises(VerificationError):
        verify_consistency(old, other_new, BIG_ROOTS[old], BIG_ROOTS[other_new], proof)


def test_proofs_do_not_verify_across_the_wrong_leaf_for_every_small_tree() -> None:
    for size in range(1, 33):
        for index in range(size):
            proof = inclusion_proof(index, size, BIG_NODES)
            verify_inclusion(BIG_LEAVES[index], index, size, proof, BIG_ROOTS[size])
            for other in range(size):
                if other != index:
                    with pytest.raises(VerificationError):
                        verify_inclusion(BIG_LEAVES[other], index, size, proof, BIG_ROOTS[size])


# --- Cross-check against pymerkle (RFC 6962 prefixes: disable_security=False) ---------------------


def test_roots_and_inclusion_proofs_agree_with_pymerkle() -> None:
    tree = InmemoryTree(algorithm="sha256", disable_security=False)
    data = [f"entry {i}".encode() for i in range(70)]
    ours = [leaf_hash(d) for d in data]
    for d in data:
        tree.append_entry(d)
    _, nodes = build(ours)
    for size in range(1, 71):
        assert tree.get_root(size) == root(ours[:size]) == root_from_nodes(size, nodes)
        for index in range(size):
            theirs = tree.prove_inclusion(index + 1, size)  # pymerkle counts from one
            assert theirs.path[0] == ours[index]
            assert theirs.path[1:] == inclusion_proof(index, size, nodes)


def test_consistency_proofs_verify_between_pymerkle_roots() -> None:
    tree = InmemoryTree(algorithm="sha256", disable_security=False)
    data = [f"entry {i}".encode() for i in range(40)]
    for d in data:
        tree.append_entry(d)
    _, nodes = build([leaf_hash(d) for d in data])
    for new in range(1, 41):
        for old in range(1, new + 1):
            proof = consistency_proof(old, new, nodes)
            verify_consistency(old, new, tree.get_root(old), tree.get_root(new), proof)


def test_module_exports_are_present() -> None:
    for name in merkle.__all__:
        assert hasattr(merkle, name)
