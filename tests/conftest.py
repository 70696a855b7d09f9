"""Shared test factories: real SQLite files and a real PostgreSQL database, real keys.

PostgreSQL tests run when COI_TEST_POSTGRES_URL names a server (e.g.
postgresql://postgres@127.0.0.1:5432/postgres); each creates and drops its own database.
Without it they skip with a visible reason (`-ra` prints it); `.ci/run` sets it and fails on
any such skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from coi.ledger.clock import FixedClock
from coi.service.ledger import LedgerService, Party, Unlocked
from coi.validation.trace import load_requirements

settings.register_profile("ci", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that names an unknown requirement stops the run before anything runs."""
    known = {r.id for r in load_requirements()}
    unknown = sorted({f"{item.nodeid} names {rid!r}" for item in items
                      for mark in item.iter_markers("req") for rid in mark.args
                      if rid not in known})
    if unknown:
        raise pytest.UsageError("unknown requirement ids (see coi/validation/requirements.toml):\n"
                                + "\n".join(unknown))

PG_ENV = "COI_TEST_POSTGRES_URL"
BEFORE_0010 = (  # the ledger_entry indexes as revision 0009 left them (tests that stand earlier)
    "DROP INDEX ix_ledger_entry_type_idx",
    "CREATE INDEX ix_ledger_entry_type ON ledger_entry (type)",
    "CREATE INDEX ix_ledger_entry_subject ON ledger_entry (subject)",
)
ORIGIN = "coi.test/a9999"
PASSWORDS = {
    "admin": "admin-password-1",
    "alice": "alice-password-1",
    "bob": "bob-password-12",
    "carol": "carol-password-1",
}
NAMES = {"admin": "Ada Admin", "alice": "Alice Apheresis", "bob": "Bob Builder",
         "carol": "Carol QA"}
ROLES = {"alice": ["apheresis"], "bob": ["apheresis", "manufacturing"], "carol": ["qa"]}


@dataclass
class Ledger:
    """A ledger made for a test: its service, clock, unlocked people and where it lives."""

    svc: LedgerService
    clock: FixedClock
    people: dict[str, Unlocked] = field(default_factory=dict)
    db: str = ""
    log_key: Path | None = None

    def note(self, n: int, *, by: str = "alice", witness: str | None = "bob",
             subject: str = "CHA99992600001A") -> int:
        """Append n generic signed entries; return the last index."""
        last = -1
        for i in range(n):
            self.clock.advance(1000)
            parties = [Party(self.people[by], "authored")]
            if witness:
                parties.append(Party(self.people[witness], "witnessed"))
            last = self.svc.append("test.note", subject, {"n": i, "text": f"note {i}"},
                                   parties).index
        return last

    def reopen(self) -> LedgerService:
        return LedgerService.open(self.db, str(self.log_key), clock=self.clock)


def make_ledger(db: str, log_key: Path, *, users: tuple[str, ...] = ("alice", "bob", "carol"),
                notes: int = 0) -> Ledger:
    clock = FixedClock()
    svc = LedgerService.open(db, str(log_key), clock=clock)
    svc.init(origin=ORIGIN, admin="admin", admin_name=NAMES["admin"],
             admin_password=PASSWORDS["admin"], tz="Europe/Paris",
             site_data={"fin": "A9999"}, process=None)
    led = Ledger(svc=svc, clock=clock, db=db, log_key=log_key)
    led.people["admin"] = svc.unlock("admin", PASSWORDS["admin"])
    for u in users:
        clock.advance(1000)
        svc.enrol(led.people["admin"], user=u, name=NAMES[u], roles=ROLES[u],
                  password=PASSWORDS[u])
        led.people[u] = svc.unlock(u, PASSWORDS[u])
    if notes:
        led.note(notes)
    return led


@pytest.fixture(scope="session")
def _template_ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """One SQLite ledger with users and 20 notes, built once (key derivation is slow on purpose)."""
    d = tmp_path_factory.mktemp("template")
    return make_ledger(str(d / "coi.db"), d / "coi.db.logkey", notes=20)


@pytest.fixture
def sqlite_ledger(_template_ledger: Ledger, tmp_path: Path) -> Ledger:
    """A private copy of the template ledger (file copy: no key derivation per test)."""
    src = Path(_template_ledger.db)
    _template_ledger.svc.engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        if Path(str(src) + suffix).exists():
            shutil.copy(str(src) + suffix, str(tmp_path / "coi.db") + suffix)
    shutil.copy(_template_ledger.log_key, tmp_path / "coi.db.logkey")  # type: ignore[arg-type]
    shutil.copy(str(src) + ".phikey", tmp_path / "coi.db.phikey")
    clock = FixedClock(_template_ledger.clock.now_ms())
    svc = LedgerService.open(str(tmp_path / "coi.db"), str(tmp_path / "coi.db.logkey"),
                             clock=clock)
    people = dict(_template_ledger.people)
    return Ledger(svc=svc, clock=clock, people=people, db=str(tmp_path / "coi.db"),
                  log_key=tmp_path / "coi.db.logkey")


def postgres_server() -> str | None:
    return os.environ.get(PG_ENV) or None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    server = postgres_server()
    if not server:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/"
                    "postgres); .ci/run sets it")
    import psycopg

    name = f"coi_test_{uuid.uuid4().hex[:12]}"
    admin_url = server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(database URL, log key path) on SQLite and, when available, PostgreSQL."""
    if request.param == "sqlite":
        yield str(tmp_path / "coi.db"), tmp_path / "coi.db.logkey"
    else:
        url = request.getfixturevalue("pg_url")
        yield url, tmp_path / "pg.logkey"


@pytest.fixture
def own_cluster() -> Iterator[Any]:
    """A PostgreSQL cluster of the test's own (``tests.pg_cluster``), removed afterwards."""
    from tests.pg_cluster import new_cluster, stop_quietly

    c, root = new_cluster()
    try:
        yield c
    finally:
        stop_quietly(c)
        shutil.rmtree(root, ignore_errors=True)


LedgerFactory = Callable[..., Ledger]


# ------------------------------------------------------------------- the TUI tests' demo ledger
@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo ledger, built once per test process (scrypt for every demo user is slow)."""
    from tests.tui_support import demo_template

    return demo_template(tmp_path_factory.mktemp("tui-demo"))


@pytest.fixture
def db(demo_db: Path, tmp_path: Path) -> Path:
    """A private copy of the demo ledger for one test."""
    from tests.tui_support import copy_demo

    return copy_demo(demo_db, tmp_path)
