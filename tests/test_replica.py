"""Reads that decide no move can go to a streaming replica (issue 21, item 5).

A primary of the test's own streams to a hot standby made with ``pg_basebackup -R``;
``COI_READ_DATABASE_URL`` names the standby. What the primary commits, the lists, the timeline
and the export read from the replica (once it has arrived); a replica never accepts a write: an
append on it is refused with a message that names the primary, and nothing is half-written.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from coi.db.database import Database
from coi.db.url import DatabaseUrl
from coi.ledger.clock import FixedClock
from coi.service.errors import ConfigError
from coi.service.ledger import LedgerService, Party
from tests.conftest import NAMES, ORIGIN, PASSWORDS
from tests.pg_cluster import Cluster, stop_quietly

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("pg-cluster")]


def test_replica_reads_what_the_primary_committed_and_refuses_writes(
        own_cluster: Cluster, tmp_path: Path) -> None:
    primary = own_cluster
    key = tmp_path / "coi.logkey"
    clock = FixedClock()
    svc = LedgerService.open(primary.url, str(key), clock=clock)
    svc.init(origin=ORIGIN, admin="admin", admin_name=NAMES["admin"],
             admin_password=PASSWORDS["admin"], tz="Europe/Paris", site_data={"fin": "A9999"},
             process=None)
    admin = svc.unlock("admin", PASSWORDS["admin"])

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
