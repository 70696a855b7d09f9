"""Exporting audit bundles: the one call that ``coi export`` and the TUI's audit screen both make.

Owns turning what a person typed into a ``Scope`` (a product's CoI identifier through the domain
parser, a period's dates in the site's time zone), the default file name, who may export (the
roles in ``EXPORT_ROLES``, when the caller says who is acting), and the export itself: the signed
checkpoint of the current head, the process definition in force, the bundle written atomically
by ``coi.export.bundle`` (no file, and no half-written one, on any error), optionally the
human-readable report beside it, and what an auditor needs to check it offline: the log
verifier key and the exact ``coi verify-export`` command.

``prepare_export`` does the short part that touches the service's caches and signs the
checkpoint (a front end may run it under its own lock); ``ExportJob.run`` streams the rows and
needs no lock. ``export`` does both.
"""

from __future__ import annotations

import datetime as dt
import shlex
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coi.domain import isbt
from coi.domain.errors import ScanError
from coi.domain.scan import CoiIdScan, CompoundScan, LabelScan
from coi.export.bundle import (
    EmptyScope,
    ExportError,
    ExportSummary,
    OutputExists,
    Scope,
    export_bundle,
)
from coi.service.chain import definition_in_force
from coi.service.errors import ConfigError, Refused
from coi.service.ledger import LedgerService
from coi.service.scans import ScanRefused, read_scan

__all__ = [
    "EXPORT_ROLES",
    "EmptyScope",
    "ExportError",
    "ExportJob",
    "ExportResult",
    "OutputExists",
    "Scope",
    "check_may_export",
    "default_name",
    "export",
    "parse_when",
    "period_scope",
    "prepare_export",
    "product_scope",
    "report_path",
]

# Who may take the ledger's entries out of the site (the audit screen shows to the same roles).
EXPORT_ROLES = frozenset({"auditor", "qa", "admin"})
BUNDLE_SUFFIX = ".jsonl"

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------------ scopes
def parse_when(text: str, tz: str, *, end: bool) -> int:
    """An ISO date or date-time in ms; a date alone is its whole day, naive values in ``tz``."""
    try:
        if len(text) == 10:
            d = dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz))
            if end:
                d += dt.timedelta(days=1)
        else:
            d = dt.datetime.fromisoformat(text)
            if d.tzinfo is None:
                d = d.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    except ValueError:
        raise ConfigError(f"{text!r} is not an ISO date (2026-03-01) or date-time "
                          "(2026-03-01T08:00+01:00)") from None
    return int(d.timestamp() * 1000)


def period_scope(since: str, until: str, tz: str) -> Scope:
    """[since, until): ``until`` is exclusive, but a date alone includes that whole day."""
    return Scope("period", since_ms=parse_when(since, tz, end=False),
                 until_ms=parse_when(until, tz, end=True))


def product_scope(text: str) -> Scope:
    """One product, from its CoI identifier as typed (``CHA999926000001``, optionally with its
    check character), or as scanned: the CoI barcode (``&/…``) or coi's own label."""
    raw = text.strip()
    if not raw:
        raise ConfigError("enter the product's Chain of Identity Identifier (or scan its label)")
    typed = "".join(raw.split()).upper()
    try:
        if typed.startswith("CH"):
            n = isbt.COI_TEXT_LENGTH
            coi = isbt.coi_id_from_text(typed[:n] if len(typed) == n + 1 else typed)
            if len(typed) == n + 1 and typed[-1] != coi.check:
                raise ConfigError(f"the check character of {coi.text} is {coi.check}, not "
                                  f"{typed[-1]}: the identifier was mistyped")
            return Scope("coi", coi=coi.text)
        if not typed.startswith(("COI", "COS", "&", "=", "]")):
            raise ConfigError(f"{raw!r} is not a Chain of Identity Identifier: type it as "
                              "printed ('CH', the FIN, the year and 6 letters or digits, e.g. "
                              "CHA999926000001) or scan the product's coi label")
        scan = read_scan(raw)
    except (ScanError, ScanRefused) as e:
        raise ConfigError(e.reason) from None
    if isinstance(scan, LabelScan):
        return Scope("coi", coi=scan.label.coi)
    if isinstance(scan, CoiIdScan):
        return Scope("coi", coi=scan.coi_id.text)
    if isinstance(scan, CompoundScan):
        for s in scan.structures:
            if isinstance(s, isbt.CoiId):
                return Scope("coi", coi=s.text)
    raise ConfigError(f"this {scan.kind.replace('_', ' ')} is not a Chain of Identity "
                      "Identifier: scan the product's coi label or its CoI barcode")


def _day(ms: int, tz: str) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, zoneinfo.ZoneInfo(tz)).date().isoformat()


def default_name(scope: Scope, tz: str, now_ms: int) -> str:
    """``coi-export-<scope>-<today in the site's zone>.jsonl``."""
    if scope.mode == "coi":
        what = scope.coi or "product"
    elif scope.mode == "period":
        what = "period"
        if scope.since_ms is not None and scope.until_ms is not None:
            # the until date as typed (inclusive): the day before the exclusive end
            what = f"{_day(scope.since_ms, tz)}_{_day(scope.until_ms - 1, tz)}"
    else:
        what = "all"
    return f"coi-export-{what}-{_day(now_ms, tz)}{BUNDLE_SUFFIX}"


def report_path(bundle: Path) -> Path:
    """Where the human-readable copy goes beside ``bundle``: same name, ``.html``."""
    return bundle.with_suffix(".html") if bundle.suffix else bundle.with_name(bundle.name + ".html")


# ------------------------------------------------------------------------------------ export
def check_may_export(svc: LedgerService, user: str) -> None:
    roles = svc.registry().roles_of(user)
    if not roles & EXPORT_ROLES:
        raise Refused(f"{user} may not export the ledger: exporting needs one of the roles "
                      f"{', '.join(sorted(EXPORT_ROLES))}")


@dataclass(frozen=True)
class ExportResult:
    summary: ExportSummary
    scope: Scope
    log_verifier_key: str
    report: Path | None = None  # the HTML copy, if one was asked for
    report_ok: bool = True  # whether the bundle verified when the report was made

    @property
    def verify_command(self) -> str:
        """The exact command an auditor runs offline (quoted for a POSIX shell)."""
        return shlex.join(["coi", "verify-export", str(self.summary.path),
                           "--trust", self.log_verifier_key])


@dataclass(frozen=True)
class ExportJob:
    """An export ready to run: the checkpoint is signed and the key loaded."""

    svc: LedgerService
    scope: Scope
    output: Path
    checkpoint: str
    overwrite: bool
    html: Path | None
    process_toml: bytes | None  # the definition the genesis names, for the report's titles

    def run(self, progress: Progress | None = None) -> ExportResult:
        """Write the bundle (and the report); raise ``ExportError`` saying what was wrong."""
        svc = self.svc
        s = export_bundle(svc.store, self.output, scope=self.scope, checkpoint=self.checkpoint,
                          log_key=svc.log_key(), created_ms=svc.clock.now_ms(),
                          process_toml=self.process_toml, progress=progress,
                          overwrite=self.overwrite)
        key = svc.log_verifier_key()
        if self.html is None:
            return ExportResult(s, self.scope, key)
        from coi.export.report import write_report

        try:
            ok = write_report(self.output, self.html, key)
        except OSError as e:
            raise ExportError(f"the bundle {self.output} was written, but not the report "
                              f"{self.html}: {e.strerror or e}") from None
        return ExportResult(s, self.scope, key, self.html, ok)


def prepare_export(svc: LedgerService, scope: Scope, output: Path, *, by: str | None = None,
                   overwrite: bool = True, html: Path | None = None) -> ExportJob:
    """Check who is exporting (``by``, if given) and sign the checkpoint of the current head.

    ``overwrite=False`` refuses an existing bundle or report file (``OutputExists``).
    """
    svc.require_initialised()
    if by is not None:
        check_may_export(svc, by)
    output = Path(output)
    if not overwrite:
        for p in (output, html):
            if p is not None and p.exists():
                raise OutputExists(f"{p} exists; refusing to overwrite it")
    return ExportJob(svc, scope, output, svc.checkpoint(), overwrite, html, _process_source(svc))


def _process_source(svc: LedgerService) -> bytes | None:
    """The shipped definition whose hash the genesis names (not always the newest one)."""
    found = definition_in_force(svc)
    return found[1] if found is not None else None


def export(svc: LedgerService, scope: Scope, output: Path, *, by: str | None = None,
           overwrite: bool = True, html: Path | None = None,
           progress: Progress | None = None) -> ExportResult:
    """Export ``scope`` to ``output``: ``prepare_export`` then ``ExportJob.run``."""
    return prepare_export(svc, scope, output, by=by, overwrite=overwrite, html=html
                          ).run(progress)
