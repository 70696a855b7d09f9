"""Whole-ledger verification as ``coi verify`` runs it: the stored rows, tree, head, checkpoints.

Owns the ledger service's part about verification (``LedgerService`` is made of this class
and the others of ``ledger``). The rows and the tree nodes are checked in batches by the
verify pool (``coi.verify_pool``: in this process, or in several with ``jobs``), fed in order
to the core's ``LedgerVerifier`` with an optional hook (the process replay); around that, this
module checks what only the whole store can tell: the head row readable, no row missing below
the head or stored beyond it, the head's last hash, time and root those of the entries, the
tree holding exactly the nodes a tree of that size has, and every stored checkpoint and every
one given checked against the rebuilt root at its size and signed by the log key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import closing

from coi.db.chain_repo import ChainStore
from coi.db.repo import Head, LedgerStore
from coi.db.tx import Tx
from coi.ledger import note
from coi.ledger.errors import VerificationError
from coi.ledger.verify import EntryHook, LedgerVerifier, VerifiedLog
from coi.service.errors import ConfigError
from coi.service.ledger_core import LedgerCore
from coi.verify_pool.pool import verify_batches

BesideCheck = Callable[[VerifiedLog, ChainStore, Tx], None]


class Verification(LedgerCore):
    read_from = "primary"  # where the last ``verify`` read the ledger: "primary" or "replica"

    def verify(self, *, jobs: int = 1, checkpoints: Sequence[str] = (),
               hook: EntryHook | None = None,
               progress: Callable[[int, int], None] | None = None,
               replica: bool = False, beside: BesideCheck | None = None) -> VerifiedLog:
        """Verify the whole stored ledger (see the module docstring); raise
        ``VerificationError`` naming the first bad entry. ``checkpoints``: notes someone kept,
        which the ledger must still agree with.

        The head, the checkpoints, the node count and what ``beside`` checks (the tables kept
        beside the ledger) are read in one snapshot, so entries appended meanwhile are neither
        counted nor taken for rows behind the ledger's back. ``replica``: read from the read
        replica (``COI_READ_DATABASE_URL``) if one is configured and it holds every checkpoint
        given; else from the primary. ``read_from`` then says which was read."""
        try:
            if self.db.has_table("ledger_head"):
                self.store.head()
        except (TypeError, ValueError, AttributeError):  # NULL or malformed head columns
            raise VerificationError("the ledger's head row is damaged (an empty or malformed "
                                    "column)") from None
        try:
            self.require_initialised()
        except ConfigError:
            # No head row, yet entries are stored: the head was deleted or its key changed.
            if self.db.has_table("ledger_entry") and self.store.count_rows():
                raise VerificationError(
                    f"the ledger's head row is missing but {self.store.count_rows()} entries "
                    "are stored") from None
            raise
        given = [_parse_given(n) for n in checkpoints]
        if replica and self.db.read_url is not None:
            with self.db.snapshot(replica=True) as (store, chain, tx):
                head = _snapshot_head(store, tx)
                if head is not None and head.size >= max((g.size for g in given), default=0):
                    self.read_from = "replica"
                    return self._verify_store(head, store, chain, tx, jobs=jobs, given=given,
                                              hook=hook, progress=progress, beside=beside)
        self.read_from = "primary"
        with self.db.snapshot() as (store, chain, tx):
            head = _snapshot_head(store, tx)
            if head is None:
                raise VerificationError("the ledger's head row went away during verification")
            return self._verify_store(head, store, chain, tx, jobs=jobs, given=given,
                                      hook=hook, progress=progress, beside=beside)

    def _verify_store(self, head: Head, store: LedgerStore, chain: ChainStore, tx: Tx, *,
                      jobs: int, given: list[_Given], hook: EntryHook | None,
                      progress: Callable[[int, int], None] | None,
                      beside: BesideCheck | None) -> VerifiedLog:
        origin = head.origin
        if not all(isinstance(x, int) for x in (head.size, head.last_time_ms)) or not origin:
            raise VerificationError("the ledger's head row is damaged (an empty or malformed "
                                    "column)")
        # Read as far as the head says; rows it does not account for are looked for afterwards
        # (a tampered index or head size can be huge: never enumerate up to it).
        v = LedgerVerifier(origin, hook=hook)
        stored = store.checkpoints(tx=tx)
        for size, text in stored:
            if not isinstance(text, str):
                raise VerificationError(f"stored checkpoint at size {size} is empty")
        sizes = sorted({g.size for g in given} | {size for size, _text in stored})

        def at_size(n: int, root: bytes) -> None:
            _at_size(n, root, given, stored)

        source = self.db.reader_source(replica=self.read_from == "replica")
        with closing(source.open()) as here:
            verify_batches(v, here, source, upto=head.size, jobs=jobs, sizes=sizes,
                           everything=hook is not None, at_size=at_size, progress=progress)
        extra = store.first_index_from(v.size, tx=tx)
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
        stored_nodes = store.count_nodes(tx=tx)
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
                raise VerificationError(f"stored checkpoint row {size} holds a checkpoint of "
                                        f"size {cp.size} for {cp.origin!r}")
            if size > result.size:
                raise VerificationError(
                    f"a checkpoint was signed at size {size} but only {result.size} entries are "
                    "stored: entries were deleted from the tail or an old copy was restored",
                    index=result.size)
        for text in (g.text for g in given):
            cp = _open(text, verifier, "the given checkpoint")
            if cp.origin != origin:
                raise VerificationError(f"the given checkpoint is for log {cp.origin!r}")
            if cp.size > result.size:
                raise VerificationError(
                    f"the given checkpoint is for {cp.size} entries but only {result.size} are "
                    "stored: entries were deleted from the tail or an old copy was restored",
                    index=result.size)
        if beside is not None:
            beside(result, chain, tx)
        return result


class _Given:
    def __init__(self, text: str, size: int, root: bytes) -> None:
        self.text, self.size, self.root = text, size, root


def _snapshot_head(store: LedgerStore, tx: Tx) -> Head | None:
    try:
        return store.head(tx=tx)
    except (TypeError, ValueError, AttributeError):
        raise VerificationError("the ledger's head row is damaged (an empty or malformed "
                                "column)") from None


def _parse_given(text: str) -> _Given:
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
