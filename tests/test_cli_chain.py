"""The chain-of-identity commands: `coi enrol`, `coi record`, `coi show`, `coi status`, `coi steps`.

Exit codes (style habit 10): 0 success; 1 refused or verification failed, the reason on stderr;
2 usage (bad options, unreadable or malformed files). Each test runs the real command on a
private copy of a real site.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain import isbt
from coi.service.demo import demo_password
from coi.service.steps import shipped_process
from tests.chain_site import MIN, T0, ChainSite, D, H, copy_site, new_walk, walk

runner = CliRunner()


def wall_ms() -> int:
    """The commands read the system clock: the site's own events happen just before it."""
    return time.time_ns() // 1_000_000


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> ChainSite:
    s = copy_site(tmp_path_factory.getbasetemp() / "chain-template", tmp_path / "site")
    s.at(max(T0 + H, wall_ms() - 3 * D))
    return s


@pytest.fixture
def pw(tmp_path: Path) -> Any:
    """Password files per user, as `--password-file` takes them."""
    def make(user: str) -> str:
        p = tmp_path / f"{user}.pw"
        p.write_text(demo_password(user) + "\n")
        return str(p)
    return make


def coi(site: ChainSite, *args: str) -> Any:
    """Run `coi ARGS --db SITE` (the service's connections closed first, as another process)."""
    site.svc.ledger.engine.dispose()
    return runner.invoke(app, [*args, "--db", site.db])


def patient_file(tmp_path: Path, body: str | bytes, name: str = "patient.json") -> str:
    p = tmp_path / name
    p.write_bytes(body if isinstance(body, bytes) else body.encode())
    return str(p)


def enrol_args(path: str, pw: Any, user: str = "alice") -> list[str]:
    return ["enrol", "--patient-file", path, "--treatment-site", "A9999-HEMATOLOGY",
            "--slot", "SLOT-1", "--as", user, "--password-file", pw(user)]


# ------------------------------------------------------------------------------------- enrol


def test_enrol_prints_the_new_coi_identifier(site: ChainSite, pw: Any, tmp_path: Path) -> None:
    path = patient_file(tmp_path, json.dumps({"patient_id": "MRN-1234", "name": "Test Person"}))
    res = coi(site, *enrol_args(path, pw))
    assert res.exit_code == 0, res.output
    printed = res.stdout.strip()
    assert printed.startswith("CHA9999")  # ISBT 128 data structure 040 text, FIN A9999
    cid = isbt.coi_id_from_text(printed)
    assert f"printed for people as {cid.printed()} — '{cid.check}' is the ISBT 128 check " \
        "character (K): it catches a mistyped identifier" in res.stderr
    assert site.svc.store.state_of(printed)[0] == "enrolled"  # type: ignore[index]
    res2 = coi(site, *enrol_args(path, pw))
    assert res2.exit_code == 0
    assert res2.stdout.strip() != printed  # a sequence is never reused


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "is not usable JSON"),
    (b"\xff\xfe\x00{", "is not UTF-8 text"),
    (b'["MRN-1"]', "must be a JSON object"),
    (b'"MRN-1"', "must be a JSON object"),
    (b"null", "must be a JSON object"),
    (b'{"patient_id": "MRN-1", "patient_id": "MRN-2"}', "the key 'patient_id' appears twice"),
    (b"[" * 2000 + b"]" * 2000, "nested deeper than 16 levels"),
    (json.dumps({"patient_id": "MRN-1", "notes": "x" * 70_000}).encode(),
     "is larger than 65,536 bytes"),
])
def test_a_bad_patient_file_is_a_usage_error(site: ChainSite, pw: Any, tmp_path: Path,
                                              body: bytes, message: str) -> None:
    size = site.entry_count()
    res = coi(site, *enrol_args(patient_file(tmp_path, body), pw))
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert res.stdout == ""
    assert site.entry_count() == size


def test_a_missing_patient_file_is_a_usage_error(site: ChainSite, pw: Any,
                                                  tmp_path: Path) -> None:
    res = coi(site, *enrol_args(str(tmp_path / "nope.json"), pw))
    assert res.exit_code == 2
    assert "cannot read patient file" in res.stderr


def test_a_patient_file_without_patient_id_is_refused(site: ChainSite, pw: Any,
                                                       tmp_path: Path) -> None:
    size = site.entry_count()
    res = coi(site, *enrol_args(patient_file(tmp_path, '{"name": "No Id"}'), pw))
    assert res.exit_code == 1
    assert "needs \"patient_id\"" in res.stderr
    assert site.entry_count() == size


@pytest.mark.req("AUTHORITY")
def test_enrol_by_a_wrong_role_is_refused_and_recorded(site: ChainSite, pw: Any,
                                                        tmp_path: Path) -> None:
    res = coi(site, *enrol_args(patient_file(tmp_path, '{"patient_id": "MRN-9"}'), pw, "colin"))
    assert res.exit_code == 1
    assert "refused: Only apheresis or treatment may record 'Enrolment'" in res.stderr
    assert "(recorded as entry" in res.stderr
    assert res.stdout == ""


# ------------------------------------------------------------------------------------ record


def test_record_a_step_exit_0(site: ChainSite, pw: Any) -> None:
    w = new_walk(site)
    res = coi(site, "record", "apheresis_collection", "--coi", w.coi.lower(), "--as", "alice",
              "--password-file", pw("alice"), "--field", "din=A999926000001 8",
              "--field", f"collection_started_ms={wall_ms() - 4 * H}",
              "--field", "volume_ml=250", "--field", "total_nucleated_cells=12000000000")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"recorded apheresis_collection for {w.coi} at entry ")
    assert site.svc.store.state_of(w.coi)[0] == "collected"  # type: ignore[index]


def test_record_with_a_witness(site: ChainSite, pw: Any) -> None:
    w = new_walk(site)
    walk(site, w, until="labelling")
    res = coi(site, "record", "labelling", "--coi", w.coi, "--as", "alice", "--password-file",
              pw("alice"), "--witness", "amir", "--witness-password-file", pw("amir"),
              "--field", "labels_applied=2")
    assert res.exit_code == 0, res.output
    view = site.svc.show(w.coi)
    assert [s["user"] for s in view["timeline"][-1]["signers"]] == ["alice", "amir"]


def test_record_prints_deviations_opened_automatically(site: ChainSite, pw: Any) -> None:
    w = new_walk(site, excursion=True, start_ms=wall_ms() - D - 4 * H)
    walk(site, w, until="receipt_at_manufacturing")  # collected 4 h before the command runs
    res = coi(site, "record", "receipt_at_manufacturing", "--coi", w.coi, "--as", "maya",
              "--password-file", pw("maya"), "--field", "outcome=accept",
              "--field", "logger=excursion")
    assert res.exit_code == 0, res.output
    assert "deviation opened automatically at entry" in res.stdout


@pytest.mark.parametrize(("field", "message"), [
    ("volume_ml", "--field 'volume_ml' must look like NAME=VALUE"),
    ("=250", "must look like NAME=VALUE"),
])
def test_record_bad_field_syntax_exit_2(site: ChainSite, pw: Any, field: str,
                                        message: str) -> None:
    w = new_walk(site)
    size = site.entry_count()
    res = coi(site, "record", "apheresis_collection", "--coi", w.coi, "--as", "alice",
              "--password-file", pw("alice"), "--field", field)
    assert res.exit_code == 2
    assert message in res.stderr
    assert site.entry_count() == size  # a usage error is not an attempt


@pytest.mark.parametrize(("step", "field", "message"), [
    ("apheresis_collection", "volume_ml=two hundred", "is not a whole number"),
    ("packaging", "temperature_range=hot", "is not one of 2_8c, 15_25c"),
    ("packaging", "colour=red", "step packaging has no field 'colour'"),
])
def test_record_a_typed_mistake_is_a_usage_error_not_a_refusal(
        site: ChainSite, pw: Any, step: str, field: str, message: str) -> None:
    """A value not of its field's form is a typo: exit 2, not recorded (a refusal is exit 1)."""
    w = new_walk(site)
    size = site.entry_count()
    res = coi(site, "record", step, "--coi", w.coi, "--as", "alice", "--password-file",
              pw("alice"), "--field", field)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "nothing was recorded" in res.stderr
    assert len(res.stderr.splitlines()) == 1
    assert site.entry_count() == size


def test_record_a_field_given_twice_exit_2(site: ChainSite, pw: Any) -> None:
    w = new_walk(site)
    res = coi(site, "record", "packaging", "--coi", w.coi, "--as", "alice", "--password-file",
              pw("alice"), "--field", "container_id=A", "--field", "container_id=B")
    assert res.exit_code == 2
    assert "--field container_id is given twice" in res.stderr


def test_record_refused_exit_1_with_reason_and_entry(site: ChainSite, pw: Any) -> None:
    w = new_walk(site)
    res = coi(site, "record", "activation", "--coi", w.coi, "--as", "maya", "--password-file",
              pw("maya"), "--field", "reagent_lot=TA-1")
    assert res.exit_code == 1
    assert res.stdout == ""
    assert res.stderr.startswith("coi: refused: Activation needs")
    n = int(res.stderr.rsplit("recorded as entry ", 1)[1].rstrip(")\n"))
    entry = site.entry(n)
    assert (entry["type"], entry["data"]["attempted"], entry["data"]["by"]) == (
        "system.refusal", "activation", "maya")
    assert site.svc.store.state_of(w.coi)[0] == "enrolled"  # type: ignore[index]


def test_record_a_wrong_password_exit_1_and_recorded(site: ChainSite, tmp_path: Path) -> None:
    w = new_walk(site)
    bad = tmp_path / "bad.pw"
    bad.write_text("not-the-password\n")
    size = site.entry_count()
    res = coi(site, "record", "packaging", "--coi", w.coi, "--as", "alice", "--password-file",
              str(bad), "--field", "container_id=A", "--field", "temperature_range=2_8c")
    assert res.exit_code == 1
    assert res.stderr.startswith("coi: refused: unknown user or wrong password (recorded")
    assert site.entry(size)["type"] == "system.login_failed"


def test_record_unknown_step_is_a_usage_error_listing_the_steps(site: ChainSite, pw: Any
                                                                ) -> None:
    """A typo is not a refused move: exit 2, nothing recorded (not even a login)."""
    w = new_walk(site)
    size = site.entry_count()
    res = coi(site, "record", "teleport", "--coi", w.coi, "--as", "alice", "--password-file",
              pw("alice"))
    assert res.exit_code == 2
    assert "unknown step 'teleport'; steps are: enrolment, apheresis_collection" in res.stderr
    assert "nothing was recorded" in res.stderr
    assert site.entry_count() == size


def test_record_without_a_ledger_exit_2(tmp_path: Path, pw: Any) -> None:
    res = runner.invoke(app, ["record", "packaging", "--coi", "X", "--as", "alice",
                              "--password-file", pw("alice"), "--db", str(tmp_path / "no.db")])
    assert res.exit_code == 2
    assert "run `coi init` first" in res.stderr


# ------------------------------------------------------------------------------ show, status


def test_show_text_and_json(site: ChainSite) -> None:
    w = new_walk(site, excursion=True)
    walk(site, w, until="activation")
    res = coi(site, "show", w.coi)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"{w.coi}  state: received  (times in Europe/Paris)"
    assert lines[1].split() == ["Entry", "Local", "time", "Step", "Sig", "Signed", "by",
                                "(user,", "meaning)"]
    row = next(ln for ln in lines if "Receipt at manufacturing" in ln)
    assert " ✓ " in row and "Maya Manufacturing (maya, authored)" in row
    assert re.search(r"#\d+ +20\d\d-\d\d-\d\d \d\d:\d\d:\d\d CES?T \(UTC\+0[12]00\)", row)
    assert "Collected volume: 250 mL" in res.stdout  # titles and units, not raw JSON
    assert re.search(r"Collection started: 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d CES?T", res.stdout)
    assert "deviation " in res.stdout and "temperature_excursion" in res.stdout
    assert "[OPEN; disposition -]" in res.stdout
    assert "items: C00001=at_manufacturing" in res.stdout
    assert "patient_commitment" not in res.stdout
    res = coi(site, "show", w.coi, "--json")
    assert res.exit_code == 0
    view = json.loads(res.stdout)
    assert view["coi"] == w.coi and view["state"]["state"] == "received"
    assert [t["type"] for t in view["timeline"]][:3] == [
        "step.enrolment", "step.apheresis_collection", "step.labelling"]
    assert all(t["signature_ok"] for t in view["timeline"])


def test_show_an_unknown_product_exit_1(site: ChainSite) -> None:
    res = coi(site, "show", "CHA999926999999")
    assert res.exit_code == 1
    assert "no product CHA999926999999 in this ledger" in res.stderr


def test_status_text_and_json(site: ChainSite) -> None:
    a = new_walk(site, seq=1, excursion=True)
    walk(site, a, until="activation")  # received, one open deviation
    b = new_walk(site, seq=2, start_ms=a.t0 + 2 * D)
    walk(site, b, until="receipt_at_manufacturing")  # in transit, fresh window running
    c = new_walk(site, seq=3)
    deadline = site.svc.chain().product(b.coi).windows["fresh_product"].deadline_ms  # type: ignore[union-attr]
    site.at(deadline - 90 * MIN)
    res = coi(site, "status", "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["by_state"] == {"enrolled": 1, "in_transit_to_manufacturing": 1, "received": 1}
    assert s["open_deviations"] == [{"coi": a.coi, "count": 1, "state": "received"}]
    # the command reads the wall clock (2026+ here is the future): b's window is far ahead or
    # behind it; the service with the site's clock shows it running out
    [win] = site.svc.status()["windows"]
    assert (win["coi"], win["window"], win["remaining_ms"]) == (b.coi, "fresh_product", 90 * MIN)
    res = coi(site, "status")
    assert res.exit_code == 0
    out = res.stdout
    assert "products by state:" in out and "open deviations:" in out
    assert f"{a.coi}  1 open  (received)" in out
    assert "enrolled" in out and c.coi not in out.split("open deviations:")[1]


def test_steps_lists_the_process(site: ChainSite) -> None:
    res = coi(site, "steps")
    assert res.exit_code == 0
    assert res.stdout.startswith("autologous-car-t 1.2.0 (sha256 ")
    assert any(ln.split()[0] == "labelling" and "+witness" in ln
               for ln in res.stdout.splitlines()[1:])
    out = res.stdout
    assert "    volume_ml                  whole number, 1 to 2000 mL  [required]" in out
    assert "    temperature_range          one of: 2_8c, 15_25c  [required]" in out
    assert "date-time with its zone, e.g. 2026-11-24T08:00Z" in out


def test_steps_without_a_ledger_lists_the_shipped_process(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.delenv("COI_DATABASE_URL", raising=False)
    shipped = shipped_process()
    res = runner.invoke(app, ["steps"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"{shipped.name} {shipped.version} (sha256 {shipped.sha256})"
    assert [ln.split()[0] for ln in lines[1:] if not ln.startswith(" ")] == list(shipped.steps)


@pytest.mark.parametrize("command", ["enrol", "record", "show", "status", "steps"])
def test_every_chain_command_has_help(command: str) -> None:
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0
    assert "Usage:" in res.stdout


@pytest.mark.req("TRACKING")
def test_walk_from_the_command_line_then_verify(site: ChainSite, pw: Any, tmp_path: Path
                                                ) -> None:
    """A newcomer's first steps: enrol, collect, label with a witness, verify."""
    path = patient_file(tmp_path, '{"patient_id": "MRN-CLI-1"}')
    cid = coi(site, *enrol_args(path, pw)).stdout.strip()
    for args in (
        ["apheresis_collection", "--field", "din=A999926000009T", "--field",
         f"collection_started_ms={wall_ms() - 3 * H}", "--field", "volume_ml=200", "--field",
         "total_nucleated_cells=900000000"],
        ["labelling", "--witness", "amir", "--witness-password-file", pw("amir"), "--field",
         "labels_applied=1"],
    ):
        res = coi(site, "record", args[0], "--coi", cid, "--as", "alice", "--password-file",
                  pw("alice"), *args[1:])
        assert res.exit_code == 0, res.output
    res = coi(site, "verify")
    assert res.exit_code == 0, res.output
    assert "entries verified" in res.stdout
