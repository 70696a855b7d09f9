"""Writing an audit bundle: the signed entries of a product, a period or the whole log, in one file.

Owns choosing the rows (``Scope``), streaming them in index order with the key events they need,
the inclusion proofs of a partial export, and the manifest, written atomically (temporary file,
fsync, rename: on any error no file, and no half-written one, is left). The format is
docs/export.md's; ``coi.export.verifier`` is its reader.

The rows, key events and tree nodes come from the caller (a ``RowSource``: the service passes
its ledger store), and the bundle's head from the signed checkpoint it is given: this package
imports nothing that reaches a database, so what an auditor runs carries no storage code.

Why JSON Lines and not a ZIP: one line per record streams both ways in bounded memory, opens
with a text editor, ``jq`` or any JSON library, and holds no byte that means nothing. A ZIP
carries timestamps, extra fields and padding that unzip tools ignore, so a flipped bit there
would go unnoticed; here every byte before the manifest is under its SHA-256, and the manifest
itself must be exactly the one encoding of the values it states.
"""

from __future__ import annotations

import hashlib
import heapq
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coi.export.verifier import (
    FORMAT,
    KINDS,
    VERSION,
    encode_line,
    manifest_note_text,
)
from coi.ledger import jcs, merkle, note
from coi.ledger.entry import StoredEntry, b64
from coi.ledger.registry import KEY_EVENT_TYPES

Progress = Callable[[int, int], None]
BATCH = 2000


class RowSource(Protocol):
    """The stored ledger as the bundle writer reads it (the service's ledger store is one)."""

    def rows(self, start: int = 0, stop: int | None = None, *, batch: int = ...
             ) -> Iterator[StoredEntry]:
        """Rows ``start <= index < stop``, in index order, read ``batch`` at a time."""
        ...

    def rows_where(self, *, subject: str | None = None, since_ms: int | None = None,
                   until_ms: int | None = None, below: int | None = None,
                   types: Iterable[str] | None = None, batch: int = ...
                   ) -> Iterator[StoredEntry]:
        """Rows matching every filter given (subject; time in [since, until); index below;
        one of the types), in index order, read ``batch`` at a time."""
        ...

    def nodes(self, ids: Iterable[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        """The stored tree nodes of those ``(level, index)``, where stored."""
        ...


class ExportError(Exception):
    """The export cannot be made (nothing matches, or the file cannot be written)."""


class EmptyScope(ExportError):
    """No entry of the ledger is in the export's scope (an unknown product, an empty period)."""


class OutputExists(ExportError):
    """The output file exists and the caller asked not to overwrite it."""


@dataclass(frozen=True)
class Scope:
    """Which entries a bundle is about: ``all``, one product (``coi``) or [since, until)."""

    mode: str
    coi: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        if self.mode == "all":
            return {"mode": "all"}
        if self.mode in ("coi", "handoff"):
            return {"mode": self.mode, "coi": self.coi}
        return {"mode": "period", "since_ms": self.since_ms, "until_ms": self.until_ms}

    def check(self) -> None:
        if self.mode in ("coi", "handoff") and not self.coi:
            raise ExportError("a product export needs a chain-of-identity identifier")
        if self.mode == "period" and (self.since_ms is None or self.until_ms is None
                                      or self.since_ms >= self.until_ms):
            raise ExportError("a period export needs --since before --until")
        if self.mode not in ("all", "coi", "period", "handoff"):
            raise ExportError(f"unknown export scope {self.mode!r}")


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    entries: int
    in_scope: int
    tree_size: int
    bytes: int
    bundle_sha256: str
    file_sha256: str = ""  # of the whole file, manifest included: what ``sha256sum`` prints


def scope_rows(store: RowSource, scope: Scope, size: int, *, batch: int = BATCH
               ) -> Iterator[StoredEntry]:
    """The rows in ``scope`` below ``size``, in index order, read in pages (bounded memory)."""
    if scope.mode == "all":  # rows_where: from the read replica when it holds them all
        return store.rows_where(below=size, batch=batch)
    if scope.mode in ("coi", "handoff"):
        return store.rows_where(subject=scope.coi, below=size, batch=batch)
    return store.rows_where(since_ms=scope.since_ms, until_ms=scope.until_ms, below=size,
                            batch=batch)


def _with_key_events(store: RowSource, scope: Scope, size: int, batch: int
                     ) -> Iterator[tuple[StoredEntry, bool]]:
    """Scope rows merged with every key event up to the last of them: (row, in scope).

    Both sides are streamed (the key events too): memory is O(batch + key events met since the
    last row in scope), not O(rows).
    """
    if scope.mode == "all":
        for r in scope_rows(store, scope, size, batch=batch):
            yield r, True
        return
    keys = store.rows_where(types=KEY_EVENT_TYPES, below=size, batch=batch)
    pending: list[StoredEntry] = []  # key events met since the last row in scope
    merged = heapq.merge(((r.index, 1, r) for r in keys),
                         ((r.index, 0, r) for r in scope_rows(store, scope, size, batch=batch)),
                         key=lambda t: (t[0], t[1]))
    last = -1
    for index, is_key, r in merged:
        if index == last:
            continue  # a key event that is also in scope: already written
        if is_key:
            pending.append(r)
            continue
        for k in pending:
            yield k, False
        pending.clear()
        last = index
        yield r, True
    # Key events after the last exported entry are not needed to verify it: left out.


def _proofs(store: RowSource, rows: Sequence[StoredEntry], size: int
            ) -> list[list[bytes]]:
    plan: dict[tuple[int, int], None] = {}
    for r in rows:
        for n in merkle.inclusion_plan(r.index, size):
            plan[n] = None
    nodes = store.nodes(plan)
    try:
        return [merkle.inclusion_proof(r.index, size, nodes) for r in rows]
    except merkle.NodeError as e:  # a stored node missing or not a hash
        raise ExportError(f"the stored Merkle tree is damaged ({e}); nothing was exported: "
                          "run `coi verify`") from None


def _process_record(rows_first: StoredEntry, process_toml: bytes | None) -> bytes | None:
    if process_toml is None:
        return None
    genesis = jcs.decode(rows_first.statement)
    proc = genesis.get("data", {}).get("process")
    sha = hashlib.sha256(process_toml).hexdigest()
    if not isinstance(proc, dict) or proc.get("sha256") != sha:
        return None  # not the process in force: an auditor would be misled by its titles
    return encode_line({"kind": "process", "sha256": sha, "toml": b64(process_toml)})


class _Sink:
    """The bundle file being written: per-kind and whole-file hashes as the bytes go out."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.whole = hashlib.sha256()
        self.kinds: dict[str, tuple[int, Any]] = {}
        self.size = 0

    def write(self, kind: str, line: bytes) -> None:
        n, h = self.kinds.get(kind, (0, hashlib.sha256()))
        h.update(line)
        self.kinds[kind] = (n + 1, h)
        self.whole.update(line)
        self.f.write(line)
        self.size += len(line)


def export_bundle(store: RowSource, out: Path, *, scope: Scope, checkpoint: str,
                  log_key: Ed25519PrivateKey, created_ms: int,
                  process_toml: bytes | None = None, progress: Progress | None = None,
                  batch: int = BATCH, overwrite: bool = True,
                  handoff: Mapping[str, Any] | None = None) -> ExportSummary:
    """Write the bundle of ``scope`` against the signed ``checkpoint`` (its size bounds the rows).

    ``log_key`` signs the manifest (so a record cannot be dropped and the manifest recomputed);
    ``checkpoint`` must be signed by it, and names the log (its origin) and the tree size.
    ``progress(done, total)`` is called after each batch with the index reached; whatever it
    raises stops the export and leaves no file. With ``overwrite=False`` an existing ``out`` is
    refused (``OutputExists``), before anything is written and again, atomically, at the end.
    ``handoff``: the record of a hand-off file (scope ``handoff``; docs/federation.md).
    """
    scope.check()
    named = note.parse_checkpoint(checkpoint.split("\n\n", 1)[0] + "\n").origin
    text = note.open_note(checkpoint, [note.parse_verifier_key(
        note.verifier_key(named, log_key.public_key()))]).text
    cp = note.parse_checkpoint(text)
    size, origin = cp.size, cp.origin
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"folder {parent} does not exist")
    if out.is_dir():
        raise ExportError(f"{out} is a folder")
    if not overwrite and out.exists():
        raise OutputExists(f"{out} exists; refusing to overwrite it")
    tmp = parent / f".{out.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            summary = _write(store, f, scope=scope, size=size, origin=origin,
                             checkpoint=checkpoint, log_key=log_key, created_ms=created_ms,
                             process_toml=process_toml, progress=progress, batch=batch,
                             handoff=handoff)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, out)
        else:
            _link_new(tmp, out)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return ExportSummary(path=out, entries=summary[0], in_scope=summary[1], tree_size=size,
                         bytes=summary[2], bundle_sha256=summary[3], file_sha256=summary[4])


def _link_new(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out`` only if ``out`` does not exist (no window between check and move)."""
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise OutputExists(f"{out} exists; refusing to overwrite it") from None
    except OSError:  # a file system without hard links: check, then rename
        if out.exists():
            raise OutputExists(f"{out} exists; refusing to overwrite it") from None
        os.replace(tmp, out)


def _write(store: RowSource, f: BinaryIO, *, scope: Scope, size: int, origin: str,
           checkpoint: str, log_key: Ed25519PrivateKey, created_ms: int,
           process_toml: bytes | None, progress: Progress | None, batch: int,
           handoff: Mapping[str, Any] | None = None) -> tuple[int, int, int, str, str]:
    sink = _Sink(f)
    vkey = note.verifier_key(origin, log_key.public_key())
    sink.write("header", encode_line({
        "kind": "header", "format": FORMAT, "version": VERSION, "origin": origin,
        "log_key": vkey, "scope": scope.to_json(), "tree_size": size, "created_ms": created_ms}))
    sink.write("checkpoint", encode_line({"kind": "checkpoint", "note": checkpoint}))
    if (handoff is not None) != (scope.mode == "handoff"):
        raise ExportError("a hand-off file, and only one, carries a handoff record")
    if handoff is not None:
        sink.write("handoff", encode_line(handoff))
    first = True
    entries = in_scope = 0
    buf: list[tuple[StoredEntry, bool]] = []

    def flush() -> None:
        nonlocal entries, in_scope
        proofs = ([[] for _ in buf] if scope.mode == "all"
                  else _proofs(store, [r for r, _ in buf], size))
        for (r, inside), proof in zip(buf, proofs, strict=True):
            sink.write("entry", encode_line({
                "kind": "entry", "index": r.index, "in_scope": inside, "hash": r.entry_hash,
                "statement": b64(r.statement), "signatures": b64(r.signatures),
                "proof": [b64(h) for h in proof]}))
            entries += 1
            in_scope += inside
        if progress is not None and buf:
            progress(buf[-1][0].index + 1, size)
        buf.clear()

    for r, inside in _with_key_events(store, scope, size, batch):
        if first:
            rec = _process_record(r, process_toml)
            if rec is not None:
                sink.write("process", rec)
            first = False
        buf.append((r, inside))
        if len(buf) >= batch:
            flush()
    flush()
    if in_scope == 0:
        raise EmptyScope("no entry matches the export's scope")
    whole = sink.whole.hexdigest()
    signed = note.sign_note(manifest_note_text(origin, whole), origin, log_key)
    kinds = [k for k in KINDS if k in sink.kinds]
    manifest = encode_line({
        "kind": "manifest",
        "counts": {k: sink.kinds[k][0] for k in kinds},
        "sha256": {k: sink.kinds[k][1].hexdigest() for k in kinds},
        "bundle_sha256": whole, "signature": signed})
    sink.f.write(manifest)
    file_hash = sink.whole.copy()
    file_hash.update(manifest)
    if progress is not None:
        progress(size, size)
    return entries, in_scope, sink.size, whole, file_hash.hexdigest()
