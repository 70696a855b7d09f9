"""Commands for auditors and hospitals: export, verify-export, report.

``coi export`` writes an audit bundle (docs/export.md) or, with ``--fhir``, a FHIR R5 Bundle;
``coi verify-export`` checks a bundle offline; ``coi report`` renders its human-readable copy.
Their Typer app is merged into ``coi`` itself; ``coi witness …`` is :mod:`coi.cli.witness_cmd`.
Exit codes as everywhere: 0 good, 1 bad or refused, 2 usage or configuration error; 3 the
bundle verified, but only against the key it carries (``--trust-bundle-key``): anyone can make
such a bundle, so it proves nothing until that key is compared with the site's.

No output file is overwritten without ``--force``; each is written to a temporary file first and
renamed, so a reader never sees half of one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from coi.cli.common import (
    EXIT_UNPINNED,
    EXIT_USAGE,
    DbOpt,
    ForceOpt,
    LogKeyOpt,
    b64,
    errors,
    fail,
    open_ledger,
    refuse_existing,
)
from coi.service.text import inert

app = typer.Typer()

OutOpt = Annotated[Path, typer.Option("-o", "--output", help="File to write")]
TrustOpt = Annotated[str | None, typer.Option(
    "--trust", help="The site's log verifier key string (from `coi log-key`); the bundle's "
                    "log key must be this one")]
TrustBundleKeyOpt = Annotated[bool, typer.Option(
    "--trust-bundle-key", help="Check the bundle against the key it carries (no --trust): "
                               "prints that key to compare with the site's, and exits 3")]


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), TaskProgressColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("exporting", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@app.command("export")
def export(
    output: OutOpt,
    coi: Annotated[str | None, typer.Option("--coi", help="One product: its CoI identifier")
                   ] = None,
    since: Annotated[str | None, typer.Option(help="Period start (ISO date or date-time)")
                     ] = None,
    until: Annotated[str | None, typer.Option(help="Period end, exclusive; a date alone "
                                                   "includes that day")] = None,
    all_: Annotated[bool, typer.Option("--all", help="The whole log")] = False,
    fhir: Annotated[bool, typer.Option("--fhir", help="Write a FHIR R5 Bundle instead")
                    ] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the human-readable "
                                                             "copy here")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
    force: ForceOpt = False,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
) -> None:
    """Export a product, a period or the whole log as a signed, self-contained audit bundle."""
    from coi.service import exporting
    from coi.service.exporting import ExportError, Scope

    chosen = sum([coi is not None, since is not None or until is not None, all_])
    if chosen != 1 or (since is None) != (until is None):
        fail("choose exactly one of --coi ID, --since DATE --until DATE, or --all", EXIT_USAGE)
    refuse_existing(force, output, html)
    svc = open_ledger(db, log_key)
    with errors():
        svc.require_initialised()
        if all_:
            scope = Scope("all")
        elif coi is not None:
            scope = Scope("coi", coi=coi)
        else:
            assert since is not None and until is not None
            scope = exporting.period_scope(since, until, svc.genesis_tz)
        try:
            if fhir:
                from coi.service.fhir_export import export_fhir

                n = export_fhir(svc, scope, output, overwrite=force)
                typer.echo(f"FHIR R5 Bundle with {n} resources written to {output}")
                return
            with _progress(not quiet) as progress:
                s = exporting.export(svc, scope, output, progress=progress,
                                     overwrite=force).summary
        except ExportError as e:
            fail(str(e), EXIT_USAGE if type(e).__name__ == "OutputExists" else 1)
        typer.echo(f"bundle written to {output}: {s.entries} entries ({s.in_scope} in scope) "
                   f"against a checkpoint of {s.tree_size}, {s.bytes:,} bytes, "
                   f"sha256 {s.bundle_sha256}")
    if html is not None:
        _report(output, html, None, force=force)


def _check_trust(trust: str | None) -> None:
    from coi.service.audit import check_verifier_key
    from coi.service.errors import VerificationError

    if trust is not None:
        try:
            check_verifier_key(trust)
        except VerificationError as e:
            fail(f"--trust is not a verifier key string: {e.reason}", EXIT_USAGE)


@app.command("verify-export")
def verify_export(
    path: Annotated[Path, typer.Argument(help="The bundle file")],
    trust: TrustOpt = None,
    trust_bundle_key: TrustBundleKeyOpt = False,
) -> None:
    """Verify an audit bundle offline: manifest, signatures, keys, proofs, checkpoint, against
    the site's key (--trust)."""
    from coi.service.audit import completeness_text, verify_bundle
    from coi.service.errors import VerificationError

    if (trust is None) == (not trust_bundle_key):
        fail("give the site's log key with --trust KEY (from `coi log-key` at the site); "
             "--trust-bundle-key checks the bundle against its own key only, which anyone can "
             "make" if trust is None else "give --trust KEY or --trust-bundle-key, not both",
             EXIT_USAGE)
    _check_trust(trust)
    try:
        r = verify_bundle(path, trust)
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}", EXIT_USAGE)
    except VerificationError as e:
        fail(f"verification FAILED: {e}")
    typer.echo(f"OK: {r.entries} entries ({r.in_scope} in scope, {r.key_events} key events, "
               f"{r.subjects} subjects) of {inert(r.origin)} verified against the checkpoint "
               f"of {r.tree_size} entries (root {b64(r.root)}), "
               f"{len(r.cosigner_lines)} cosignature line(s)")
    if r.scope.get("mode") in ("coi", "handoff"):
        typer.echo(inert(completeness_text(r)))
    if trust is None:
        typer.echo(f"log key in the bundle: {inert(r.log_key)}")
        typer.echo("coi: WARNING: checked against the bundle's own key only; anyone can sign a "
                   "bundle: compare this key with the site's (`coi log-key`) or verify again "
                   "with --trust", err=True)
        raise typer.Exit(EXIT_UNPINNED)
    typer.echo(f"log key pinned: {inert(trust)}")


def _report(bundle: Path, output: Path, trust: str | None, *, force: bool) -> None:
    from coi.service.audit import write_report, write_report_pdf

    refuse_existing(force, output)
    pdf = output.suffix.lower() == ".pdf"
    try:
        ok = (write_report_pdf(bundle, output, trust, overwrite=force) if pdf
              else write_report(bundle, output, trust))
    except OSError as e:
        fail(f"cannot read {bundle} or write {output}: {e.strerror or e}", EXIT_USAGE)
    if not ok:
        fail(f"verification FAILED; the report at {output} says why")
    typer.echo(f"human-readable copy ({'PDF' if pdf else 'HTML'}) written to {output}")


@app.command("report")
def report(
    bundle: Annotated[Path, typer.Argument(help="The bundle file")],
    output: Annotated[Path, typer.Option("-o", "--output",
                                         help="File to write: report.pdf (PDF) or report.html")],
    trust: TrustOpt = None,
    force: ForceOpt = False,
) -> None:
    """Render the human-readable copy of a bundle, from the bundle alone: a PDF when the
    output ends in .pdf, else HTML (local times, signatures with names and meanings,
    deviations with their disposition)."""
    _check_trust(trust)
    _report(bundle, output, trust, force=force)


@app.command("verify-chain")
def verify_chain(
    files: Annotated[list[Path], typer.Argument(help="The product bundles and hand-off files "
                                                     "of every organisation")],
    coi: Annotated[str, typer.Option("--coi", help="The product's CoI identifier")],
    trust: Annotated[list[str], typer.Option(
        "--trust", help="An organisation's log verifier key string (repeat: one each)")],
) -> None:
    """Verify one product vein to vein across organisations: each file, each hand-off link and
    the state and label issuers each receiver took in, the stability windows across them, one
    timeline."""
    import datetime as dt

    from coi.service.audit import ChainUsage
    from coi.service.audit import verify_chain as check
    from coi.service.errors import VerificationError

    try:
        r = check(coi.strip().upper(), trust, files)
    except ChainUsage as e:
        fail(str(e), EXIT_USAGE)
    except VerificationError as e:
        fail(f"verification FAILED: {e}")
    for path, rep in r.files:
        done = ("complete" if rep.complete else f"complete from index {rep.complete_from}"
                if rep.complete_from is not None else "completeness not provable")
        typer.echo(f"file {inert(path)}: {inert(rep.origin)}, {rep.in_scope} entries of the "
                   f"product, {done}")
    for link in r.links:
        typer.echo(f"link OK: {inert(link)}")
    for carried in r.carried:
        typer.echo(f"carried OK: {inert(carried)}")
    for window in r.windows:
        typer.echo(f"window OK: {inert(window)}")
    typer.echo(f"timeline of {inert(r.coi)}:")
    for ev in r.timeline:
        when = dt.datetime.fromtimestamp(ev.time_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"  {when} UTC  {inert(ev.origin)} #{ev.index}  {inert(ev.type)}  "
                   f"({inert(', '.join(ev.signers))})")
    for p in r.problems:
        typer.echo(f"PROBLEM: {inert(p)}", err=True)
    if not r.ok:
        fail(f"the chain of {inert(r.coi)} does not hold ({len(r.problems)} problem(s))")
    typer.echo(f"OK: {inert(r.coi)} verified across {len({rep.origin for _p, rep in r.files})} "
               f"organisation(s), {len(r.links)} hand-off(s)")
