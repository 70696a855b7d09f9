"""A PostgreSQL cluster of a test's own: ``initdb`` in a temporary folder, its own port.

For tests that kill the server (``pg_ctl stop -m immediate``) or stream it to a replica
(``pg_basebackup``): things a test must not do to the shared server. As root, the server's
tools run as the ``postgres`` user (``initdb`` refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import postgres_server

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, root: Path, *, replica_of: Cluster | None = None) -> None:
        self.dir = root / ("replica" if replica_of else "pgdata")
        self.port = _free_port()
        self.log = root / f"{self.dir.name}.log"
        as_root = os.geteuid() == 0
        self.prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        if as_root:
            shutil.chown(root, "postgres")
        if replica_of is None:
            self.run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres", "-N")
        else:  # a hot standby streaming from the primary (-R writes its connection settings)
            self.run("pg_basebackup", "-D", str(self.dir), "-R", "-X", "stream", "-c", "fast", "-h",
                     "127.0.0.1", "-p", str(replica_of.port), "-U", "postgres")

    def run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, f"{BIN[-1]}/{tool}", *args], check=True,
                       capture_output=True, timeout=120)

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.dir), "-l", str(self.log), "-w", "-o",
                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on",
                 "start")

    def kill(self) -> None:
        self.run("pg_ctl", "-D", str(self.dir), "-m", "immediate", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/coi"


def new_cluster() -> tuple[Cluster, Path]:
    """A started cluster with an empty database ``coi``, and its folder (the caller removes
    it)."""
    if not postgres_server():
        pytest.skip("PostgreSQL tests need COI_TEST_POSTGRES_URL; .ci/run sets it")
    if not BIN:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    # Its own folder under the system temp dir: the server's user must reach it (pytest's
    # folders are private to the user running the tests).
    root = Path(tempfile.mkdtemp(prefix="coi-pg-"))
    c = Cluster(root)
    c.start()
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{c.port}/postgres",
                         autocommit=True) as conn:
        conn.execute("CREATE DATABASE coi")
    return c, root


def stop_quietly(c: Cluster) -> None:
    try:
        c.kill()
    except subprocess.CalledProcessError:
        pass


def new_site(url: str, key: Path) -> tuple[Any, Any]:
    """A ledger (no process) initialised on ``url`` with the test admin, its log key at
    ``key``, on a fixed clock: ``(LedgerService, the admin unlocked)``."""
    from coi.ledger.clock import FixedClock
    from coi.service.ledger import LedgerService
    from tests.conftest import NAMES, ORIGIN, PASSWORDS

    svc = LedgerService.open(url, str(key), clock=FixedClock())
    svc.init(origin=ORIGIN, admin="admin", admin_name=NAMES["admin"],
             admin_password=PASSWORDS["admin"], tz="Europe/Paris", site_data={"fin": "A9999"},
             process=None)
    return svc, svc.unlock("admin", PASSWORDS["admin"])
