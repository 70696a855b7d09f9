"""The offline verifier of an audit bundle (docs/export.md): stdlib, cryptography, coi.ledger.

Owns every check an auditor runs on a bundle file, with no database and nothing else of coi
(import-linter enforces it). The bundle is JSON Lines: one compact JSON object per line, keys in
a fixed order, ASCII only; a header, the signed checkpoint, optionally the process definition,
the entries in index order, and a manifest last. Steps, cited where they happen:

0. the manifest (below) against the hashes of the raw lines, computed as the lines go by; when
   any check fails, the file is read again for these hashes alone, so that a damaged file is
   reported as damaged rather than by the first symptom met (a good bundle is read once);
1. every line is well formed: ASCII, at most ``MAX_LINE`` bytes, ends in LF, is exactly the
   compact encoding of its own value with the keys in the order docs/export.md gives, and the
   records come in the order header, checkpoint, [process], entries, manifest;
2. the header names this format and version; its log verifier key parses, is named for the
   origin and, when the caller trusts a key (``--trust``), is that key;
3. the checkpoint is signed by the log key for this origin and is for ``tree_size`` entries
   (witness cosignatures are kept for the report; lines from unknown keys are ignored);
4. each entry checks out on its own (``coi.ledger.entry.check_envelope``: canonical bytes, this
   log, this index, every signature, the entry hash; the statement is decoded once);
5. indices strictly increase below the checkpoint's size; the genesis is entry 0 and its
   ``prev`` is zero; where two entries are consecutive the second's ``prev`` is the first's
   hash; time never goes backwards; a product's entries chain by their back-links
   (``coi.ledger.links``: none dropped, moved or substituted; complete, or complete from N);
6. every signer's key is valid at that position: the key events (all of them up to the last
   exported index are in every bundle) and the exported entries are replayed in index order
   through the ledger's ``KeyRegistry``, which accepts gaps between indices;
7. an entry is marked in scope exactly when it matches the scope, and one outside it is a key
   event;
8. the entries are in the checkpoint's tree: each inclusion proof leads to its root, or, for a
   whole-log bundle, the tree rebuilt from all the entries has that root;
9. the process definition, when bundled, has the SHA-256 the genesis names; a hand-off file's
   ``handoff`` record agrees with the entries (``coi.export.handoff_record``);
10. the manifest: record counts and SHA-256 per kind of record, SHA-256 of every byte before the
    manifest line, and the log key's signature over that hash (so a record cannot be removed
    and the manifest recomputed without the site's log key).

``verify_bundle`` reads the file and feeds its lines to ``BundleVerifier``, which is pure and
raises ``VerificationError`` naming the line, and the entry where there is one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coi.export.handoff_record import Handoff, HandoffCheck, read_handoff
from coi.export.records import (
    FIELDS,
    FORMAT,
    KINDS,
    MANIFEST_NOTE_HEADER,
    MAX_LINE,
    SCOPE_FIELDS,
    VERSION,
    encode_line,
    hex64,
    manifest_note_text,
    nonempty_str,
    nonneg_int,
    parse_line,
    same_key,
    unb64,
)
from coi.ledger.entry import GENESIS_PREV, Statement, check_envelope
from coi.ledger.errors import LedgerError, VerificationError
from coi.ledger.links import LastOnSubject, bundle_link_problem, link_problem
from coi.ledger.merkle import TreeBuilder, verify_inclusion
from coi.ledger.note import NoteVerifier, open_checkpoint, open_note, parse_verifier_key
from coi.ledger.registry import KEY_EVENT_TYPES, KeyRegistry

__all__ = [  # the record format's names are kept importable from here, the verifier's home
    "FIELDS",
    "FORMAT",
    "KINDS",
    "MANIFEST_NOTE_HEADER",
    "MAX_LINE",
    "VERSION",
    "BundleReport",
    "BundleVerifier",
    "encode_line",
    "manifest_note_text",
    "parse_line",
    "same_key",
    "verify_bundle",
    "verify_bytes",
    "verify_lines",
]


@dataclass(frozen=True)
class BundleReport:
    """What a verified bundle holds, for the command line and the human-readable copy."""

    origin: str
    log_key: str
    scope: Mapping[str, Any]
    tree_size: int
    root: bytes
    checkpoint: str
    cosigner_lines: tuple[str, ...]
    entries: int
    in_scope: int
    key_events: int
    first_index: int
    last_index: int
    subjects: int
    bundle_sha256: str
    process_sha256: str | None
    complete_from: int | None = None  # a product bundle: its back-link chain is whole from here
    complete: bool = False  # ... down to the product's first entry (``subject_prev`` null)
    handoff: Handoff | None = None  # a hand-off file's record, checked against the entries


@dataclass
class _Kind:
    count: int = 0
    sha: Any = field(default_factory=hashlib.sha256)


class BundleVerifier:
    """Feed a bundle's lines in order (``feed``), then ``finish``; pure over what it is given."""

    def __init__(self, *, trust: str | None = None, hashes_only: bool = False) -> None:
        self.trust = trust
        self.hashes_only = hashes_only
        self.line_no = 0
        self.whole = hashlib.sha256()
        self.kinds = {k: _Kind() for k in KINDS}
        self.stage = "header"
        self.origin = ""
        self.log_key = ""
        self.verifier: NoteVerifier | None = None
        self.scope: dict[str, Any] = {}
        self.tree_size = 0
        self.root = b""
        self.checkpoint = ""
        self.cosigner_lines: tuple[str, ...] = ()
        self.process_sha256: str | None = None
        self.registry = KeyRegistry()
        self.tree = TreeBuilder()
        self.last_index = -1
        self.last_hash = b""
        self.last_time = 0
        self.in_scope = 0
        self.key_events = 0
        self.subjects: set[str] = set()
        self.on_subject: dict[str, LastOnSubject] = {}  # the last entry in scope per subject
        self.complete_from: int | None = None
        self.complete = False
        self.handoff: HandoffCheck | None = None
        self.manifest: dict[str, Any] | None = None

    # -- steps 1 and the dispatch ------------------------------------------------------------------
    def feed(self, line: bytes) -> None:
        self.line_no += 1
        try:
            if self.manifest is not None:
                raise VerificationError("bytes after the manifest")
            if self.hashes_only and self.stage != "header" and line.startswith(b'{"kind":"') \
                    and not line.startswith(b'{"kind":"manifest"'):
                # Step 0: only the bytes' hashes (the header's and the manifest's are parsed).
                kind = line[9:line.find(b'"', 9)].decode("ascii", "replace")
                if kind not in KINDS:
                    raise VerificationError(f"unknown record kind {kind!r}")
                self._order(kind)
                self.kinds[kind].count += 1
                self.kinds[kind].sha.update(line)
                self.whole.update(line)
                return
            obj = parse_line(line)
            kind = obj["kind"]
            if kind == "manifest":
                self._manifest(obj)
                return
            self._order(kind)
            self.kinds[kind].count += 1
            self.kinds[kind].sha.update(line)
            getattr(self, "_" + kind)(obj)
            self.whole.update(line)
        except VerificationError as e:
            raise self._at(e) from None
        except (LedgerError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            raise self._at(VerificationError(f"malformed record ({e})")) from None

    def _at(self, e: VerificationError) -> VerificationError:
        return VerificationError(f"line {self.line_no}: {e.reason}", index=e.index)

    def _order(self, kind: str) -> None:
        order = {"header": 0, "checkpoint": 1, "handoff": 2, "process": 3, "entry": 4}
        expected = {"header": "header", "checkpoint": "checkpoint"}.get(self.stage)
        if expected is not None and kind != expected:
            raise VerificationError(f"expected the {expected} record here, found {kind}")
        if self.stage in ("handoff", "process", "entry") and order[kind] < order[self.stage]:
            raise VerificationError(f"a {kind} record after the {self.stage} records")
        if kind == self.stage and kind in ("header", "checkpoint", "handoff", "process") and \
                self.kinds[kind].count:
            raise VerificationError(f"a second {kind} record")
        self.stage = {"header": "checkpoint", "checkpoint": "handoff"}.get(kind, kind)

    # -- step 2 ----------------------------------------------------------------------------------
    def _header(self, obj: dict[str, Any]) -> None:
        if obj["format"] != FORMAT or obj["version"] != VERSION:
            raise VerificationError(f"not a {FORMAT} version {VERSION} file")
        self.origin = nonempty_str(obj["origin"], "header origin")
        self.log_key = nonempty_str(obj["log_key"], "header log_key")
        self.verifier = parse_verifier_key(self.log_key)
        if self.verifier.name != self.origin:
            raise VerificationError("the log key is named for another log than the origin")
        if self.trust is not None and not same_key(self.log_key, self.trust):
            raise VerificationError(f"the bundle's log key {self.log_key} is not the trusted "
                                    f"key {self.trust}")
        scope = obj["scope"]
        if not isinstance(scope, dict) or scope.get("mode") not in SCOPE_FIELDS or \
                tuple(scope) != SCOPE_FIELDS[scope["mode"]]:
            raise VerificationError("header scope is not one of all, coi, period")
        if scope["mode"] in ("coi", "handoff"):
            nonempty_str(scope["coi"], "scope coi")
        if scope["mode"] == "period":
            since = nonneg_int(scope["since_ms"], "since_ms")
            if since >= nonneg_int(scope["until_ms"], "until_ms"):
                raise VerificationError("scope period ends before it starts")
        self.scope = scope
        self.tree_size = nonneg_int(obj["tree_size"], "header tree_size")
        if self.tree_size == 0:
            raise VerificationError("the bundle is for an empty log")
        nonneg_int(obj["created_ms"], "header created_ms")

    # -- step 3 ----------------------------------------------------------------------------------
    def _checkpoint(self, obj: dict[str, Any]) -> None:
        note_text = nonempty_str(obj["note"], "checkpoint note")
        assert self.verifier is not None
        cp, opened = open_checkpoint(note_text, self.verifier, origin=self.origin)
        if cp.size != self.tree_size:
            raise VerificationError(f"the checkpoint is for {cp.size} entries, the header says "
                                    f"{self.tree_size}")
        self.root, self.checkpoint = cp.root, note_text
        self.cosigner_lines = opened.unknown_lines

    def _handoff(self, obj: dict[str, Any]) -> None:
        if self.scope["mode"] != "handoff":
            raise VerificationError("a handoff record in a bundle whose scope is not handoff")
        self.handoff = HandoffCheck(read_handoff(obj))
        self.handoff.checkpoint(self.origin, self.scope["coi"], self.tree_size, self.root)

    def _process(self, obj: dict[str, Any]) -> None:
        sha = hex64(obj["sha256"], "process sha256")
        raw = unb64(obj["toml"], "process toml")
        if hashlib.sha256(raw).hexdigest() != sha:
            raise VerificationError("the process definition does not have the SHA-256 given")
        self.process_sha256 = sha

    # -- steps 4 to 8 for one entry ----------------------------------------------------------------
    def _entry(self, obj: dict[str, Any]) -> None:
        i = nonneg_int(obj["index"], "entry index")
        in_scope = obj["in_scope"]
        if not isinstance(in_scope, bool):
            raise VerificationError("entry in_scope is not true or false", index=i)
        h = hex64(obj["hash"], "entry hash")
        body = unb64(obj["statement"], "entry statement")
        sigs = unb64(obj["signatures"], "entry signatures")
        proof_in = obj["proof"]
        if not isinstance(proof_in, list):
            raise VerificationError("entry proof is not a list", index=i)
        # Step 5: position.
        if i <= self.last_index:
            raise VerificationError(f"index {i} after {self.last_index}: entries out of order "
                                    "or repeated", index=i)
        if i >= self.tree_size:
            raise VerificationError(f"index {i} is beyond the checkpoint's {self.tree_size} "
                                    "entries", index=i)
        if self.last_index < 0 and i != 0:
            raise VerificationError("the first entry must be the genesis (entry 0)", index=i)
        # Step 4: the entry on its own; its statement is decoded once, here.
        checked = check_envelope(i, h, body, sigs, self.origin)
        st = checked.statement
        if i == 0 and st.prev != GENESIS_PREV:
            raise VerificationError("the genesis's prev is not 32 zero bytes", index=i)
        if i == self.last_index + 1 and i > 0 and st.prev != self.last_hash:
            raise VerificationError("prev is not the hash of the entry before it (the hash "
                                    "chain is broken)", index=i)
        if st.time_ms < self.last_time:
            raise VerificationError("time goes backwards", index=i)
        # Step 6: keys valid by position; gaps between indices are allowed.
        self.registry.admit(st)
        # Step 7: scope. An entry is in scope exactly when it matches the scope.
        is_key = st.type in KEY_EVENT_TYPES
        matches = self._matches(st)
        if in_scope and not matches:
            raise VerificationError("entry marked in scope does not match the bundle's "
                                    "scope", index=i)
        if matches and not in_scope:
            raise VerificationError("entry marked out of scope matches the bundle's scope",
                                    index=i)
        if not in_scope and not is_key:
            raise VerificationError("an entry outside the scope that is not a key event",
                                    index=i)
        if in_scope:
            self.in_scope += 1
            self.subjects.add(st.subject)
            self._link(i, st, checked.entry_hash)
            if self.handoff is not None:
                self.handoff.entry(i, checked.entry_hash, st)
        self.key_events += is_key
        # Step 8: the tree.
        if self.scope["mode"] == "all":
            if proof_in:
                raise VerificationError("a whole-log bundle carries no proofs", index=i)
            if i != self.tree.size:
                raise VerificationError(f"entries {self.tree.size} to {i - 1} are missing from "
                                        "a whole-log bundle", index=self.tree.size)
            self.tree.append(checked.entry_hash)
        else:
            proof = [unb64(p, f"proof hash {n}") for n, p in enumerate(proof_in)]
            try:
                verify_inclusion(checked.entry_hash, i, self.tree_size, proof, self.root)
            except VerificationError as e:
                raise VerificationError(e.reason, index=i) from None
        self.last_index, self.last_hash, self.last_time = i, checked.entry_hash, st.time_ms

    def _link(self, i: int, st: Statement, entry_hash: bytes) -> None:
        """Step 5b: the back-links of the entries in scope (docs/export.md)."""
        mode = self.scope["mode"]
        before = self.on_subject.get(st.subject)
        if mode == "all":
            problem = link_problem(st, before)
        elif mode == "period":  # a period holds no product whole: only the version rule
            problem = link_problem(st, before) if st.version < 2 else None
        else:
            problem = bundle_link_problem(st, i, before, f"product {st.subject}")
        if problem is not None:
            raise VerificationError(problem, index=i)
        if st.version >= 2 and self.complete_from is None:
            self.complete_from = i
            self.complete = st.subject_prev is None
        self.on_subject[st.subject] = LastOnSubject(i, entry_hash, st.version)

    def _matches(self, st: Statement) -> bool:
        mode = self.scope["mode"]
        if mode == "all":
            return True
        if mode in ("coi", "handoff"):
            return bool(st.subject == self.scope["coi"])
        return bool(self.scope["since_ms"] <= st.time_ms < self.scope["until_ms"])

    # -- steps 9 and 10 --------------------------------------------------------------------------
    def _manifest(self, obj: dict[str, Any]) -> None:
        if self.stage not in ("entry", "process", "handoff") or self.kinds["entry"].count == 0:
            raise VerificationError("the manifest comes before any entry")
        counts, shas = obj["counts"], obj["sha256"]
        present = tuple(k for k in KINDS if self.kinds[k].count)
        if not isinstance(counts, dict) or tuple(counts) != present:
            raise VerificationError(f"manifest counts must name exactly {', '.join(present)}")
        if not isinstance(shas, dict) or tuple(shas) != present:
            raise VerificationError(f"manifest sha256 must name exactly {', '.join(present)}")
        for k in present:
            if counts[k] != self.kinds[k].count or isinstance(counts[k], bool):
                raise VerificationError(f"the manifest counts {counts[k]!r} {k} records, the "
                                        f"bundle holds {self.kinds[k].count}")
            if shas[k] != self.kinds[k].sha.hexdigest():
                raise VerificationError(f"the {k} records do not have the SHA-256 in the "
                                        "manifest")
        whole = self.whole.hexdigest()
        if obj["bundle_sha256"] != whole:
            raise VerificationError("the bundle's bytes do not have the SHA-256 in the manifest")
        assert self.verifier is not None
        opened = open_note(nonempty_str(obj["signature"], "manifest signature"), [self.verifier])
        if opened.text != manifest_note_text(self.origin, whole):
            raise VerificationError("the manifest's signed note is not over this bundle")
        self.manifest = obj

    def finish(self) -> BundleReport:
        if self.manifest is None:
            raise VerificationError(f"line {self.line_no + 1}: the manifest is missing "
                                    "(truncated file?)")
        if self.hashes_only:
            return self._report()
        if self.scope["mode"] == "all":
            if self.tree.size != self.tree_size:
                raise VerificationError(f"a whole-log bundle holds {self.tree.size} entries, "
                                        f"the checkpoint {self.tree_size}", index=self.tree.size)
            if self.tree.root() != self.root:
                raise VerificationError("the entries do not rebuild the checkpoint's root")
        g = self.registry.genesis
        if g is None:  # pragma: no cover - entry 0 is always checked to be the genesis
            raise VerificationError("no genesis entry")
        if g.log_key != self.log_key and not same_key(g.log_key, self.log_key):
            raise VerificationError("the header's log key is not the one the genesis names")
        if self.scope["mode"] == "handoff":
            if self.handoff is None:
                raise VerificationError("a hand-off file without its handoff record")
            self.handoff.finish(g.site)
        # Step 9.
        if self.process_sha256 is not None:
            named = g.process.get("sha256") if g.process else None
            if named != self.process_sha256:
                raise VerificationError("the bundled process definition is not the one the "
                                        "genesis names")
        return self._report()

    def _report(self) -> BundleReport:
        return BundleReport(
            origin=self.origin, log_key=self.log_key, scope=dict(self.scope),
            tree_size=self.tree_size, root=self.root, checkpoint=self.checkpoint,
            cosigner_lines=self.cosigner_lines, entries=self.kinds["entry"].count,
            in_scope=self.in_scope, key_events=self.key_events, first_index=0,
            last_index=self.last_index, subjects=len(self.subjects),
            bundle_sha256=self.whole.hexdigest(), process_sha256=self.process_sha256,
            complete_from=self.complete_from, complete=self.complete,
            handoff=self.handoff.h if self.handoff is not None else None)


def verify_lines(lines: Iterable[bytes], trust: str | None = None) -> BundleReport:
    """Every check (steps 1 to 10) over the lines of a bundle, in one pass."""
    v = BundleVerifier(trust=trust)
    for line in lines:
        v.feed(line)
    return v.finish()


def _verify(lines: Callable[[], Iterable[bytes]], trust: str | None) -> BundleReport:
    """One full pass over ``lines()``; only if it fails, the step 0 pass decides the error.

    A good bundle is read once: the hashes of step 0 are computed as the lines go by and the
    manifest is checked when it comes. On a failure the lines are read again, hashes only, and
    if the file is damaged (its bytes are not those the log key signed) that is reported, not
    the first symptom the full pass met, exactly as if step 0 had run first.
    """
    if trust is not None:
        parse_verifier_key(trust)  # a bad --trust is the caller's error, raised before reading
    try:
        return verify_lines(lines(), trust)
    except VerificationError as e:
        failure = e
    hashes = BundleVerifier(trust=trust, hashes_only=True)
    for line in lines():
        hashes.feed(line)
    hashes.finish()
    raise failure


def verify_bytes(data: bytes, trust: str | None = None) -> BundleReport:
    """``verify_bundle`` over a bundle already in memory."""
    lines = data.splitlines(keepends=True)
    return _verify(lambda: lines, trust)


def _lines(f: Any) -> Iterable[bytes]:
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        yield line


def _file_lines(path: str | Path) -> Iterator[bytes]:
    with open(path, "rb", buffering=1 << 20) as f:
        yield from _lines(f)


def verify_bundle(path: str | Path, trust: str | None = None) -> BundleReport:
    """Verify the bundle file at ``path``; ``trust`` is the site's log verifier key string.

    Raises ``VerificationError`` (the bundle is bad) or ``OSError`` (it cannot be read). A good
    bundle is read once (see ``_verify``).
    """
    if trust is not None:
        parse_verifier_key(trust)  # a bad --trust is the caller's error, raised before reading
    with open(path, "rb"):
        pass  # an unreadable file is an OSError before anything else
    return _verify(lambda: _file_lines(path), trust)
