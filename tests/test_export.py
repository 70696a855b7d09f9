"""Audit bundles: export, offline verification, tampering of every bit, removal, the HTML copy."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.export.bundle import ExportError, Scope, export_bundle
from coi.export.report import render
from coi.export.verifier import encode_line, verify_bundle, verify_bytes
from coi.ledger.errors import VerificationError
from tests.conftest import Ledger

OTHER = "CHA99992600002B"


def _export(led: Ledger, out: Path, scope: Scope, *, process: bytes | None = None) -> Path:
    export_bundle(led.svc.store, out, scope=scope, checkpoint=led.svc.checkpoint(),
                  log_key=led.svc.log_key(), created_ms=led.clock.now_ms(), process_toml=process)
    return out


@pytest.fixture
def small(sqlite_ledger: Ledger, tmp_path: Path) -> tuple[Ledger, Path]:
    """A bundle of one product with one entry, plus the key events before it (a few KB)."""
    sqlite_ledger.note(1, subject=OTHER, witness=None)
    return sqlite_ledger, _export(sqlite_ledger, tmp_path / "b.jsonl", Scope("coi", coi=OTHER))


def test_whole_log_bundle_verifies_and_rebuilds_the_tree(sqlite_ledger: Ledger,
                                                         tmp_path: Path) -> None:
    from importlib import resources

    toml = (resources.files("coi.domain") / "car_t.toml").read_bytes()
    out = _export(sqlite_ledger, tmp_path / "all.jsonl", Scope("all"), process=toml)
    r = verify_bundle(out, sqlite_ledger.svc.log_verifier_key())
    head = sqlite_ledger.svc.store.head()
    assert head is not None
    assert r.entries == r.in_scope == r.tree_size == head.size
    assert r.root == head.root


def test_partial_bundle_carries_key_events_and_proofs(small: tuple[Ledger, Path]) -> None:
    led, out = small
    r = verify_bundle(out, led.svc.log_verifier_key())
    assert r.in_scope == 1 and r.key_events == 4  # genesis and three enrolments
    kinds = [json.loads(line)["kind"] for line in out.read_bytes().splitlines()]
    assert kinds[0] == "header" and kinds[1] == "checkpoint" and kinds[-1] == "manifest"


def test_period_bundle(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    rows = list(sqlite_ledger.svc.store.rows())
    since, until = rows[10].time_ms, rows[13].time_ms
    out = _export(sqlite_ledger, tmp_path / "p.jsonl", Scope("period", since_ms=since,
                                                             until_ms=until))
    assert verify_bundle(out).in_scope == 3


def test_nothing_in_scope_leaves_no_file(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    d = tmp_path / "out"
    d.mkdir()
    with pytest.raises(ExportError):
        _export(sqlite_ledger, d / "none.jsonl", Scope("coi", coi="NOPE"))
    assert list(d.iterdir()) == []


@pytest.mark.req("COPIES")
def test_every_single_bit_flip_is_detected(small: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, out = small
    data = out.read_bytes()
    trust = led.svc.log_verifier_key()
    assert len(data) < 12_000
    missed = []
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            try:
                verify_bytes(bytes(flipped), trust)
            except VerificationError:
                continue
            missed.append((i, bit))
    assert missed == [], f"undetected flips at {missed[:5]}"


def _rewrite(data: bytes, keep: object) -> bytes:
    """Drop records for which keep(record) is false and recompute the manifest's hashes (all but
    its signature, which needs the log key: what an attacker without that key could do)."""
    import hashlib

    lines = data.splitlines(keepends=True)
    body = [ln for ln in lines[:-1] if keep(json.loads(ln))]  # type: ignore[operator]
    manifest = json.loads(lines[-1])
    counts: dict[str, int] = {}
    shas: dict[str, object] = {}
    for ln in body:
        k = json.loads(ln)["kind"]
        counts[k] = counts.get(k, 0) + 1
        shas.setdefault(k, hashlib.sha256()).update(ln)  # type: ignore[attr-defined]
    manifest["counts"] = counts
    manifest["sha256"] = {k: h.hexdigest() for k, h in shas.items()}  # type: ignore[attr-defined]
    manifest["bundle_sha256"] = hashlib.sha256(b"".join(body)).hexdigest()
    return b"".join(body) + encode_line(manifest)


def _statement(rec: dict[str, object]) -> dict[str, object]:
    return json.loads(base64.b64decode(str(rec["statement"])))  # type: ignore[no-any-return]


@pytest.mark.parametrize("what", ["entry", "key event", "genesis"])
def test_removing_an_entry_or_a_key_event_is_detected(sqlite_ledger: Ledger, tmp_path: Path,
                                                      what: str) -> None:
    out = _export(sqlite_ledger, tmp_path / "all.jsonl", Scope("all"))
    partial = _export(sqlite_ledger, tmp_path / "coi.jsonl",
                      Scope("coi", coi="CHA99992600001A"))
    src = {"entry": out, "key event": partial, "genesis": partial}[what]
    target = {"entry": lambda r: r.get("index") == 12,
              "key event": lambda r: r.get("kind") == "entry" and not r["in_scope"]
              and _statement(r)["type"] == "key.enrol" and r["index"] == 2,
              "genesis": lambda r: r.get("index") == 0}[what]
    data = src.read_bytes()
    removed = _rewrite(data, lambda r: not target(r))
    assert removed != data
    tampered = tmp_path / "t.jsonl"
    # Without recomputing the manifest: the hashes differ.
    tampered.write_bytes(b"".join(ln for ln in data.splitlines(keepends=True)
                                  if not target(json.loads(ln))))
    with pytest.raises(VerificationError, match="SHA-256|manifest"):
        verify_bundle(tampered)
    # With the manifest recomputed: its signature by the log key no longer matches.
    tampered.write_bytes(removed)
    with pytest.raises(VerificationError):
        verify_bundle(tampered)


def test_another_log_key_is_refused_with_trust(small: tuple[Ledger, Path]) -> None:
    from coi.ledger.keys import generate, public_bytes
    from coi.ledger.note import verifier_key

    _led, out = small
    other = verifier_key("coi.test/a9999", public_bytes(generate()))
    with pytest.raises(VerificationError, match="trusted key"):
        verify_bundle(out, other)


@pytest.mark.req("COPIES")
def test_cli_export_verify_report(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    sqlite_ledger.svc.engine.dispose()
    runner = CliRunner()
    base = ["--db", sqlite_ledger.db]
    out = tmp_path / "b.jsonl"
    r = runner.invoke(app, ["export", "--coi", "CHA99992600001A", "-o", str(out), "-q",
                            "--log-key", str(sqlite_ledger.log_key), *base])
    assert r.exit_code == 0, r.output
    key = sqlite_ledger.svc.log_verifier_key()
    r = runner.invoke(app, ["verify-export", str(out), "--trust", key])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["verify-export", str(out), "--trust", "nonsense"]).exit_code == 2
    assert runner.invoke(app, ["verify-export", str(tmp_path / "missing")]).exit_code == 2
    damaged = tmp_path / "d.jsonl"
    damaged.write_bytes(out.read_bytes()[:-10])
    r = runner.invoke(app, ["verify-export", str(damaged), "--trust", key])
    assert r.exit_code == 1 and "Traceback" not in r.output
    html = tmp_path / "r.html"
    assert runner.invoke(app, ["report", str(out), "-o", str(html)]).exit_code == 0
    assert runner.invoke(app, ["report", str(out), "-o", str(html)]).exit_code == 2  # exists
    html.unlink()
    assert runner.invoke(app, ["report", str(damaged), "-o", str(html)]).exit_code == 1
    assert runner.invoke(app, ["export", "--all", "--coi", "X", "-o", str(out)]).exit_code == 2


@pytest.mark.req("SIG-MANIFEST")
def test_report_lists_every_signature_with_name_time_and_meaning(sqlite_ledger: Ledger,
                                                                 tmp_path: Path) -> None:
    led = sqlite_ledger
    led.svc.append("test.note", "CHA99992600001A", {"text": "<script>alert(1)</script>"},
                   [__import__("coi.service.ledger", fromlist=["Party"]).Party(
                       led.people["alice"], "authored")])
    out = _export(led, tmp_path / "b.jsonl", Scope("coi", coi="CHA99992600001A"))
    html, ok = render(out)
    assert ok
    assert "<script>" not in html and "&lt;script&gt;" in html
    for line in out.read_bytes().splitlines():
        rec = json.loads(line)
        if rec["kind"] != "entry":
            continue
        st = _statement(rec)
        for s in st["signers"]:  # type: ignore[attr-defined]
            assert f"{s['name']} ({s['user']}) &mdash; <b>{s['meaning']}</b>" in html
    # Times are shown in the entry's zone with the offset.
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} CES?T \(UTC\+0[12]:00, "
                     r"Europe/Paris\)", html)


def test_cosigned_checkpoint_is_accepted_by_verify(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    from coi.ledger.keys import generate
    from coi.ledger.note import cosign

    cp = cosign(sqlite_ledger.svc.checkpoint(), "witness.test", generate(), 1_700_000_000)
    path = tmp_path / "cp.txt"
    path.write_text(cp, encoding="utf-8")
    sqlite_ledger.svc.engine.dispose()
    r = CliRunner().invoke(app, ["verify", "--db", sqlite_ledger.db, "--checkpoint", str(path)])
    assert r.exit_code == 0, r.output
