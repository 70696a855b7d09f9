"""Labels sent to a printer: raw TCP (a listener on 127.0.0.1 receives what a Zebra printer
would, compared byte for byte with the file copy) and CUPS (``lp -o raw``; a stand-in ``lp`` on
PATH plays the spooler). A label is recorded printed only once the printer side took every byte;
a refused connection, a printer that drops the connection, or ``lp`` failing leaves it issued,
not printed, with a clear message. One real demo site per module; FIN A9999 only.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain import payload
from coi.service import demo
from coi.service import labels as L
from coi.service.errors import ConfigError, Refused

START_MS = 1_780_000_000_000
_SEQ = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("printer") / "coi.db"


@pytest.fixture(scope="module")
def site(db_path: Path) -> demo.Site:
    return demo.create_site(str(db_path), clock=demo.MovableClock(START_MS))


def collected(site: demo.Site) -> demo.Walk:
    clock = site.svc.clock
    assert isinstance(clock, demo.MovableClock)
    w = demo.Walk(seq=next(_SEQ))
    clock.set(clock.now_ms() + demo.D)
    demo.enrol(site, w)
    demo.step(site, w, 0, clock.now_ms())
    return w


class Printer:
    """A raw-TCP label printer on 127.0.0.1: reads one job to the end, then closes."""

    def __init__(self, *, read: bool = True) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = b""
        self.read = read
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            if not self.read:  # closes with the label unread: the kernel resets the connection
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                return
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
            self.received = b"".join(chunks)
        self.server.close()


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def test_a_label_sent_over_tcp_is_what_the_file_holds_and_is_recorded_printed(
        site: demo.Site, tmp_path: Path) -> None:
    w = collected(site)
    printer = Printer()
    copy = tmp_path / "copy.zpl"
    to = L.destination(f"127.0.0.1:{printer.port}", None)
    lid, path = L.issue_and_print(site.svc, site.people["alice"], w.coi, "C00001", "zpl", "2x1",
                                  None, False, copy, send_to=to)
    printer.thread.join(5)
    assert printer.received == copy.read_bytes() and path == copy
    assert f"MA,{payload.encode(w.coi, 'C00001')}".encode() in printer.received
    (row,) = L.reconciliation(site.svc, w.coi)
    assert row["outcome"] == "outstanding" and row["printed"]
    entry = site.svc.ledger.store.row(row["events"][-1])
    assert entry is not None and f"TCP-127-0-0-1-{printer.port}".encode() in entry.statement


@pytest.mark.req("LABEL-CONTROL")
@pytest.mark.parametrize("printer_reads", [False, None])
def test_a_printer_that_does_not_take_the_label_leaves_it_issued_not_printed(
        site: demo.Site, tmp_path: Path, printer_reads: bool | None) -> None:
    w = collected(site)
    port = Printer(read=False).port if printer_reads is False else free_port()
    copy = tmp_path / "copy.zpl"
    with pytest.raises(Refused, match="was issued but not printed: printer tcp:127.0.0.1"):
        L.issue_and_print(site.svc, site.people["alice"], w.coi, "C00001", "zpl", "2x1", None,
                          False, copy, send_to=L.destination(f"127.0.0.1:{port}", None))
    assert not copy.exists()
    (row,) = L.reconciliation(site.svc, w.coi)
    assert row["outcome"] == "not printed" and row["status"] == "issued"


def test_destinations_are_checked_before_anything_is_recorded(site: demo.Site,
                                                              tmp_path: Path) -> None:
    w = collected(site)
    size = site.svc.ledger.store.count_rows()
    for send_to, queue, words in (("a b", None, "not a printer address"),
                                  ("host:70000", None, "not a printer address"),
                                  (None, "x/y", "not a CUPS queue"),
                                  ("h", "q", "not both")):
        with pytest.raises(ConfigError, match=words):
            L.destination(send_to, queue)
    with pytest.raises(ConfigError, match="takes ZPL"):
        L.issue_and_print(site.svc, site.people["alice"], w.coi, "C00001", "png", "2x1", None,
                          False, None, send_to=L.destination("127.0.0.1", None))
    with pytest.raises(ConfigError, match="a file \\(-o\\) or a printer"):
        L.issue_and_print(site.svc, site.people["alice"], w.coi, "C00001", "zpl", "2x1", None,
                          False, None)
    assert site.svc.ledger.store.count_rows() == size


def fake_lp(bin_dir: Path, job: Path, exit_code: int = 0) -> None:
    """A stand-in for CUPS's lp: keeps the job it is given, says what a spooler says."""
    lp = bin_dir / "lp"
    lp.write_text(f"#!/bin/sh\ncat > '{job}'\necho \"$@\" > '{job}.args'\n"
                  + ("echo 'lp: The printer or class does not exist.' >&2\n" if exit_code else "")
                  + f"exit {exit_code}\n")
    lp.chmod(lp.stat().st_mode | stat.S_IXUSR)


def test_cli_sends_to_a_tcp_printer_and_a_cups_queue(site: demo.Site, db_path: Path,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    pw = tmp_path / "alice.pw"
    pw.write_text(demo.demo_password("alice") + "\n")
    common = ["--db", str(db_path), "--as", "alice", "--password-file", str(pw)]
    w = collected(site)
    printer = Printer()
    r = runner.invoke(app, ["label", w.coi, "-f", "zpl", "--send", f"127.0.0.1:{printer.port}",
                            "-o", str(tmp_path / "a.zpl"), *common])
    assert r.exit_code == 0, r.stderr
    printer.thread.join(5)
    assert printer.received == (tmp_path / "a.zpl").read_bytes()
    assert f"printer tcp:127.0.0.1:{printer.port}" in r.stdout

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    job = tmp_path / "job.zpl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    w2 = collected(site)
    fake_lp(bin_dir, job)
    r = runner.invoke(app, ["label", w2.coi, "-f", "zpl", "--queue", "zebra-3", *common])
    assert r.exit_code == 0, r.stderr
    assert f"MA,{payload.encode(w2.coi, 'C00001')}".encode() in job.read_bytes()
    assert (tmp_path / "job.zpl.args").read_text().split() == ["-d", "zebra-3", "-o", "raw", "-"]
    assert L.reconciliation(site.svc, w2.coi)[0]["printed"]

    w3 = collected(site)
    fake_lp(bin_dir, job, exit_code=1)
    r = runner.invoke(app, ["label", w3.coi, "-f", "zpl", "--queue", "gone", *common])
    assert r.exit_code == 1
    assert "issued but not printed: lp refused the label for cups:gone (exit 1)" in r.stderr
    assert "does not exist" in r.stderr
    assert L.reconciliation(site.svc, w3.coi)[0]["outcome"] == "not printed"


def test_a_reprint_sent_to_a_printer(site: demo.Site, tmp_path: Path) -> None:
    w = collected(site)
    alice = site.people["alice"]
    old, _ = L.issue_and_print(site.svc, alice, w.coi, "C00001", "zpl", "2x1", None, False,
                               tmp_path / "old.zpl")
    with pytest.raises(Refused, match=f"the reprint of {old} was not printed: printer tcp"):
        L.reprint(site.svc, alice, w.coi, old, "torn", "zpl", "2x1", None, False, None,
                  send_to=L.destination(f"127.0.0.1:{free_port()}", None))
    rows = L.reconciliation(site.svc, w.coi)
    assert [r["outcome"] for r in rows] == ["voided"]  # nothing recorded after the void
    printer = Printer()
    new, _ = L.reprint(site.svc, alice, w.coi, old, "torn", "zpl", "2x1", None, False, None,
                       send_to=L.destination(f"127.0.0.1:{printer.port}", None))
    printer.thread.join(5)
    assert f"MA,{payload.encode(w.coi, 'C01001')}".encode() in printer.received
    assert [r["outcome"] for r in L.reconciliation(site.svc, w.coi)] == ["voided", "outstanding"]
    entry = site.svc.ledger.store.row(L.reconciliation(site.svc, w.coi)[1]["events"][0])
    assert entry is not None and f"TCP-127-0-0-1-{printer.port}".encode() in entry.statement
