"""Vein to vein, verified by anyone: one product across the bundles of several organisations.

Owns ``verify_chain`` (``coi verify-chain``; docs/federation.md, "Across the whole chain"):
each file, a product bundle or a hand-off file of one organisation, is verified offline against
the trusted log key named for its origin (the one bundle verifier); then the links between them:
every hand-off (a shipment on A to B) must be matched by B's ``handoff.received`` entry for that
shipment hash, naming A's origin and the very checkpoint A sent, the same items, no earlier than
the shipment, having taken in the state and label issuers the sender's entries imply
(``chain_carried``, with the receiver's own derivation); every receipt must be matched by its
sender's shipment when the sender's file is given; one CoI throughout; every stability window
whose start and checking step are on different organisations' ledgers, from the signed times of
the two entries (``chain_windows``). The result is one timeline of every organisation's
entries. Standard library, cryptography, the ledger core and the process definitions
(``coi.domain``, pure) only: no database.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coi.domain.process import Process
from coi.export.chain_carried import check_carried
from coi.export.chain_windows import check_windows, process_of
from coi.export.records import parse_line
from coi.export.verifier import BundleReport, verify_bundle
from coi.ledger.entry import Statement, read_statement
from coi.ledger.errors import VerificationError
from coi.ledger.note import parse_verifier_key

RECEIVED = "handoff.received"


class ChainUsage(ValueError):
    """The command was called wrongly (no trusted key for a file's origin, an unreadable file)."""


@dataclass(frozen=True)
class Event:
    time_ms: int
    origin: str
    index: int
    type: str
    signers: tuple[str, ...]


@dataclass
class ChainResult:
    coi: str
    files: list[tuple[str, BundleReport]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # one line per link checked
    windows: list[str] = field(default_factory=list)  # one line per cross-site window checked
    carried: list[str] = field(default_factory=list)  # one line per receipt's state compared
    problems: list[str] = field(default_factory=list)
    timeline: list[Event] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _File:
    path: str
    report: BundleReport
    entries: dict[int, tuple[bytes, Statement]]  # in-scope entries: index -> (hash, statement)


def _origin(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            obj = parse_line(f.readline(1 << 18))
    except OSError as e:
        raise ChainUsage(f"cannot read {path}: {e.strerror or e}") from None
    except VerificationError as e:
        raise VerificationError(f"{path}: not a bundle ({e.reason})") from None
    origin = obj.get("origin")
    if obj.get("kind") != "header" or not isinstance(origin, str):
        raise VerificationError(f"{path}: not a bundle")
    return origin


def _entries(path: Path) -> dict[int, tuple[bytes, Statement]]:
    """The in-scope entries of a bundle already verified."""
    with open(path, "rb") as f:
        return in_scope_entries(f)


def in_scope_entries(lines: Iterable[bytes]) -> dict[int, tuple[bytes, Statement]]:
    """The in-scope entries of a bundle already verified (its lines): index -> (hash,
    statement)."""
    out = {}
    for line in lines:
        obj = parse_line(line)
        if obj.get("kind") == "entry" and obj["in_scope"]:
            st = read_statement(base64.b64decode(obj["statement"]))
            out[int(obj["index"])] = (bytes.fromhex(obj["hash"]), st)
    return out


def _load(path: Path, trusted: dict[str, str], coi: str) -> _File:
    origin = _origin(path)
    key = trusted.get(origin)
    if key is None:
        raise ChainUsage(f"{path} is from {origin!r}: give its log key with --trust")
    try:
        report = verify_bundle(path, key)
    except VerificationError as e:
        raise VerificationError(f"{path}: {e}") from None
    if report.scope.get("mode") not in ("coi", "handoff") or report.scope.get("coi") != coi:
        raise VerificationError(f"{path}: not a bundle of product {coi}")
    return _File(str(path), report, _entries(path))


def _receipt_problem(sender: _File, f: _File, st: Statement) -> str | None:
    h = sender.report.handoff
    assert h is not None
    d: Any = st.data
    cp = d.get("checkpoint") or {}
    if cp.get("size") != sender.report.tree_size or \
            cp.get("root") != base64.b64encode(sender.report.root).decode():
        return "names another checkpoint of the sender than the one its file carries"
    if tuple(d.get("items") or ()) != h.items:
        return f"received items {d.get('items')} but {list(h.items)} were shipped"
    shipped = sender.entries[h.shipment_index][1]
    if st.time_ms < shipped.time_ms:
        return (f"received {(shipped.time_ms - st.time_ms) // 1000} s before it was shipped "
                "(the two sites' clocks disagree, or an entry is misdated)")
    return None


def verify_chain(coi: str, trust: Sequence[str], paths: Sequence[Path]) -> ChainResult:
    """Verify every file and every link between them; ``ChainUsage`` for a usage error,
    ``VerificationError`` for a file that does not verify."""
    trusted: dict[str, str] = {}
    for t in trust:
        try:
            trusted[parse_verifier_key(t).name] = t
        except (VerificationError, ValueError) as e:
            raise ChainUsage(f"--trust {t!r} is not a verifier key string ({e})") from None
    files = [_load(Path(p), trusted, coi) for p in paths]
    result = ChainResult(coi, [(f.path, f.report) for f in files])
    result.problems.extend(_forks(files))
    by_origin: dict[str, list[_File]] = {}
    for f in files:
        by_origin.setdefault(f.report.origin, []).append(f)
    processes = _processes(files)
    matched: set[tuple[str, int]] = set()
    for f in files:
        h = f.report.handoff
        if h is None:
            continue
        receivers = by_origin.get(h.receiver_origin, [])
        if not receivers:
            result.problems.append(f"{h.sender_origin} shipped to {h.receiver_origin} (entry "
                                   f"{h.shipment_index}) but no file from {h.receiver_origin} "
                                   "was given: the link is not checked")
            continue
        found = [(g, i, st) for g in receivers for i, (_h, st) in g.entries.items()
                 if st.type == RECEIVED and st.data.get("sender_origin") == h.sender_origin
                 and (st.data.get("shipment") or {}).get("hash") == h.shipment_hash]
        if not found:
            result.problems.append(f"{h.receiver_origin} has no receipt of the shipment at "
                                   f"{h.sender_origin} entry {h.shipment_index}")
            continue
        g, i, st = found[0]
        matched.add((g.report.origin, i))
        problem = _receipt_problem(f, g, st)
        if problem is not None:
            result.problems.append(f"receipt at {g.report.origin} entry {i}: {problem}")
        else:
            items = ", ".join(h.items)
            result.links.append(f"{h.sender_origin} #{h.shipment_index} shipped {items} -> "
                                f"{g.report.origin} #{i} received")
        carried = check_carried({k: s for k, (_h, s) in f.entries.items()}, f.report.origin,
                                h.shipment_index, g.report.origin, i, st,
                                processes.get(g.report.origin, "no file"))
        if carried.problem is not None:
            result.problems.append(carried.problem)
        elif carried.line is not None:
            result.carried.append(carried.line)
    for f in files:
        for i, (_h, st) in f.entries.items():
            if st.type == RECEIVED and (f.report.origin, i) not in matched:
                sender = str(st.data.get("sender_origin"))
                if sender in by_origin:
                    result.problems.append(f"the receipt at {f.report.origin} entry {i} has no "
                                           f"shipment in the file(s) from {sender}")
                else:
                    result.problems.append(f"the receipt at {f.report.origin} entry {i} is "
                                           f"from {sender}, whose file was not given")
    _windows(files, processes, result)
    events = {(f.report.origin, i): Event(st.time_ms, f.report.origin, i, st.type,
                                          tuple(s.user for s in st.signers))
              for f in files for i, (_h, st) in f.entries.items()}
    result.timeline = sorted(events.values(), key=lambda e: (e.time_ms, e.origin, e.index))
    return result


def _forks(files: Sequence[_File]) -> list[str]:
    """Two files of one organisation that disagree: two checkpoints of the same size with
    different roots, or one entry index with two different hashes. Each file verified on its
    own against the same log key, so together they are signed evidence that its log forked."""
    out: list[str] = []
    for i, a in enumerate(files):
        for b in files[i + 1:]:
            if a.report.origin != b.report.origin:
                continue
            who = f"{a.report.origin} signed two histories ({a.path} and {b.path}): "
            if a.report.tree_size == b.report.tree_size and a.report.root != b.report.root:
                out.append(who + f"two checkpoints of {a.report.tree_size} entries with "
                           "different roots (a fork of its log)")
                continue
            clash = sorted(n for n in set(a.entries) & set(b.entries)
                           if a.entries[n][0] != b.entries[n][0])
            if clash:
                out.append(who + f"entry {clash[0]} differs between them (a fork of its log)")
    return out


def _processes(files: Sequence[_File]) -> dict[str, Process | str]:
    """Each organisation's process definition (the one its genesis names), or why not."""
    processes: dict[str, Process | str] = {}
    for f in files:
        if not isinstance(processes.get(f.report.origin), Process):
            processes[f.report.origin] = process_of(Path(f.path))
    return processes


def _windows(files: Sequence[_File], processes: dict[str, Process | str],
             result: ChainResult) -> None:
    """The stability windows whose start and end are on different organisations' ledgers."""
    entries: dict[str, dict[int, Statement]] = {}
    for f in files:
        entries.setdefault(f.report.origin, {}).update(
            {i: st for i, (_h, st) in f.entries.items()})
    report = check_windows(entries, processes)
    result.windows.extend(report.checked)
    result.problems.extend(report.problems)
