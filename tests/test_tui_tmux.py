"""Drive the real ``coi demo`` in tmux, as a person would, and read what the screen shows.

A 100x30 tmux session runs ``coi demo --station harvest`` on a new demo ledger; the test sends
the login as one burst (user id, Tab, password, Enter in a single write to the terminal, what a
password manager or a scanner with a Tab suffix sends), a label payload as a scanner would
(characters, then Enter), fills the step's fields, signs, and checks the confirmation on the
captured pane and in the ledger. The password must never be on screen.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coi.domain.payload import encode
from coi.service.chain import CoiService
from coi.service.demo import demo_password

pytestmark = [
    pytest.mark.xdist_group("tui"),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_for(session: str, text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        shown = screen(session)
        if text in shown:
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared; the screen shows:\n{shown}")
        time.sleep(0.2)


def send(session: str, *keys: str, literal: bool = False) -> None:
    tmux("send-keys", "-t", session, *(["-l"] if literal else []), *keys)
    if not literal:
        time.sleep(0.3)  # a person's pace: Enter moves the focus before the next field is typed


def test_scan_and_sign_in_the_real_tui(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    session = f"coi-tui-test-{int(time.time() * 1000) % 10**8}"
    command = (f"{sys.executable} -c 'from coi.cli.main import run; run()' "
               f"demo --db {db} --station harvest")
    tmux("new-session", "-d", "-x", "100", "-y", "30", "-s", session, command)
    try:
        shown = wait_for(session, "Press Enter to open the terminal UI", timeout=120)
        assert "maya" in shown and demo_password("maya") in shown
        send(session, "Enter")
        wait_for(session, "Log in with your user id")
        password = demo_password("maya")
        tmux("send-keys", "-t", session, "-l", f"maya\t{password}\r")  # one burst, one write
        shots = [screen(session)]
        deadline = time.monotonic() + 60
        while "Station: Harvest" not in shots[-1]:
            assert time.monotonic() < deadline, f"no station after the login:\n{shots[-1]}"
            time.sleep(0.05)
            shots.append(screen(session))
        for shot in shots:
            assert password not in shot, f"the password is on screen:\n{shot}"

        svc = CoiService.open(str(db))
        ready = svc.products(state="expanded")
        assert ready, "the demo has a product ready for harvest"
        coi = ready[0]["coi"]
        before = svc.ledger.store.head()
        assert before is not None

        send(session, encode(coi, "C00001"), literal=True)  # what the scanner types
        send(session, "Enter")
        shown = wait_for(session, "Fill in the fields")
        assert "State: expanded" in shown and coi in shown
        send(session, "3100000000", literal=True)
        send(session, "Enter")
        send(session, "92.5", literal=True)
        send(session, "Enter")
        send(session, demo_password("maya"), literal=True)
        send(session, "Enter")
        shown = wait_for(session, "RECORDED as entry")
        assert "authored by Maya Manufacturing" in shown
        assert demo_password("maya") not in shown  # the password never shows

        after = CoiService.open(str(db)).ledger.store.head()
        assert after is not None and after.size == before.size + 1
        assert f"RECORDED as entry {before.size}" in shown

        send(session, "[bold red]x[/]", literal=True)  # markup typed at the scan input
        send(session, "Enter")
        shown = wait_for(session, "SCAN REFUSED")
        assert "[bold red]x[/]" in shown
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
