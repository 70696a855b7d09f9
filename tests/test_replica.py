"""Reads that decide no move can go to a streaming replica (issue 21, item 5).

A primary of the test's own streams to a hot standby made with ``pg_basebackup -R``;
``COI_READ_DATABASE_URL`` names the standby. What the primary commits, the lists, the timeline
and the export read from the replica (once it has arrived); a replica never accepts a write: an
append on it is refused with a message that names the primary, and nothing is half-written.
``coi verify`` reads the replica too, says so, and says how far the primary is ahead.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from coi.db.database import Database
from coi.db.url import DatabaseUrl
from coi.service.errors import ConfigError
from coi.service.ledger import LedgerService, Party
from tests.pg_cluster import Cluster, new_site, stop_quietly

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("pg-cluster")]


def test_replica_reads_what_the_primary_committed_and_refuses_writes(
        own_cluster: Cluster, tmp_path: Path) -> None:
    primary = own_cluster
    key = tmp_path / "coi.logkey"
    svc, admin = new_site(primary.url, key)
    clock = svc.clock

    root = primary.dir.parent
    replica = Cluster(root, replica_of=primary)
    replica.start()
    try:
        env = {"COI_READ_DATABASE_URL": replica.url}
        db = Database.open(DatabaseUrl.parse(primary.url), env=env)
        assert db.reader is not db.engine
        assert db.reader.url.port == replica.port

        last = svc.append("test.note", "CHA99992600001A", {"n": 1}, [Party(admin, "authored")])
        deadline = time.monotonic() + 30
        seen: list[int] = []
        while time.monotonic() < deadline:
            seen = [r.index for r in db.ledger.rows_for_subject("CHA99992600001A",
                                                                replica=True)]
            if last.index in seen:
                break
            time.sleep(0.2)
        assert seen == [last.index], "the replica shows what the primary committed"
        # an export below a size the replica holds reads it from the replica
        assert [r.index for r in db.ledger.rows_where(below=last.index + 1)] == list(
            range(last.index + 1))

        on_replica = LedgerService.open(replica.url, str(key), clock=clock)
        with pytest.raises(ConfigError, match="read-only replica"):
            on_replica.append("test.note", "CHA99992600001A", {"n": 2},
                              [Party(admin, "authored")])
        on_replica.engine.dispose()
        assert svc.store.head().size == last.index + 1  # type: ignore[union-attr]
        db.dispose()
    finally:
        stop_quietly(replica)
        shutil.rmtree(replica.dir, ignore_errors=True)
    svc.engine.dispose()


def test_a_replica_of_a_sqlite_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="COI_READ_DATABASE_URL"):
        Database.open(DatabaseUrl.parse(str(tmp_path / "coi.db")),
                      env={"COI_READ_DATABASE_URL": "postgresql://postgres@127.0.0.1/x"})


def _replica_size(replica: Cluster) -> int:
    import psycopg

    with psycopg.connect(replica.url) as conn:
        row = conn.execute("SELECT size FROM ledger_head").fetchone()
    return int(row[0]) if row else 0


def _wait_for(replica: Cluster, size: int) -> None:
    deadline = time.monotonic() + 30
    while _replica_size(replica) < size:
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.2)


def _replay(replica: Cluster, action: str) -> None:
    import psycopg

    with psycopg.connect(replica.url, autocommit=True) as conn:
        conn.execute(f"SELECT pg_wal_replay_{action}()")


def test_verify_reads_the_replica_and_says_how_far_behind_it_is(
        own_cluster: Cluster, tmp_path: Path) -> None:
    """``coi verify`` reads the replica when ``COI_READ_DATABASE_URL`` names one, prints the size
    it verified and which database it read; a replica that lags is said to lag (never a smaller
    ledger passed off as the whole); a checkpoint the replica does not reach yet is checked on
    the primary, saying so. ``coi export --all`` gets every entry of its checkpoint either way."""
    from typer.testing import CliRunner

    from coi.cli.main import app

    primary = own_cluster
    key = tmp_path / "coi.logkey"
    svc, admin = new_site(primary.url, key)
    for n in range(3):
        svc.append("test.note", "CHA99992600001A", {"n": n}, [Party(admin, "authored")])
    size = svc.store.head().size  # type: ignore[union-attr]

    replica = Cluster(primary.dir.parent, replica_of=primary)
    replica.start()
    runner = CliRunner()
    env = {"COI_READ_DATABASE_URL": replica.url}
    try:
        _wait_for(replica, size)
        res = runner.invoke(app, ["verify", "--db", primary.url, "--jobs", "2"], env=env)
        assert res.exit_code == 0, res.output
        assert f"OK: {size} entries verified" in res.output
        assert "read from the read replica " in res.output
        assert (f":{replica.port}/coi (COI_READ_DATABASE_URL): {size} entries; the primary "
                f"holds {size} too") in res.output

        _replay(replica, "pause")  # the replica now lags
        for n in range(2):
            svc.append("test.note", "CHA99992600001A", {"n": 10 + n}, [Party(admin, "authored")])
        res = runner.invoke(app, ["verify", "--db", primary.url], env=env)
        assert res.exit_code == 0, res.output
        assert f"OK: {size} entries verified" in res.output
        assert (f"the primary holds {size + 2}: the 2 newest were not verified here "
                "(the replica lags") in res.output

        cp = tmp_path / "cp.txt"
        cp.write_text(svc.checkpoint())
        res = runner.invoke(app, ["verify", "--db", primary.url, "--checkpoint", str(cp)],
                            env=env)
        assert res.exit_code == 0, res.output
        assert f"OK: {size + 2} entries verified" in res.output
        assert f"read from the primary postgresql+psycopg://postgres@127.0.0.1:{primary.port}/coi" \
            in res.output

        bundle = tmp_path / "all.coi"
        res = runner.invoke(app, ["export", "--all", "-q", "-o", str(bundle), "--db",
                                  primary.url, "--log-key", str(key)], env=env)
        assert res.exit_code == 0, res.output
        entries = bundle.read_bytes().count(b'{"kind":"entry"')
        assert entries == size + 2  # the checkpoint's size, not the lagging replica's

        _replay(replica, "resume")
        _wait_for(replica, size + 2)
        res = runner.invoke(app, ["verify", "--db", primary.url], env=env)
        assert res.exit_code == 0, res.output
        assert f"{size + 2} entries; the primary holds {size + 2} too" in res.output
    finally:
        stop_quietly(replica)
        shutil.rmtree(replica.dir, ignore_errors=True)
    svc.engine.dispose()


def test_the_state_table_is_compared_on_the_replica_and_rebuilt_on_the_primary(
        own_cluster: Cluster, tmp_path: Path) -> None:
    """With a process in force, ``coi verify`` on the replica compares the replica's product
    state table (read in the snapshot of its head); ``coi migrate`` rebuilds on the primary."""
    import psycopg
    from typer.testing import CliRunner

    from coi.cli.main import app
    from tests.chain_site import T0, H, new_site, new_walk, walk

    primary = own_cluster
    site = new_site(primary.url, tmp_path / "coi.logkey")
    w = new_walk(site, seq=1, start_ms=T0 + H)
    walk(site, w, until="labelling")
    size = site.entry_count()
    replica = Cluster(primary.dir.parent, replica_of=primary)
    replica.start()
    runner = CliRunner()
    env = {"COI_READ_DATABASE_URL": replica.url}

    def replica_rows() -> int:
        with psycopg.connect(replica.url) as conn:
            return int(conn.execute("SELECT count(*) FROM product_state").fetchone()[0])

    def wait_rows(n: int) -> None:
        deadline = time.monotonic() + 30
        while replica_rows() != n:
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.2)

    try:
        _wait_for(replica, size)
        site.sql("DELETE FROM product_state WHERE coi = :c", c=w.coi)
        site.svc.ledger.engine.dispose()
        wait_rows(0)
        res = runner.invoke(app, ["verify", "--db", primary.url], env=env)
        assert res.exit_code == 1 and w.coi in res.stderr and "coi migrate" in res.stderr
        res = runner.invoke(app, ["migrate", "--db", primary.url, "--log-key",
                                  str(site.log_key)], env=env)
        assert res.exit_code == 0, res.output + res.stderr
        assert f"{w.coi}: no row is stored" in res.output
        _wait_for(replica, size + 1)
        wait_rows(1)
        res = runner.invoke(app, ["verify", "--db", primary.url], env=env)
        assert res.exit_code == 0, res.output + res.stderr
        assert f"OK: {size + 1} entries verified" in res.output
        assert "read from the read replica" in res.output
    finally:
        stop_quietly(replica)
        shutil.rmtree(replica.dir, ignore_errors=True)
    site.svc.ledger.engine.dispose()
