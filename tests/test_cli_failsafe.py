"""Fail safe, always: whatever is typed or pointed at, and whatever the disk does, a command ends
with one ``coi:`` line saying what was wrong and what to do, never a traceback.

Each case is a hostile input or a fault met by the real command on a real ledger file: a damaged,
truncated or junk database, a folder as ``--db``, a password file that is not UTF-8, JSON nested
2,000 deep or with a key given twice, ``/dev/zero`` as an input file, a full disk (a small tmpfs
of the test's own). Read commands never create a database file; no output file is replaced
without ``--force``; a bundle is verified against the site's key or says loudly that it was not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from tests.conftest import PASSWORDS, Ledger

runner = CliRunner()
SUBJECT = "CHA99992600001A"


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_coi_line(r: Any, code: int = 2) -> str:
    """The command failed with ``code`` and exactly one ``coi:`` line on stderr."""
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("coi: "), r.stderr
    return str(lines[0])


@pytest.fixture
def led(sqlite_ledger: Ledger, tmp_path: Path) -> Ledger:
    sqlite_ledger.svc.engine.dispose()
    for user, pw in PASSWORDS.items():
        (tmp_path / f"{user}.pw").write_text(pw + "\n")
    return sqlite_ledger


def pw(led: Ledger, user: str) -> str:
    return str(Path(led.db).parent / f"{user}.pw")


def size_of(led: Ledger) -> int:
    head = led.reopen().store.head()
    assert head is not None
    return head.size


# ------------------------------------------------------------------------- unusable databases
def test_junk_as_the_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("junk\n")
    for cmd in (["verify"], ["show", SUBJECT], ["status"], ["log-key"], ["user", "list"]):
        line = one_coi_line(run(*cmd, "--db", str(bad)))
        assert "damaged or is not a coi ledger" in line and "coi restore" in line
    assert bad.read_text() == "junk\n"


def test_a_folder_as_the_database(tmp_path: Path) -> None:
    line = one_coi_line(run("verify", "--db", str(tmp_path)))
    assert "is a folder" in line


def test_a_truncated_database(led: Ledger, tmp_path: Path) -> None:
    cut = tmp_path / "cut.db"
    cut.write_bytes(Path(led.db).read_bytes()[: 3 * 4096 + 100])
    line = one_coi_line(run("verify", "--db", str(cut)))
    assert "database" in line


@pytest.mark.parametrize("cmd", [["verify"], ["show", SUBJECT], ["status"], ["log-key"],
                                 ["steps"], ["user", "list"], ["prove", "inclusion", "0"],
                                 ["checkpoint"], ["export", "--all", "-o", "x.jsonl"],
                                 ["tui"], ["migrate"],
                                 ["append", "t.x", "--subject", "S", "--data", "{}", "--as",
                                  "alice", "--password-file", "-"]])
def test_commands_never_create_a_database(tmp_path: Path, cmd: list[str]) -> None:
    missing = tmp_path / "nothere.db"
    line = one_coi_line(run(*cmd, "--db", str(missing)))
    assert "does not exist" in line and "coi init" in line
    assert sorted(os.listdir(tmp_path)) == []


# --------------------------------------------------------------------------- hostile inputs
def test_a_password_file_that_is_not_utf8(led: Ledger, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.pw"
    bad.write_bytes("pässword\n".encode("latin-1"))
    size = size_of(led)
    line = one_coi_line(run("append", "t.x", "--subject", SUBJECT, "--data", "{}", "--as",
                            "alice", "--password-file", str(bad), "--db", led.db))
    assert "is not UTF-8 text" in line
    assert size_of(led) == size


def test_dev_zero_as_an_input_file_is_refused_quickly(led: Ledger) -> None:
    line = one_coi_line(run("append", "t.x", "--subject", SUBJECT, "--data", "{}", "--as",
                            "alice", "--password-file", "/dev/zero", "--db", led.db))
    assert "larger than" in line
    line = one_coi_line(run("verify", "--checkpoint", "/dev/zero", "--db", led.db))
    assert "larger than" in line
    line = one_coi_line(run("enrol", "--patient-file", "/dev/zero", "--treatment-site", "T",
                            "--slot", "S", "--as", "alice", "--db", led.db))
    assert "patient file /dev/zero is larger than 65,536 bytes" in line
    line = one_coi_line(run("witness", "cosign", "/dev/zero", "--key", "/dev/zero", "--state",
                            "/dev/zero", "--log-key", "k", "-o", str(Path(led.db).parent / "o")))
    assert "witness key file /dev/zero is larger than" in line


@pytest.mark.parametrize(("data", "message"), [
    ("[" * 2000 + "]" * 2000, "nested deeper than 16 levels"),
    ('{"a":' * 2000 + "1" + "}" * 2000, "nested deeper than 16 levels"),
    ('{"note": "one", "note": "two"}', "the key 'note' appears twice"),
    ('{"dose": 1.5}', "floats are not allowed"),
    ("[1]", "must be a JSON object"),
])
def test_hostile_data_is_a_usage_error_that_records_nothing(led: Ledger, data: str,
                                                             message: str) -> None:
    size = size_of(led)
    line = one_coi_line(run("append", "t.x", "--subject", SUBJECT, "--data", data, "--as",
                            "alice", "--password-file", pw(led, "alice"), "--db", led.db))
    assert message in line
    assert size_of(led) == size


def test_unknown_user_and_wrong_password_read_the_same_and_are_recorded(led: Ledger,
                                                                         tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-it\n")
    lines = []
    for user in ("alice", "mallory"):
        size = size_of(led)
        r = run("append", "t.x", "--subject", SUBJECT, "--data", "{}", "--as", user,
                "--password-file", str(wrong), "--db", led.db)
        line = one_coi_line(r, 1)
        lines.append(line.split(" (recorded as entry")[0])
        assert size_of(led) == size + 1  # the attempt is in the ledger
        row = led.reopen().store.row(size)
        assert row is not None and row.type == "system.login_failed"
    assert lines[0] == lines[1] == "coi: refused: unknown user or wrong password"


# ------------------------------------------------------------------------------ output files
def test_outputs_are_never_replaced_without_force(led: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "cp.txt"
    out.write_text("keep me")
    line = one_coi_line(run("checkpoint", "-o", str(out), "--db", led.db))
    assert "exists" in line and "--force" in line
    assert out.read_text() == "keep me"
    assert run("checkpoint", "-o", str(out), "--force", "--db", led.db).exit_code == 0
    assert out.read_text().startswith("coi.test/a9999\n")

    bundle = tmp_path / "b.jsonl"
    bundle.write_text("keep me")
    line = one_coi_line(run("export", "--all", "-q", "-o", str(bundle), "--db", led.db,
                            "--log-key", str(led.log_key)))
    assert "--force" in line and bundle.read_text() == "keep me"
    r = run("export", "--all", "-q", "-o", str(bundle), "--force", "--db", led.db,
            "--log-key", str(led.log_key))
    assert r.exit_code == 0, r.output
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_verify_export_needs_the_sites_key(led: Ledger, tmp_path: Path) -> None:
    bundle = tmp_path / "b.jsonl"
    assert run("export", "--all", "-q", "-o", str(bundle), "--db", led.db, "--log-key",
               str(led.log_key)).exit_code == 0
    line = one_coi_line(run("verify-export", str(bundle)))
    assert "--trust" in line
    r = run("verify-export", str(bundle), "--trust-bundle-key")
    assert r.exit_code == 3
    key = led.reopen().log_verifier_key()
    assert f"log key in the bundle: {key}" in r.stdout
    assert "WARNING" in r.stderr and "anyone can sign" in r.stderr
    r = run("verify-export", str(bundle), "--trust", key)
    assert r.exit_code == 0 and "log key pinned" in r.stdout
    line = one_coi_line(run("verify-export", str(bundle), "--trust", key, "--trust-bundle-key"))
    assert "not both" in line


# -------------------------------------------------------------------------------- full disk
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs of the test's own (needs root, as in CI's container)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_says_nothing_was_recorded(led: Ledger, small_disk: Path) -> None:
    db = small_disk / "coi.db"
    shutil.copy(led.db, db)
    shutil.copy(str(led.log_key), str(db) + ".logkey")
    before = run("verify", "--db", str(db))
    assert before.exit_code == 0, before.output
    filler = _fill(small_disk)
    # In a fresh interpreter, as a station would run it: no traceback reaches the terminal.
    r = subprocess.run([sys.executable, "-m", "coi", "append", "t.x", "--subject", SUBJECT,
                        "--data", '{"note": "' + "x" * 3000 + '"}', "--as", "alice",
                        "--password-file", pw(led, "alice"), "--db", str(db)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("coi: "), r.stderr
    assert "the disk is full" in lines[0] and "nothing was recorded" in lines[0]
    assert "free space" in lines[0]
    filler.unlink()
    after = run("verify", "--db", str(db))
    assert after.exit_code == 0, after.output
    assert after.stdout.split(";")[0] == before.stdout.split(";")[0]  # same entry count


@pytest.mark.parametrize("tables", [[], ["CREATE TABLE t (x INTEGER)"]])
def test_migrate_leaves_a_database_that_is_not_a_coi_ledger_alone(tmp_path: Path,
                                                                  tables: list[str]) -> None:
    """An empty file, or someone else's SQLite database, given as --db: `coi migrate` is a
    usage error and adds no table (only `coi init` makes a ledger)."""
    import sqlite3

    other = tmp_path / "other.db"
    if tables:
        with sqlite3.connect(other) as c:
            for q in tables:
                c.execute(q)
    else:
        other.write_bytes(b"")
    line = one_coi_line(run("migrate", "--db", str(other)))
    assert "holds no coi ledger" in line and "coi init" in line
    with sqlite3.connect(other) as c:
        names = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert names == (["t"] if tables else [])


def test_an_output_in_a_folder_that_does_not_exist_is_a_usage_error(led: Ledger,
                                                                    tmp_path: Path) -> None:
    """Checked before any work starts: one `coi:` line, exit 2, nothing written."""
    out = tmp_path / "nodir" / "x.jsonl"
    line = one_coi_line(run("export", "--all", "-o", str(out), "--db", led.db))
    assert f"folder {out.parent} does not exist" in line and "nothing was written" in line
    assert not out.parent.exists()


def test_handoff_receive_checks_its_files_before_recording_anything(db: Path,
                                                                   tmp_path: Path) -> None:
    """A folder or a device is not a hand-off file, and an acknowledgement that could not be
    written (its folder missing) is found before the receipt is recorded, not after."""
    import sqlite3

    def rows() -> int:
        with sqlite3.connect(db) as c:
            return int(c.execute("SELECT COUNT(*) FROM ledger_entry").fetchone()[0])

    size = rows()
    common = ["--as", "nina", "--password-file", "-", "--db", str(db)]
    for bad in (tmp_path, Path("/dev/zero")):
        line = one_coi_line(run("handoff", "receive", str(bad), *common))
        assert "is not a regular file" in line
        line = one_coi_line(run("handoff", "ack", str(bad), *common))
        assert "is not a regular file" in line
    f = tmp_path / "h.jsonl"
    f.write_text("{}\n")
    line = one_coi_line(run("handoff", "receive", str(f), "--ack",
                            str(tmp_path / "nodir" / "h.ack"), *common))
    assert "does not exist; nothing was written" in line
    assert rows() == size


def test_a_failed_verification_says_what_to_do(led: Ledger) -> None:
    """A ledger whose entries fail verification: the message names the entry and what was
    wrong, then what to do (record nothing more, keep the copy, restore the last verified
    backup, report it)."""
    import sqlite3

    led.svc.engine.dispose()
    with sqlite3.connect(led.db) as c:  # behind coi's back: its append-only triggers dropped
        for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                 ).fetchall():
            c.execute(f'DROP TRIGGER "{name}"')
        c.execute("UPDATE ledger_entry SET signatures = X'00' || substr(signatures, 2) "
                  "WHERE idx = 2")
    r = run("verify", "--db", led.db)
    line = one_coi_line(r, code=1)
    assert "verification FAILED: entry 2:" in line
    assert "record nothing more on this ledger" in line and "coi restore" in line
