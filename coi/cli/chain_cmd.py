"""Chain-of-identity commands: ``coi enrol``, ``record``, ``steps``, ``show`` and ``status``
(thin shells over :class:`coi.service.chain.CoiService`). Their Typer app is merged into
``coi`` itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
from coi.cli.labels_cmd import echo_reconciliation
from coi.service.scans import printed_coi
from coi.service.steps import shipped_process
from coi.service.text import inert

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
    try:
        raw = patient_file.read_bytes()
    except OSError as e:
        fail(f"cannot read patient file {patient_file}: {e.strerror}", EXIT_USAGE)
    if len(raw) > MAX_PATIENT_FILE:
        fail(f"patient file {patient_file} is larger than {MAX_PATIENT_FILE} bytes", EXIT_USAGE)
    try:
        patient = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"patient file {patient_file} is not UTF-8 JSON ({e})", EXIT_USAGE)
    if not isinstance(patient, dict):
        fail("the patient file must hold a JSON object such as {\"patient_id\": \"MRN123\"}",
             EXIT_USAGE)
    svc = open_chain(db, log_key)
    actor = unlock_user(svc, as_, password_file)
    wit = unlock_user(svc, witness, witness_password_file, "witness password") if witness else None
    with errors():
        coi, rec = svc.enrol(actor=actor, patient=patient, treatment_site=treatment_site,
                             manufacturing_slot=slot, witness=wit)
        typer.echo(coi)
        typer.echo(f"enrolled as {printed_coi(coi)} at entry {rec.entry.index}", err=True)


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
    actor = unlock_user(svc, as_, password_file)
    wit = unlock_user(svc, witness, witness_password_file, "witness password") if witness else None
    with errors():
        rec = svc.record(step, coi, actor=actor, witness=wit, item=item, fields=fields,
                         keyed_reason=keyed_reason)
        typer.echo(f"recorded {inert(step)} for {inert(coi.upper())} at entry {rec.entry.index}")
        for d in rec.auto_deviations:
            typer.echo(f"deviation opened automatically at entry {d}")


@app.command()
def steps(db: DbOpt = None) -> None:
    """List the process steps with their roles, witness rule and fields.

    With --db, the definition in force on that ledger; otherwise the one this coi ships for new
    ledgers. A field marked ? is optional; * is filled by the scan station from its scans.
    """
    if db is not None:
        with errors():
            p = open_chain(db).process()
    else:
        p = shipped_process()
    typer.echo(f"{p.name} {p.version} (sha256 {p.sha256})")
    for name, s in p.steps.items():
        fields = ", ".join(f"{k}{'' if v.required else '?'}{'*' if v.scanned else ''}"
                           for k, v in s.fields.items())
        w = " +witness" if s.witness else ""
        w += f" +{s.second_scan} scan" if s.second_scan else ""
        typer.echo(f"  {name:<26} {','.join(sorted(s.roles)):<30}{w}  {fields}")


def _signers(sigs: list[dict[str, Any]]) -> str:
    return "; ".join(f"{inert(s['name'])} ({inert(s['user'])}, {s['meaning']})" for s in sigs)


@app.command()
def show(
    coi: Annotated[str, typer.Argument(help="Chain of Identity identifier")],
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """A product's timeline and state, with every signature's printed name, time and meaning."""
    svc = open_chain(db)
    with errors():
        view = svc.show(coi)
    if as_json:
        echo_json(view)
        return
    st = view["state"] or {}
    typer.echo(f"{inert(view['coi'])}  state: {inert(st.get('state', '?'))}")
    for t in view["timeline"]:
        mark = "✓" if t["signature_ok"] else "✗ SIGNATURE INVALID"
        corr = f"  [corrected by {', '.join(map(str, t['corrected_by']))}]" if t["corrected_by"] \
            else ""
        typer.echo(f"  #{t['index']:<6} {t['time_local']}  {inert(t['step'])}  {mark}{corr}")
        typer.echo(f"          signed: {_signers(t['signers'])}")
        keyed = [k for k, m in (t["data"].get("entry") or {}).items() if m == "keyed"]
        if keyed:
            typer.echo(f"          KEYED BY HAND, not scanned: {inert(', '.join(keyed))} "
                       f"(reason: {inert(t['data'].get('keyed_reason') or '-')})")
        data = {k: v for k, v in t["data"].items() if k != "patient_commitment"}
        if data:
            typer.echo(f"          {inert(json.dumps(data, ensure_ascii=False, sort_keys=True))}")
    if st.get("items"):
        typer.echo("  items: " + ", ".join(f"{inert(k)}={inert(v['status'])}"
                                          for k, v in st["items"].items()))
    devs = st.get("deviations", {})
    for idx, d in devs.items():
        state = "OPEN" if d["closed_index"] is None else f"closed at {d['closed_index']}"
        typer.echo(f"  deviation {idx}: {inert(d['kind'])} — {inert(d['description'])} "
                   f"[{state}; disposition {inert(d['disposition'] or '-')}]")
    for q in view.get("qc_history", []):
        retest = (f" (retest of {q['retest_of']}: {inert(q.get('retest_reason') or '')})"
                  if q.get("retest_of") is not None else "")
        typer.echo(f"  QC #{q['index']}: {inert(q['test'])} {inert(q['result']).upper()} "
                   f"{inert(q['value'])}{' ' + inert(q['unit']) if q.get('unit') else ''}"
                   f"{retest}")
    for x in view.get("exceptional_releases", []):
        typer.echo(f"  EXCEPTIONAL RELEASE at entry {x['release']} by "
                   f"{_signers(x['released_by'])}; requested at entry {x['request']} by "
                   f"{_signers(x['requested_by'])}: {inert(x['justification'] or '')}")
        for d in x["oos_dispositions"]:
            typer.echo(f"    OOS deviation {d['deviation']}: QA disposition "
                       f"{inert(d['disposition'] or '-')} (entry {d['at']})")
    labels = st.get("labels", {})
    if labels:
        typer.echo("  labels: " + ", ".join(f"{inert(k)}={inert(v['status'])}"
                                           for k, v in labels.items()))
    echo_reconciliation(svc, view["coi"])


@app.command()
def status(
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Products by state, windows running out or exceeded, open deviations."""
    svc = open_chain(db)
    with errors():
        s = svc.status()
    if as_json:
        echo_json(s)
        return
    typer.echo("products by state:")
    for state, n in s["by_state"].items():
        typer.echo(f"  {inert(state):<30} {n}")
    typer.echo("windows running out (6 h) or exceeded:")
    for w in s["windows"]:
        left = w["remaining_ms"] // 60000
        what = f"EXCEEDED {-left} min ago" if w["exceeded"] else f"{left} min left"
        typer.echo(f"  {inert(w['coi'])}  {inert(w['window'])}  {what}  (due {w['deadline']})")
    typer.echo("open deviations:")
    for d in s["open_deviations"]:
        typer.echo(f"  {inert(d['coi'])}  {d['count']} open  ({inert(d['state'])})")
