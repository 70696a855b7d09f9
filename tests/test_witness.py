"""The witness: cosigns consistent growth only, refuses a fork made from a restored backup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.export.witness import Refusal, decide, load_key, load_state, new_key, witness
from coi.ledger.errors import VerificationError
from coi.ledger.note import parse_verifier_key, verify_cosignature
from coi.service.ledger import LedgerService, Party
from tests.conftest import Ledger


def _copy_db(src: str, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(src + suffix).exists():
            shutil.copy(src + suffix, str(dst) + suffix)


def _append(svc: LedgerService, led: Ledger, n: int, text: str) -> None:
    for i in range(n):
        led.clock.advance(1000)
        svc.append("test.note", "CHA99992600001A", {"text": f"{text} {i}"},
                   [Party(led.people["alice"], "authored")])


def test_consistent_growth_is_cosigned(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    led, svc = sqlite_ledger, sqlite_ledger.svc
    wk = new_key("witness.test", tmp_path / "w.key")
    assert load_key(tmp_path / "w.key").verifier_key == wk.verifier_key
    state = tmp_path / "state.json"
    log_key = svc.log_verifier_key()
    first = svc.checkpoint()
    cosigned, cp = witness(state, wk, first, log_key, None, 1_700_000_000)
    assert verify_cosignature(cosigned, parse_verifier_key(wk.verifier_key)) == 1_700_000_000
    _append(svc, led, 3, "more")
    second = svc.checkpoint()
    proof = svc.prove_consistency(cp.size)
    cosigned2, cp2 = witness(state, wk, second, log_key, proof, 1_700_000_100)
    assert cp2.size == cp.size + 3
    saved = load_state(state)
    assert saved is not None and saved.size == cp2.size and saved.checkpoint == cosigned2
    # The same checkpoint again is fine (idempotent); a proof is then not needed.
    witness(state, wk, second, log_key, None, 1_700_000_200)
    # A cosigned checkpoint is still accepted by `coi verify --checkpoint`.
    path = tmp_path / "cp.txt"
    path.write_text(cosigned2, encoding="utf-8")
    svc.engine.dispose()
    r = CliRunner().invoke(app, ["verify", "--db", led.db, "--checkpoint", str(path)])
    assert r.exit_code == 0, r.output


def test_a_fork_from_a_restored_backup_is_refused(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    led, svc = sqlite_ledger, sqlite_ledger.svc
    svc.engine.dispose()
    backup = tmp_path / "backup.db"
    _copy_db(led.db, backup)  # the backup, taken now
    _append(svc, led, 4, "after the backup")
    wk = new_key("witness.test", tmp_path / "w.key")
    state = tmp_path / "w" / "state.json"
    state.parent.mkdir()
    log_key = svc.log_verifier_key()
    _, accepted = witness(state, wk, svc.checkpoint(), log_key, None, 1_700_000_000)
    # Disaster: the backup is restored and people carry on: new, different entries.
    restored = LedgerService.open(str(backup), str(led.log_key), clock=led.clock)
    _append(restored, led, 6, "after the restore")
    fork = restored.checkpoint()
    proof = restored.prove_consistency(accepted.size)
    with pytest.raises(Refusal, match="history was rewritten"):
        witness(state, wk, fork, log_key, proof, 1_700_000_100)
    evidence = list(state.parent.glob("witness-evidence-*.json"))
    assert len(evidence) == 1
    kept = json.loads(evidence[0].read_text())
    assert kept["offered"] == fork and kept["proof"] == proof
    saved = load_state(state)
    assert saved is not None and saved.size == accepted.size  # nothing accepted
    # The same through the command line: exit 1, evidence kept.
    (tmp_path / "fork.txt").write_text(fork, encoding="utf-8")
    (tmp_path / "proof.json").write_text(json.dumps(proof), encoding="utf-8")
    r = CliRunner().invoke(app, [
        "witness", "cosign", str(tmp_path / "fork.txt"), "--key", str(tmp_path / "w.key"),
        "--state", str(state), "--log-key", log_key, "--proof", str(tmp_path / "proof.json"),
        "-o", str(tmp_path / "out.txt")])
    assert r.exit_code == 1 and "REFUSED" in r.output
    assert not (tmp_path / "out.txt").exists()


def test_rollback_and_same_size_fork_are_refused(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    led, svc = sqlite_ledger, sqlite_ledger.svc
    svc.engine.dispose()
    _copy_db(led.db, tmp_path / "b.db")
    old = svc.checkpoint()
    _append(svc, led, 2, "x")
    new = svc.checkpoint()
    wk = new_key("witness.test", tmp_path / "w.key")
    state = tmp_path / "state.json"
    log_key = svc.log_verifier_key()
    witness(state, wk, new, log_key, None, 1)
    with pytest.raises(Refusal, match="shrank"):
        decide(load_state(state), old, log_key, None)
    other = LedgerService.open(str(tmp_path / "b.db"), str(led.log_key), clock=led.clock)
    _append(other, led, 2, "y")
    with pytest.raises(Refusal, match="forked"):
        decide(load_state(state), other.checkpoint(), log_key, None)
    # Growth without a proof, or a checkpoint not signed by the log key, is not cosigned.
    _append(svc, led, 1, "z")
    with pytest.raises(VerificationError, match="consistency proof"):
        decide(load_state(state), svc.checkpoint(), log_key, None)
    with pytest.raises(VerificationError):
        decide(load_state(state), svc.checkpoint().replace("\u2014 ", "\u2014 x"), log_key, None)


def test_witness_init_cli(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["witness", "init", "--name", "w.example", "-o",
                                 str(tmp_path / "k")])
    assert r.exit_code == 0 and r.output.startswith("w.example+")
    r = CliRunner().invoke(app, ["witness", "init", "--name", "w.example", "-o",
                                 str(tmp_path / "k")])
    assert r.exit_code == 2
