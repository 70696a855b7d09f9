"""What an auditor or a witness runs, for the front ends: no database, no site, only files.

The calls behind ``coi verify-export``, ``coi report`` (HTML or PDF) and ``coi witness
init|cosign``: check a log verifier key string, verify an audit bundle offline, render its
human-readable copy, make or load a witness key and cosign a checkpoint that extends what the
witness accepted before.
The work is done by :mod:`coi.export.verifier`, :mod:`coi.export.report` and
:mod:`coi.export.witness`; this module is the service's door to them, so that a front end
imports only ``coi.service``. The errors the front ends tell apart are re-exported here.

Nothing here opens a database: what an auditor runs stays free of any storage import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coi.export.chain_check import ChainResult, ChainUsage
from coi.export.chain_check import verify_chain as _verify_chain
from coi.export.report import write_report as _write_report
from coi.export.verifier import BundleReport
from coi.export.verifier import verify_bundle as _verify_bundle
from coi.export.witness import Refusal as WitnessRefusal
from coi.export.witness import WitnessError, WitnessKey, load_key, new_key, witness
from coi.ledger.errors import LedgerError
from coi.ledger.note import Checkpoint, parse_verifier_key

__all__ = [
    "BundleReport",
    "ChainResult",
    "ChainUsage",
    "Checkpoint",
    "LedgerError",
    "WitnessError",
    "WitnessKey",
    "WitnessRefusal",
    "check_verifier_key",
    "completeness_text",
    "cosign",
    "load_witness_key",
    "new_witness_key",
    "verify_bundle",
    "verify_chain",
    "write_report",
    "write_report_pdf",
]


def check_verifier_key(text: str) -> None:
    """Check a signed-note verifier key string (``<name>+<key id>+<key>``, as ``coi log-key``
    prints it); raise ``VerificationError`` whose ``reason`` says what is wrong with it."""
    parse_verifier_key(text)


def verify_bundle(path: Path, trust: str | None) -> BundleReport:
    """Verify an audit bundle offline (docs/export.md), against ``trust``, the site's verifier
    key string, when given. Raises ``VerificationError`` (the bundle is bad) or ``OSError``
    (it cannot be read)."""
    return _verify_bundle(path, trust)


def write_report(bundle: Path, output: Path, trust: str | None) -> bool:
    """Write the bundle's human-readable copy (HTML) to ``output``, from the bundle alone;
    return whether the bundle verified (the copy says why when it did not). ``OSError`` when a
    file cannot be read or written."""
    return _write_report(bundle, output, trust)


def write_report_pdf(bundle: Path, output: Path, trust: str | None, *, overwrite: bool = False
                     ) -> bool:
    """Write the bundle's human-readable copy as a PDF to ``output`` (atomically; replaced only
    with ``overwrite``), from the bundle alone; return whether the bundle verified."""
    from coi.export.report_pdf import write_report_pdf as _write_pdf  # reportlab: only here

    return _write_pdf(bundle, output, trust, overwrite=overwrite)


def new_witness_key(name: str, path: Path) -> WitnessKey:
    """Make a witness key file (Ed25519, mode 0600, never overwritten); ``WitnessError`` if the
    name or the file is unusable."""
    return new_key(name, path)


def load_witness_key(path: Path) -> WitnessKey:
    """A witness key file, read; ``WitnessError`` if it is missing or damaged."""
    return load_key(path)


def cosign(state: Path, key: WitnessKey, offered: str, log_key: str,
           proof: Mapping[str, Any] | None, time_s: int) -> tuple[str, Checkpoint]:
    """Cosign ``offered`` if it extends the checkpoint last accepted (kept in ``state``).

    Returns the cosigned note and the checkpoint. Raises ``WitnessRefusal`` when it rewrites
    history (the evidence is kept beside the state file first), ``WitnessError`` when a
    witness file is unusable, and ``VerificationError``, ``LedgerError`` or ``ValueError`` when
    the checkpoint or the proof cannot be checked.
    """
    return witness(state, key, offered, log_key, proof, time_s)


def completeness_text(r: BundleReport) -> str:
    """What a product bundle proves about holding every entry of the product (its back-links,
    docs/ledger-format.md §3), in one line for the terminal; control characters made inert."""
    coi = "".join(c if c.isprintable() else "?" for c in str(r.scope.get("coi", "")))
    if r.complete:
        return (f"complete: every entry of {coi} up to entry {r.last_index} is here, each "
                "linked to the one before it by what its author signed")
    if r.complete_from is not None:
        return (f"complete from index {r.complete_from}: entries of {coi} before it were "
                "written before back-links (ledger format version 1) and cannot be proven whole")
    return (f"completeness not provable: every entry of {coi} here predates back-links "
            "(ledger format version 1)")


def verify_chain(coi: str, trust: list[str], paths: list[Path]) -> ChainResult:
    """One product across the bundles and hand-off files of several organisations
    (docs/federation.md): each file against the trusted key of its origin, then every link.
    ``ChainUsage`` (the caller's mistake) or ``VerificationError`` (a file is bad)."""
    return _verify_chain(coi, trust, paths)
