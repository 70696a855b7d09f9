"""Chain-of-identity commands: ``coi enrol``, ``record``, ``steps``, ``show`` and ``status``
(thin shells over :class:`coi.service.chain.CoiService`). Their Typer app is merged into
``coi`` itself."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from coi.cli.common import (
    EXIT_USAGE,
    DbOpt,
    LogKeyOpt,
    PasswordFileOpt,
    WitnessPasswordFileOpt,
    echo_json,
    errors,
    fail,
    open_chain,
    unlock_user,
)
from coi.cli.inputs import decode_utf8, json_object, read_bounded
from coi.service.text import inert

if TYPE_CHECKING:
    from coi.service.chain import CoiService

app = typer.Typer()

MAX_PATIENT_FILE = 64 * 1024


@app.command()
def enrol(
    patient_file: Annotated[Path, typer.Option(
        help="JSON file with the patient's identifiers, at least {\"patient_id\": \"…\"}; they "
             "stay outside the ledger")],
    treatment_site: Annotated[str, typer.Option(help="Treatment centre identifier")],
    slot: Annotated[str, typer.Option(help="Manufacturing slot booked")],
    as_: Annotated[str, typer.Option("--as", help="Who enrols (apheresis or treatment role)")],
    witness: Annotated[str | None, typer.Option(help="A second person who co-signs")] = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
    witness_password_file: WitnessPasswordFileOpt = None,
) -> None:
    """Enrol a patient and print the new Chain of Identity identifier (ISBT 128 with K)."""
    raw = read_bounded(patient_file, MAX_PATIENT_FILE, "patient file")
    patient = json_object(decode_utf8(raw, f"patient file {patient_file}"),
                          f"patient file {patient_file}", '{"patient_id": "MRN123"}')
    svc = open_chain(db, log_key)
    actor = unlock_user(svc, as_, password_file)
    wit = unlock_user(svc, witness, witness_password_file, "witness password") if witness else None
    with errors():
        from coi.service.scans import printed_coi

        coi, rec = svc.enrol(actor=actor, patient=patient, treatment_site=treatment_site,
                             manufacturing_slot=slot, witness=wit)
        typer.echo(coi)
        check = printed_coi(coi).rsplit(" ", 1)[1]
        typer.echo(f"enrolled at entry {rec.entry.index}; printed for people as {coi} "
                   f"{check} — '{check}' is the ISBT 128 check character (K): it catches a "
                   "mistyped identifier and is not part of it", err=True)


def _fields(raw: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in raw:
        name, sep, value = f.partition("=")
        if not sep or not name.strip():
            fail(f"--field {f!r} must look like NAME=VALUE", EXIT_USAGE)
        if name.strip() in out:
            fail(f"--field {name.strip()} is given twice", EXIT_USAGE)
        out[name.strip()] = value
    return out


def _check_typed(svc: CoiService, step: str, fields: dict[str, str]) -> None:
    """Typing mistakes are usage errors that record nothing (docs/cli.md): an unknown step,
    an unknown field, a value not of the field's form (not a number, not one of the allowed
    values). What the rules refuse (a wrong move, role, value out of range) is the service's
    to refuse and record."""
    from coi.service.steps import form_error

    with errors():
        process = svc.process()
    spec = process.step(step.strip())
    if spec is None:
        fail(f"unknown step {step!r}; steps are: {', '.join(process.steps)} (see `coi steps`); "
             "nothing was recorded", EXIT_USAGE)
    for name, raw in fields.items():
        if name == "wristband" and spec.effect == "bedside_verification":
            continue  # the patient's wristband: the service turns it into its commitment
        f = spec.fields.get(name)
        if f is None:
            fail(f"step {spec.name} has no field {name!r}; its fields are: "
                 f"{', '.join(spec.fields) or 'none'} (see `coi steps`); nothing was recorded",
                 EXIT_USAGE)
        wrong = form_error(f, raw)  # the form only: bounds and the clock are the rules' to judge
        if wrong is not None:
            fail(f"{wrong} (see `coi steps`); nothing was recorded", EXIT_USAGE)


@app.command()
def record(
    step: Annotated[str, typer.Argument(help="Process step, e.g. apheresis_collection "
                                             "(see `coi steps`)")],
    coi: Annotated[str, typer.Option("--coi", help="Chain of Identity identifier")],
    as_: Annotated[str, typer.Option("--as", help="Who performs and signs the step")],
    item: Annotated[str | None, typer.Option(help="Item (bag) identifier, e.g. F00001")] = None,
    field: Annotated[list[str] | None, typer.Option(
        help="A field as NAME=VALUE (repeatable)")] = None,
    witness: Annotated[str | None, typer.Option(help="A second person who co-signs")] = None,
    keyed_reason: Annotated[str | None, typer.Option(
        "--keyed-reason", help="Why a scan-only field (bag, wristband, paperwork) is keyed by "
        "hand here instead of scanned at a station; it needs --witness too")] = None,
    db: DbOpt = None,
    log_key: LogKeyOpt = None,
    password_file: PasswordFileOpt = None,
    witness_password_file: WitnessPasswordFileOpt = None,
) -> None:
    """Record a process step; a wrong move is refused with the reason, and the refusal recorded."""
    fields = _fields(field or [])
    svc = open_chain(db, log_key)
    _check_typed(svc, step, fields)
    actor = unlock_user(svc, as_, password_file)
    wit = unlock_user(svc, witness, witness_password_file, "witness password") if witness else None
    with errors():
        from coi.service.keyed_labels import check_keyed_labels

        check_keyed_labels(svc, step, coi, fields, by=actor.user)
        rec = svc.record(step, coi, actor=actor, witness=wit, item=item, fields=fields,
                         keyed_reason=keyed_reason)
        typer.echo(f"recorded {inert(step)} for {inert(coi.upper())} at entry {rec.entry.index}")
        for d in rec.auto_deviations:
            typer.echo(f"deviation opened automatically at entry {d}")


@app.command()
def steps(db: DbOpt = None) -> None:
    """List the process steps: who records each, its witness rule, and each field's form,
    allowed values and unit.

    With --db, the definition in force on that ledger; otherwise the one this coi ships for new
    ledgers. Each field says whether it is required, and which are filled from the scans at a
    station.
    """
    from coi.cli.readable import steps_lines

    if db is not None:
        p = open_chain(db).process()
    else:
        from coi.service.steps import shipped_process

        p = shipped_process()
    for line in steps_lines(p):
        typer.echo(line)


@app.command()
def show(
    coi: Annotated[str, typer.Argument(help="Chain of Identity identifier")],
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """A product's timeline and state as a table: local time with its zone, step, every
    signature's printed name and meaning, each field with its title and unit (--json for
    machines: times there are epoch milliseconds beside the local time)."""
    svc = open_chain(db)
    with errors():
        view = svc.show(coi)
    if as_json:
        echo_json(view)
        return
    from coi.cli.readable import show_lines

    arriving = view.get("expected")
    if arriving:
        typer.echo(f"{inert(view['coi'])}  state: expected (hand-off from "
                   f"{inert(arriving['from'])} received at entry {arriving['index']}; items "
                   f"{', '.join(map(inert, arriving['items'] or []))})")
    for line in show_lines(svc, view):
        typer.echo(line)
    if view["state"]:  # (a product only expected here has no labels of this site yet)
        from coi.cli.labels_cmd import echo_reconciliation

        echo_reconciliation(svc, view["coi"])


@app.command()
def status(
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000,
                                       help="List at most this many products expected "
                                            "from partners, windows and products with open "
                                            "deviations (counts are always whole)")
                     ] = 50,
) -> None:
    """Products by state, windows running out or exceeded, open deviations."""
    svc = open_chain(db)
    with errors():
        s = svc.status(limit=limit)
    if as_json:
        echo_json(s)
        return
    typer.echo("products by state:")
    for state, n in s["by_state"].items():
        typer.echo(f"  {inert(state):<30} {n}")
    if s.get("expected"):
        typer.echo("expected from partners (hand-off received):"
                   + _more(len(s["expected"]), s.get("expected_total", 0)))
        for e in s["expected"]:
            typer.echo(f"  {inert(e['coi'])}  from {inert(e['from'])}  items "
                       f"{', '.join(map(inert, e['items'] or []))}  (entry {e['index']})")
    typer.echo(f"windows running out (6 h) or exceeded: {s['windows_total']}"
               + _more(len(s["windows"]), s["windows_total"]))
    for w in s["windows"]:
        left = w["remaining_ms"] // 60000
        what = f"EXCEEDED {-left} min ago" if w["exceeded"] else f"{left} min left"
        typer.echo(f"  {inert(w['coi'])}  {inert(w['window'])}  {what}  (due {w['deadline']})")
    typer.echo(f"products with open deviations: {s['open_deviations_total']}"
               + _more(len(s["open_deviations"]), s["open_deviations_total"]))
    for d in s["open_deviations"]:
        typer.echo(f"  {inert(d['coi'])}  {d['count']} open  ({inert(d['state'])})")


def _more(shown: int, total: int) -> str:
    return f" (the first {shown}; --limit N lists more)" if shown < total else ""
