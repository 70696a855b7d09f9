"""The ``coi`` command line over the ledger: help everywhere, the exit-code contract, proofs.

Exit codes: 0 success, 1 the thing checked is bad or the action refused (reason on stderr),
2 usage or configuration error. Most cases run in-process with Typer's ``CliRunner`` on a copy
of the template ledger; passwords on standard input go through the installed ``coi`` script in
a real subprocess, as a script would use it.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from coi.cli.main import app
from coi.ledger import merkle
from tests.conftest import PASSWORDS, Ledger

runner = CliRunner()


def _command_paths(cmd: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    subs = getattr(cmd, "commands", None)  # a group (Typer vendors its own click)
    if subs:
        for name, sub in sorted(subs.items()):
            yield from _command_paths(sub, (*prefix, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def test_the_ledger_commands_are_registered() -> None:
    for path in [("init",), ("user", "add"), ("user", "revoke"), ("user", "list"), ("append",),
                 ("verify",), ("checkpoint",), ("log-key",), ("prove", "inclusion"),
                 ("prove", "consistency")]:
        assert path in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "coi")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help(path: tuple[str, ...], flag: str) -> None:
    result = runner.invoke(app, [*path, flag])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.fixture
def cli(sqlite_ledger: Ledger, tmp_path: Path) -> Ledger:
    """The template ledger copy, disposed so the CLI opens it on its own; password files."""
    sqlite_ledger.svc.engine.dispose()
    for user, pw in PASSWORDS.items():
        (tmp_path / f"{user}.pw").write_text(pw + "\n")
    return sqlite_ledger


def coi(led: Ledger, *args: str) -> Any:
    return runner.invoke(app, [*args, "--db", led.db], catch_exceptions=False)


def pw(led: Ledger, user: str) -> str:
    return str(Path(led.db).parent / f"{user}.pw")


@pytest.mark.req("AUDIT-TRAIL")
def test_append_and_verify(cli: Ledger) -> None:
    r = coi(cli, "append", "test.cli", "--subject", "CHA99992600001A", "--data",
            '{"note": "hello"}', "--as", "alice", "--password-file", pw(cli, "alice"),
            "--witness", "bob", "--witness-password-file", pw(cli, "bob"))
    assert r.exit_code == 0, r.stderr
    assert "appended entry 24" in r.stdout
    r = coi(cli, "verify")
    assert r.exit_code == 0 and "OK: 25 entries verified" in r.stdout
    r = coi(cli, "verify", "--jobs", "2")
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize(("args", "why"), [
    (["key.enrol"], "reserved"),
    (["test.cli", "--witness", "alice"], "different person"),
])
def test_refused_append_exits_1(cli: Ledger, args: list[str], why: str) -> None:
    extra = ["--witness-password-file", pw(cli, "alice")] if "--witness" in args else []
    r = coi(cli, "append", *args, "--subject", "S", "--data", "{}", "--as", "alice",
            "--password-file", pw(cli, "alice"), *extra)
    assert r.exit_code == 1
    assert why in r.stderr and "refused" in r.stderr


def test_wrong_password_exits_1_and_is_recorded(cli: Ledger, tmp_path: Path) -> None:
    (tmp_path / "bad.pw").write_text("not-the-password\n")
    r = coi(cli, "append", "test.cli", "--subject", "S", "--data", "{}", "--as", "alice",
            "--password-file", str(tmp_path / "bad.pw"))
    assert r.exit_code == 1
    assert "wrong password" in r.stderr and "recorded as entry 24" in r.stderr


@pytest.mark.parametrize("data", ['{"a": 1.5}', "not json", "[1, 2]", '"text"', "{"])
def test_bad_data_exits_2(cli: Ledger, data: str) -> None:
    r = coi(cli, "append", "test.cli", "--subject", "S", "--data", data, "--as", "alice",
            "--password-file", pw(cli, "alice"))
    assert r.exit_code == 2
    assert "--data" in r.stderr
    assert coi(cli, "verify").stdout.startswith("OK: 24 entries")  # nothing was written


@pytest.mark.parametrize("args", [
    pytest.param(["verify"], id="verify"), pytest.param(["log-key"], id="log-key"),
    pytest.param(["checkpoint"], id="checkpoint"), pytest.param(["user", "list"], id="users"),
    pytest.param(["prove", "inclusion", "0"], id="prove")])
@pytest.mark.parametrize("where", ["no-folder", "empty-file"])
def test_missing_database_exits_2(tmp_path: Path, where: str, args: list[str]) -> None:
    db = {"no-folder": tmp_path / "no" / "such" / "dir" / "coi.db",
          "empty-file": tmp_path / "empty.db"}[where]
    r = runner.invoke(app, [*args, "--db", str(db)])
    assert r.exit_code == 2, r.output
    assert "coi:" in r.stderr


def test_usage_errors_exit_2(cli: Ledger) -> None:
    assert runner.invoke(app, ["verify", "--jobs", "0", "--db", cli.db]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
    r = coi(cli, "verify", "--checkpoint", str(Path(cli.db).parent / "missing.txt"))
    assert r.exit_code == 2


def test_tampered_ledger_fails_verify_with_the_index(cli: Ledger) -> None:
    import sqlite3

    con = sqlite3.connect(cli.db)
    con.execute("DROP TRIGGER ledger_entry_no_update")
    row = con.execute("SELECT statement FROM ledger_entry WHERE idx = 7").fetchone()
    body = bytearray(row[0])
    body[len(body) // 2] ^= 0x01
    con.execute("UPDATE ledger_entry SET statement = ? WHERE idx = 7", (bytes(body),))
    con.commit()
    con.close()
    r = coi(cli, "verify")
    assert r.exit_code == 1
    assert "verification FAILED: entry 7:" in r.stderr
    assert r.stdout == ""


def test_checkpoint_file_then_verify_against_it(cli: Ledger, tmp_path: Path) -> None:
    cp = tmp_path / "cp.txt"
    r = coi(cli, "checkpoint", "-o", str(cp))
    assert r.exit_code == 0, r.stderr
    text = cp.read_text()
    assert text.startswith("coi.test/a9999\n24\n")
    assert coi(cli, "checkpoint").stdout == text
    backup = tmp_path / "backup.db"
    shutil.copy(cli.db, backup)
    shutil.copy(str(cli.log_key), str(backup) + ".logkey")
    r = coi(cli, "verify", "--checkpoint", str(cp))
    assert r.exit_code == 0, r.stderr
    root = text.split("\n")[2]  # base64, as the checkpoint has it
    assert f"OK: 24 entries verified; root {root} (base64" in r.stdout
    assert f"pinned: consistent with the checkpoint {cp} of 24 entries (root {root})" in r.stdout
    bare = coi(cli, "verify")
    assert "NOT pinned: no checkpoint was given" in bare.stdout and "pinned:" not in \
        bare.stdout.replace("NOT pinned:", "")
    # append, keep the new checkpoint, then restore the old copy: verify must fail
    coi(cli, "append", "test.cli", "--subject", "S", "--data", "{}", "--as", "alice",
        "--password-file", pw(cli, "alice"))
    new_cp = tmp_path / "cp2.txt"
    assert coi(cli, "checkpoint", "-o", str(new_cp)).exit_code == 0
    r = runner.invoke(app, ["verify", "--db", str(backup), "--checkpoint", str(new_cp)])
    assert r.exit_code == 1
    assert "old copy was restored" in r.stderr and "entry 24" in r.stderr


def test_log_key_matches_the_checkpoint_signer(cli: Ledger) -> None:
    from coi.ledger import note

    vkey = coi(cli, "log-key").stdout.strip()
    verifier = note.parse_verifier_key(vkey)
    opened = note.open_note(coi(cli, "checkpoint").stdout, [verifier])
    assert note.parse_checkpoint(opened.text).size == 24


@pytest.mark.parametrize(("index", "size"), [(0, None), (5, None), (23, None), (3, 4), (0, 1),
                                             (12, 17)])
def test_prove_inclusion_output_verifies(cli: Ledger, index: int, size: int | None) -> None:
    args = ["prove", "inclusion", str(index)] + (["--size", str(size)] if size else [])
    r = coi(cli, *args)
    assert r.exit_code == 0, r.stderr
    p = json.loads(r.stdout)
    d = base64.b64decode
    merkle.verify_inclusion(d(p["leaf_hash"]), p["index"], p["size"],
                            [d(h) for h in p["proof"]], d(p["root"]))
    assert p["size"] == (size or 24)
    # the leaf is the stored entry's hash
    assert d(p["leaf_hash"]).hex() == cli.reopen().store.row(index).entry_hash  # type: ignore[union-attr]


@pytest.mark.parametrize(("old", "new"), [(1, 24), (7, 24), (16, 24), (3, 11), (24, 24)])
def test_prove_consistency_output_verifies(cli: Ledger, old: int, new: int) -> None:
    r = coi(cli, "prove", "consistency", str(old), str(new))
    assert r.exit_code == 0, r.stderr
    p = json.loads(r.stdout)
    d = base64.b64decode
    merkle.verify_consistency(p["old_size"], p["new_size"], d(p["old_root"]), d(p["new_root"]),
                              [d(h) for h in p["proof"]])


@pytest.mark.parametrize("args", [["prove", "inclusion", "24"], ["prove", "inclusion", "3",
                                                                  "--size", "3"],
                                  ["prove", "consistency", "5", "30"],
                                  ["prove", "consistency", "0", "3"]])
def test_impossible_proofs_are_refused(cli: Ledger, args: list[str]) -> None:
    r = coi(cli, *args)
    assert r.exit_code == 1 and "refused" in r.stderr


def test_user_list(cli: Ledger) -> None:
    r = coi(cli, "user", "list", "--json")
    assert r.exit_code == 0
    users = {u["user"]: u for u in json.loads(r.stdout)}
    assert set(users) == {"admin", "alice", "bob", "carol"}
    assert users["admin"]["roles"] == ["admin"] and users["alice"]["active"]


# -- passwords on standard input, through the real console script ----------------------------

def _coi_exe() -> list[str]:
    exe = shutil.which("coi")
    return [exe] if exe else [sys.executable, "-m", "coi.cli.main"]


def test_password_file_dash_reads_stdin(cli: Ledger) -> None:
    args = [*_coi_exe(), "append", "test.cli", "--subject", "S", "--data", '{"n": 1}',
            "--as", "alice", "--password-file", "-", "--witness", "bob",
            "--witness-password-file", "-", "--db", cli.db]
    r = subprocess.run(args, input=f"{PASSWORDS['alice']}\n{PASSWORDS['bob']}\n",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "appended entry 24" in r.stdout
    r = subprocess.run(args, input=f"{PASSWORDS['alice']}\n", capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "no more password lines" in r.stderr
    r = subprocess.run([*_coi_exe(), "verify", "--db", cli.db], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "OK: 25 entries" in r.stdout
