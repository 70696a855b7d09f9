"""The process as data (coi.domain.process, .loader): the shipped definition, bad ones refused."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import pytest

from coi.domain.errors import ProcessError
from coi.domain.loader import SHIPPED as SHIPPED_NAMES
from coi.domain.loader import load_process, parse_process, shipped_for, shipped_source
from coi.domain.loader_reader import parse_duration_ms

SHIPPED = (resources.files("coi.domain") / "car_t.toml").read_bytes()
ROLES = {"apheresis", "courier", "manufacturing", "qc", "qa", "treatment", "physician",
         "auditor", "admin"}
CHAIN = [
    "enrolment",
    "apheresis_collection",
    "labelling",
    "packaging",
    "courier_pickup",
    "receipt_at_manufacturing",
    "activation",
    "transduction",
    "expansion",
    "harvest",
    "formulation",
    "cryopreservation",
    "qc_result",
    "qa_release",
    "qa_reject",
    "shipment",
    "receipt_at_treatment",
    "storage",
    "lymphodepletion",
    "thaw",
    "bedside_verification",
    "infusion",
]


def test_shipped_definition_loads() -> None:
    process = load_process()
    assert (process.name, process.version) == ("autologous-car-t", "1.2.0")
    assert process.sha256 == hashlib.sha256(SHIPPED).hexdigest()
    assert process.roles == ROLES
    assert set(CHAIN) <= set(process.steps)
    assert process.states[0] == "none"


def test_entry_types_cover_every_step() -> None:
    process = load_process()
    assert process.entry_types == {s.entry_type for s in process.steps.values()}
    for name in CHAIN:
        assert f"step.{name}" in process.entry_types
    assert {
        "custody.transfer",
        "deviation.open",
        "deviation.disposition",
        "deviation.close",
        "correction",
        "label.issue",
        "label.print",
        "label.apply",
        "label.void",
        "label.reprint",
    } <= process.entry_types
    step = process.step_for_entry_type("step.harvest")
    assert step is not None and step.name == "harvest"
    assert process.step_for_entry_type("ledger.genesis") is None


def test_the_definition_says_what_the_issue_asks() -> None:
    process = load_process()
    steps = process.steps
    assert steps["qa_release"].roles == {"qa"}
    assert steps["qa_release"].independent_of_stages == {"manufacturing", "qc"}
    assert steps["bedside_verification"].witness
    assert steps["bedside_verification"].witness_roles == {"treatment"}
    assert steps["receipt_at_manufacturing"].to_state_map == {
        "accept": "received",
        "quarantine": "quarantined",
        "reject": "rejected",
    }
    assert steps["transduction"].fields["vector_lot"].type == "identifier"
    assert steps["lymphodepletion"].requires == ("qa_release",)
    assert steps["lymphodepletion"].starts == ("lymphodepletion_to_infusion",)
    assert steps["infusion"].inside == ("lymphodepletion_to_infusion",)
    assert steps["infusion"].ends == ("thaw_to_infusion",)
    cryo = steps["cryopreservation"].creates
    assert cryo is not None and (cryo.kind, cryo.count_field) == ("final", "bag_count")
    assert process.items["final"].prefix == "F"
    windows = process.windows
    assert windows["fresh_product"].max_ms == 48 * 3_600_000
    assert windows["thaw_to_infusion"].max_ms == 60 * 60_000
    assert windows["thaw_to_infusion"].per_item
    assert windows["lymphodepletion_to_infusion"].min_ms == 2 * 86_400_000
    assert windows["lymphodepletion_to_infusion"].max_ms == 14 * 86_400_000
    assert set(process.qc_required) == {
        "sterility",
        "endotoxin",
        "mycoplasma",
        "viability",
        "car_expression",
        "vector_copy_number",
    }
    # Fields that decide the state or create items can never be corrected.
    assert not steps["receipt_at_manufacturing"].fields["outcome"].correctable
    assert not steps["cryopreservation"].fields["bag_count"].correctable
    # No step may be done by an auditor or an administrator.
    assert all(not ({"auditor", "admin"} & s.roles) for s in steps.values())


def test_second_scans_and_scanned_fields_are_declared() -> None:
    steps = load_process().steps
    declared = {s.name: s.second_scan for s in steps.values() if s.second_scan}
    assert declared == {"receipt_at_manufacturing": "paperwork",
                        "receipt_at_treatment": "paperwork",
                        "bedside_verification": "wristband"}
    scanned = {(s.name, f.name) for s in steps.values() for f in s.fields.values() if f.scanned}
    assert scanned == {("receipt_at_manufacturing", "paperwork"),
                       ("receipt_at_treatment", "paperwork"),
                       ("bedside_verification", "scanned_coi"),
                       ("bedside_verification", "scanned_bag"),
                       ("bedside_verification", "wristband_commitment")}
    assert not any(f.correctable or f.required and f.name == "paperwork"
                   for _, fname in scanned for f in [steps[_].fields[fname]])


def test_earlier_definitions_still_load_by_their_hash() -> None:
    """A ledger keeps the definition its genesis names: 1.0.0 ledgers run after an upgrade."""
    assert SHIPPED_NAMES[0] == "car_t.toml"
    old = shipped_source("car_t-1.0.0.toml")
    found = shipped_for(hashlib.sha256(old).hexdigest())
    assert found is not None
    process, raw = found
    assert raw == old and process.version == "1.0.0"
    assert process.sha256 == hashlib.sha256(old).hexdigest()
    # 1.0.0 predates the declarations; the station's behaviour for it is applied unchanged
    assert process.steps["bedside_verification"].second_scan == "wristband"
    assert process.steps["receipt_at_treatment"].second_scan == "paperwork"
    assert "paperwork" not in process.steps["receipt_at_treatment"].fields
    assert process.steps["bedside_verification"].fields["scanned_bag"].scanned
    frozen = shipped_source("car_t-1.1.0.toml")
    found_1_1 = shipped_for(hashlib.sha256(frozen).hexdigest())
    assert found_1_1 is not None and found_1_1[0].version == "1.1.0" and found_1_1[1] == frozen
    current = shipped_for(hashlib.sha256(SHIPPED).hexdigest())
    assert current is not None and current[0].version == "1.2.0"
    assert shipped_for("00" * 32) is None


def test_load_from_a_path_hashes_its_exact_bytes(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    changed = SHIPPED.replace(b'max = "48h"', b'max = "72h"')
    path.write_bytes(changed)
    process = load_process(path)
    assert process.windows["fresh_product"].max_ms == 72 * 3_600_000
    assert process.sha256 == hashlib.sha256(changed).hexdigest() != load_process().sha256


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="cannot read the process definition"):
        load_process(tmp_path / "absent.toml")


def mutate(old: str, new: str) -> bytes:
    raw = SHIPPED.decode()
    assert old in raw, old
    return raw.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('version = "1.2.0"\n', "", r"process\.version: a non-empty string is required"),
        (
            'second_scan = "paperwork"',
            'second_scan = "fax"',
            r"steps\.receipt_at_manufacturing\.second_scan: one of paperwork, wristband",
        ),
        (
            'second_scan = "paperwork"',
            'second_scan = "wristband"',
            r"receipt_at_manufacturing\.second_scan: a wristband is scanned at the bedside only",
        ),
        (
            'second_scan = "wristband"\n',
            "",
            r"bedside_verification\.second_scan: bedside verification scans the wristband",
        ),
        (
            'title = "Receipt outcome"\n',
            'title = "Receipt outcome"\nscanned = true\n',
            r"fields\.outcome\.scanned: a station can fill only",
        ),
        (
            'from_states = ["enrolled"]',
            'from_states = ["enroled"]',
            r"steps\.apheresis_collection\.from_states: unknown state 'enroled'",
        ),
        (
            'roles = ["courier"]',
            'roles = ["driver"]',
            r"steps\.courier_pickup\.roles: unknown role 'driver'",
        ),
        ('max = "48h"', 'max = "two days"', r"windows\.fresh_product\.max: .* is not a duration"),
        ('min = "2d"', 'min = "20d"', r"windows\.lymphodepletion_to_infusion\.min: must be"),
        (
            'requires = ["enrolment"]\nto_state = "collected"',
            'requires = ["labelling"]\nto_state = "collected"',
            r"requires forms a cycle",
        ),
        (
            'entry_type = "step.harvest"',
            'entry_type = "step.expansion"',
            r"'step\.expansion' is also used by",
        ),
        ('type = "timestamp"', 'type = "date"', r"'date' is not one of"),
        ("[process]\n", "[process]\ncolour = 1\n", r"process: unknown key\(s\): colour"),
        ('starts = ["fresh_product"]', 'starts = ["fresh"]', r"unknown window 'fresh'"),
        (
            'map = { accept = "received", reject = "rejected" } }',
            'map = { accept = "received" } }',
            r"to_state_by\.map: must map every value",
        ),
        (
            'required = ["sterility",',
            'required = ["sterile",',
            r"qc\.required: unknown test 'sterile'",
        ),
        ('pattern = "[A-NP-Z1-9]', 'pattern = "(([A-NP-Z1-9]', r"not a regular expression"),
        (
            'deviation_kind = "temperature_excursion"',
            'deviation_kind = "heatwave"',
            r"'heatwave' is not a deviation kind",
        ),
        (
            'effect = "correction"',
            'effect = "step"',
            r"steps\.correction\.fields\.corrects: 'corrects' is reserved for corrections",
        ),
        ('"destroyed",\n]', '"destroyed",\n    "limbo",\n]', r"no step leads to limbo"),
        (
            'count_field = "bag_count"',
            'count_field = "volume_ml_per_bag"',
            r"creates\.count_field: must name a required int field",
        ),
    ],
)
def test_bad_definitions_are_refused(old: str, new: str, message: str) -> None:
    with pytest.raises(ProcessError, match=message):
        parse_process(mutate(old, new), origin="bad.toml")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('to_state = "enrolled"', "to_state = { a = 1 }", r"to_state: unknown state \{'a': 1\}"),
        ('to_state = "enrolled"', 'to_state = ["enrolled"]', r"unknown state \['enrolled'\]"),
        ('quarantine = "quarantined"', "quarantine = []", r"map\.quarantine: unknown state \[\]"),
    ],
)
def test_a_state_that_is_not_text_is_refused_not_a_crash(old: str, new: str, message: str) -> None:
    """Found by comparing the loader with its earlier self on mutated definitions: a table or a
    list where a state belongs raised TypeError (unhashable) instead of naming the key."""
    with pytest.raises(ProcessError, match=message):
        parse_process(mutate(old, new), origin="bad.toml")


def test_not_toml_is_refused() -> None:
    with pytest.raises(ProcessError, match="bad.toml: not valid TOML"):
        parse_process(b"[process\n", origin="bad.toml")
    with pytest.raises(ProcessError, match="not UTF-8"):
        parse_process(b"\xff\xfe", origin="bad.toml")


def test_durations() -> None:
    assert parse_duration_ms("48h") == 172_800_000
    assert parse_duration_ms("60min") == 3_600_000
    assert parse_duration_ms("2d") == 172_800_000
    assert parse_duration_ms("1500ms") == 1500
    for bad in ("", "2.5h", "h", "48 h", "-1h"):
        with pytest.raises(ValueError):
            parse_duration_ms(bad)


def test_domain_imports_no_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, coi.domain.loader, coi.domain.replay\n"
        "bad = {'sqlalchemy','sqlmodel','textual','typer','rich','alembic','psycopg'}\n"
        "print(sorted(bad & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
