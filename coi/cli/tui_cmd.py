"""``coi tui`` and ``coi demo``: open the terminal UI on a ledger (a demo one, built if absent).

Their Typer app is merged into ``coi`` itself; the TUI is imported only when it opens.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from coi.cli.common import EXIT_USAGE, DbOpt, LogKeyOpt, errors, fail, require_existing

app = typer.Typer()

StationOpt = Annotated[
    str | None,
    typer.Option("--station", help="Open this step's scan station after login, e.g. "
                                   "courier_pickup (default: pick from a list)"),
]
IdleOpt = Annotated[
    float,
    typer.Option("--idle-minutes", min=0.1, help="Lock the session after this many idle minutes "
                                                  "(Part 11: user id and password again)"),
]


def _run(db: str | None, log_key: str | None, station: str | None, idle_minutes: float,
         printer: str | None = None) -> None:
    from coi.service import labels as label_svc
    from coi.service.chain import CoiService

    require_existing(db)
    with errors():
        if printer is not None:
            label_svc.destination(*label_svc.station_printer(printer))
        svc = CoiService.open(db, log_key)
        process = svc.process()
        if station is not None and process.step(station) is None:
            fail(f"--station {station!r} is not a step; steps are: {', '.join(process.steps)}",
                 EXIT_USAGE)
    from coi.tui.app import CoiApp

    CoiApp(svc, station=station, idle_timeout_s=idle_minutes * 60, printer=printer).run()


def _print_demo_scans(db: str) -> None:
    """Labels to scan (type or paste them into a station's scan field, then Enter)."""
    from coi.service.tour import tour

    t = tour(db)
    lines = []
    for stop in t.scans:
        extra = f"   then the paperwork: {stop.paperwork}" if stop.paperwork else ""
        lines.append(f"  {stop.step:<21} as {stop.user:<5} scan {stop.scan}{extra}")
    if t.release is not None:
        lines.append(f"  QA release            as {t.releaser}: F3, open {t.release}, press r")
    if lines:
        typer.echo("Try these (coi tui --station STEP opens a station directly; F2 picks one):")
        for line in lines:
            typer.echo(line)


@app.command("tui")
def tui(db: DbOpt = None, log_key: LogKeyOpt = None, station: StationOpt = None,
        idle_minutes: IdleOpt = 15.0,
        printer: Annotated[str | None, typer.Option(
            help="The station's label printer: HOST[:PORT] (raw TCP, 9100) or cups:QUEUE; "
                 "p on a product's page prints a signed label there")] = None) -> None:
    """Open the terminal UI: scan stations, QA review and release, audit, users."""
    _run(db, log_key, station, idle_minutes, printer)


def _build_demo(db: Path, products: int) -> None:
    """Build the demo ledger, saying what takes the time and how far it got (on stderr)."""
    import time

    from coi.service.demo import DEMO_STAFF
    from coi.service.tour import build_now

    started = time.monotonic()
    enrolled = 0

    def progress(_message: str) -> None:
        nonlocal enrolled
        enrolled += 1
        if enrolled == 1:
            typer.echo(f"  site and users ready after {time.monotonic() - started:.0f} s; "
                       f"walking {products} products along the chain…", err=True)
        typer.echo(f"  product {enrolled} of {products} enrolled "
                   f"({time.monotonic() - started:.0f} s)", err=True)

    typer.echo(f"building the demo ledger {db}: site A9999 and {len(DEMO_STAFF)} demo users "
               "first (each password is stretched with scrypt, about 1 s each on purpose)…",
               err=True)
    with errors():
        build_now(str(db), products=products, progress=progress)
    typer.echo(f"built in {time.monotonic() - started:.1f} s", err=True)


def _build_federation(root: Path) -> str:
    """Build the federation demo in ``root``; print its organisations, users, products and, as
    the last line, the verify-chain command (run in ``root``). The treatment centre's database."""
    import os
    import shlex

    from coi.service.demo import demo_password
    from coi.service.demo_federation import ORGS, build_federation
    from coi.service.text import inert

    url = os.environ.get("COI_DATABASE_URL") or ""
    pg = url if url.startswith(("postgresql:", "postgresql+")) else None
    typer.echo(f"building three organisations' ledgers in {root} (the manufacturer on "
               f"{'PostgreSQL' if pg else 'SQLite'}); each password is stretched with scrypt, "
               "about 1 s a user…", err=True)
    with errors():
        fed = build_federation(root, manufacturer_db=pg,
                               progress=lambda m: typer.echo(f"  {m}", err=True))
    typer.echo("Organisations (database; users / passwords / roles) — passwords shown once:")
    for org in ORGS:
        db = fed.dbs[org.key]
        where = "the PostgreSQL database COI_DATABASE_URL names" if db == pg else f"--db {db}"
        typer.echo(f"  {org.key} FIN {org.fin}  {inert(where)}")
        for user, _name, roles in org.staff:
            typer.echo(f"    {user:<7} {demo_password(user):<20} {', '.join(roles)}")
    typer.echo("Products (where each stands now; then its stage in each organisation's ledger):")
    for coi, where in fed.products.items():
        typer.echo(f"  {coi}  {where}")
        for org in ORGS:
            if org.key in fed.stages.get(coi, {}):
                typer.echo(f"    {org.key:<18} {fed.stages[coi][org.key]}")
    typer.echo("Open an organisation's terminal UI (labels printed there: its labels/ folder):")
    for org in ORGS:
        db = fed.dbs[org.key]
        where = (f"coi tui --log-key {shlex.quote(str(root / org.key / 'coi.logkey'))} "
                 "(COI_DATABASE_URL as now)" if db == pg
                 else f"coi tui --db {shlex.quote(str(root / db))}")
        user = next(u for u, _n, roles in org.staff if set(roles) - {"admin", "courier"})
        typer.echo(f"  {org.key:<18} {inert(where)}   (e.g. as {user})")
    typer.echo(f"{fed.finished} went the whole way; verify it across the three organisations "
               f"(in {root}):")
    typer.echo(fed.command)
    sqlite = fed.dbs[ORGS[-1].key]
    return str(root / sqlite)


@app.command("demo")
def demo(
    db: Annotated[Path, typer.Option("--db", help="The demo SQLite file (built if absent)")] =
    Path("coi-demo.db"),
    products: Annotated[int, typer.Option(min=1, max=200, help="Products in a new demo")] = 20,
    station: StationOpt = None,
    idle_minutes: IdleOpt = 15.0,
    no_tui: Annotated[bool, typer.Option(
        "--no-tui", help="Build the demo ledger (if absent) and print its users, without "
                         "opening the terminal UI")] = False,
    federation: Annotated[Path | None, typer.Option(
        "--federation", help="Build instead three organisations' ledgers in this new folder, "
                             "products handed between them, and print the verify-chain "
                             "command of one that went the whole way")] = None,
) -> None:
    """Build a demo ledger (site A9999, demo staff, ~20 products) if absent, then open the TUI."""
    from coi.service.demo import DEMO_STAFF, demo_password

    if federation is not None:
        treatment = _build_federation(federation)
        if no_tui:
            return
        _run(treatment, None, station, idle_minutes)
        return
    if db.is_dir():
        fail(f"--db {db} is a folder: give the demo database's file path", EXIT_USAGE)
    if not db.exists():
        _build_demo(db, products)
        typer.echo("Demo users (user id / password / roles) — shown once:")
        for user, name, roles in DEMO_STAFF:
            typer.echo(f"  {user:<7} {demo_password(user):<20} {', '.join(roles):<14} {name}")
        with errors():
            _print_demo_scans(str(db))
        if no_tui:
            return
        if sys.stdin.isatty():  # let them read the passwords before the UI takes the screen
            typer.prompt("Press Enter to open the terminal UI", default="", show_default=False)
    elif no_tui:
        typer.echo(f"the demo ledger {db} exists already; open it with: coi tui --db {db}")
        return
    _run(str(db), None, station, idle_minutes)
