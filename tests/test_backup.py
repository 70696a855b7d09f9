"""Backups that prove themselves, restores that never overwrite a ledger (EU GMP Annex 11 §7.2).

Real SQLite files and a real PostgreSQL database (pg_dump / pg_restore); writers keep appending
while the backup runs; the copy is verified on a scratch restore against the checkpoint signed at
backup time; a restore reports what it lacks against a checkpoint kept elsewhere.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.service.backup import backup, restore
from coi.service.errors import ConfigError, VerificationError
from coi.service.ledger import LedgerService, Party
from tests.conftest import Ledger, make_ledger

runner = CliRunner()


def _keep_writing(led: Ledger, stop: threading.Event, written: list[int]) -> None:
    """Another station: its own service on the same database, appending until told to stop."""
    svc = LedgerService.open(led.db, str(led.log_key), clock=led.clock)
    try:
        while not stop.is_set():
            written.append(svc.append("test.note", "CHA99992600001A", {"n": len(written)},
                                      [Party(led.people["alice"], "authored")]).index)
    finally:
        svc.db.dispose()


@pytest.mark.req("BACKUP")
def test_a_backup_taken_while_a_station_writes_restores_and_verifies(sqlite_ledger: Ledger,
                                                                     tmp_path: Path) -> None:
    """A backup taken while another station keeps appending holds at least the checkpoint
    signed at backup time, verifies on a scratch restore, and restores into a new file."""
    stop, written = threading.Event(), []
    station = threading.Thread(target=_keep_writing, args=(sqlite_ledger, stop, written))
    station.start()
    try:
        while len(written) < 5:
            stop.wait(0.01)
        r = backup(sqlite_ledger.svc, tmp_path / "site.backup")
    finally:
        stop.set()
        station.join()
    assert r.entries >= r.size > 25
    assert r.checkpoint_path.read_text() == r.checkpoint
    target = tmp_path / "restored.db"
    rr = restore(r.path, str(target), checkpoints=[r.checkpoint])
    assert rr.entries == r.entries and rr.missing is None and rr.newest_size == r.size
    restored = LedgerService.open(str(target), str(sqlite_ledger.log_key))
    assert restored.verify().size == r.entries


@pytest.mark.req("BACKUP")
def test_a_restore_names_the_entries_a_backup_lacks(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    """Against a newer checkpoint kept elsewhere, the restore reports the missing range."""
    r = backup(sqlite_ledger.svc, tmp_path / "old.backup")
    sqlite_ledger.note(4)
    newer = sqlite_ledger.svc.checkpoint()
    rr = restore(r.path, str(tmp_path / "restored.db"), checkpoints=[r.checkpoint, newer])
    assert rr.missing == (r.entries, r.entries + 3) and rr.newest_size == r.entries + 4


def test_nothing_is_overwritten(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "b.backup"
    r = backup(sqlite_ledger.svc, out)
    with pytest.raises(ConfigError, match="exists"):
        backup(sqlite_ledger.svc, out)
    with pytest.raises(ConfigError, match="never restores over a ledger"):
        restore(r.path, sqlite_ledger.db)
    assert backup(sqlite_ledger.svc, out, force=True).path == out


@pytest.mark.req("BACKUP")
def test_a_tampered_backup_fails_to_restore_and_leaves_nothing(sqlite_ledger: Ledger,
                                                              tmp_path: Path) -> None:
    r = backup(sqlite_ledger.svc, tmp_path / "b.backup")
    con = sqlite3.connect(r.path)
    triggers = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    for t in triggers:
        con.execute(f'DROP TRIGGER "{t}"')
    con.execute("UPDATE ledger_entry SET statement = CAST(replace(statement, 'note 3', 'note 9') "
                "AS BLOB) WHERE idx = (SELECT max(idx) - 16 FROM ledger_entry)")
    con.commit()
    con.close()
    target = tmp_path / "restored.db"
    with pytest.raises(VerificationError):
        restore(r.path, str(target))
    assert not target.exists() and not Path(f"{target}-wal").exists()


def test_a_file_that_is_not_a_backup_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"not a database at all")
    with pytest.raises(ConfigError, match="not a SQLite backup"):
        restore(junk, str(tmp_path / "r.db"))
    assert not (tmp_path / "r.db").exists()


@pytest.mark.req("BACKUP")
def test_backup_and_restore_from_the_command_line(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "cli.backup"
    done = runner.invoke(app, ["backup", "-o", str(out), "--db", sqlite_ledger.db,
                               "--log-key", str(sqlite_ledger.log_key)])
    assert done.exit_code == 0, done.output
    assert "verified on a scratch restore" in done.output
    again = runner.invoke(app, ["backup", "-o", str(out), "--db", sqlite_ledger.db,
                                "--log-key", str(sqlite_ledger.log_key)])
    assert again.exit_code == 2 and "exists" in again.output
    target = tmp_path / "restored.db"
    done = runner.invoke(app, ["restore", str(out), "--db", str(target),
                               "--checkpoint", f"{out}.checkpoint"])
    assert done.exit_code == 0, done.output
    assert "nothing is missing" in done.output
    done = runner.invoke(app, ["restore", str(out), "--db", str(target)])
    assert done.exit_code == 2 and "never restores over a ledger" in done.output


@pytest.mark.postgres
@pytest.mark.req("BACKUP")
def test_postgresql_backup_restores_into_a_new_database(pg_url: str, tmp_path: Path) -> None:
    """pg_dump while the ledger is live, verified on a scratch database, restored into a new one."""
    led = make_ledger(pg_url, tmp_path / "pg.logkey", notes=3)
    r = backup(led.svc, tmp_path / "pg.backup")
    assert r.entries == r.size == led.svc.verify().size
    target = pg_url.rsplit("/", 1)[0] + "/" + pg_url.rsplit("/", 1)[1] + "_restored"
    try:
        rr = restore(r.path, target, checkpoints=[r.checkpoint])
        assert rr.entries == r.entries and rr.missing is None
        with pytest.raises(ConfigError, match="already exists"):
            restore(r.path, target)
    finally:
        import psycopg

        admin = pg_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target.rsplit("/", 1)[1]}" WITH (FORCE)')
