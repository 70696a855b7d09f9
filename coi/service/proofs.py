"""Checkpoints and proofs: the signed checkpoint of the head, inclusion and consistency proofs.

Owns the ledger service's part about proofs (``LedgerService`` is made of this class and the
others of ``ledger``): signing (or fetching) the checkpoint of the current head with the log
key, the root at any size, and inclusion and consistency proofs built from the stored tree
nodes, each checked against its root before it is given out. At the head's size the root is
the head's (what checkpoints sign); a stored node missing or not a hash is a damaged ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from coi.ledger import merkle, note
from coi.ledger.entry import b64
from coi.ledger.errors import VerificationError
from coi.service.errors import Refused
from coi.service.ledger_core import LedgerCore


class Proofs(LedgerCore):
    def checkpoint(self) -> str:
        """Sign (or fetch) the checkpoint of the current head."""
        head = self.require_initialised()
        existing = self.store.checkpoint_at(head.size)
        if existing is not None:
            return existing
        body = note.format_checkpoint(head.origin, head.size, head.root)
        signed = note.sign_note(body, head.origin, self.log_key())
        self.store.save_checkpoint(head.size, signed)
        return signed

    def root_at(self, size: int) -> bytes:
        nodes = self.store.nodes(merkle.frontier_nodes(size))
        with _stored_tree():
            return merkle.root_from_nodes(size, nodes)

    def prove_inclusion(self, index: int, size: int | None = None) -> dict[str, Any]:
        head = self.require_initialised()
        size = head.size if size is None else size
        if not 0 < size <= head.size:
            raise Refused(f"size must be between 1 and {head.size}")
        if not 0 <= index < size:
            raise Refused(f"index must be between 0 and {size - 1}")
        # At the head's size the root is the head's (what checkpoints sign); below it, it is
        # rebuilt from the stored nodes. Either way the proof is checked against it here.
        at_head = size == head.size
        nodes = self.store.nodes(merkle.inclusion_plan(index, size) + [(0, index)]
                                 + ([] if at_head else merkle.frontier_nodes(size)))
        with _stored_tree():
            proof = merkle.inclusion_proof(index, size, nodes)
            root = head.root if at_head else merkle.root_from_nodes(size, nodes)
            leaf = merkle.stored_node(nodes, (0, index))
        merkle.verify_inclusion(leaf, index, size, proof, root)
        return {"index": index, "size": size, "leaf_hash": b64(leaf), "root": b64(root),
                "proof": [b64(h) for h in proof]}

    def prove_consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        head = self.require_initialised()
        new = head.size if new is None else new
        if not 0 < old <= new <= head.size:
            raise Refused(f"need 0 < OLD ≤ NEW ≤ {head.size}")
        at_head = new == head.size  # as for inclusion: the head's root at its size
        nodes = self.store.nodes(merkle.consistency_plan(old, new) + merkle.frontier_nodes(old)
                                 + ([] if at_head else merkle.frontier_nodes(new)))
        with _stored_tree():
            proof = merkle.consistency_proof(old, new, nodes)
            old_root = merkle.root_from_nodes(old, nodes)
            new_root = head.root if at_head else merkle.root_from_nodes(new, nodes)
        merkle.verify_consistency(old, new, old_root, new_root, proof)
        return {"old_size": old, "new_size": new, "old_root": b64(old_root),
                "new_root": b64(new_root), "proof": [b64(h) for h in proof]}


@contextmanager
def _stored_tree() -> Iterator[None]:
    """A proof or root built from stored tree nodes: a node missing or not a hash is a
    damaged ledger (exit 1, the reason), not a crash."""
    try:
        yield
    except merkle.NodeError as e:
        raise VerificationError(f"the stored Merkle tree is damaged ({e}): run `coi verify`"
                                ) from None

