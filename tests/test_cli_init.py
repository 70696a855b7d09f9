"""``coi init`` at a terminal: the new administrator's password is typed twice, never echoed,
and a mismatch is refused with nothing created (no database, no log key file)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pexpect

COI = shutil.which("coi") or str(Path(sys.executable).with_name("coi"))


def _init(tmp_path: Path) -> pexpect.spawn:
    return pexpect.spawn(COI, ["init", "--db", str(tmp_path / "site.db"), "--origin",
                               "coi.test/init", "--admin", "admin", "--admin-name", "Ada Admin"],
                         cwd=str(tmp_path), encoding="utf-8", timeout=120,
                         env={**os.environ, "COLUMNS": "100"})


def test_init_asks_twice_and_refuses_a_mismatch(tmp_path: Path) -> None:
    child = _init(tmp_path)
    child.expect("new password for admin: ")
    child.sendline("first-password-1")
    child.expect(r"new password for admin \(again\): ")
    child.sendline("second-password-2")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert "coi: the two passwords differ: nothing was changed" in child.before
    assert "first-password-1" not in child.before  # never echoed
    assert os.listdir(tmp_path) == []


def test_init_with_the_same_password_twice(tmp_path: Path) -> None:
    child = _init(tmp_path)
    child.expect("new password for admin: ")
    child.sendline("same-password-1")
    child.expect(r"\(again\): ")
    child.sendline("same-password-1")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert "initialised ledger coi.test/init" in child.before
    assert "same-password-1" not in child.before
    assert (tmp_path / "site.db").exists() and (tmp_path / "site.db.logkey").exists()
