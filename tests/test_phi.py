"""Patient identifiers encrypted at rest (issue 18 item 6), on real SQLite files and real keys.

Each test runs on a private copy of a real site; the raw files (database, WAL, backup, export
bundle, FHIR, HTML report) are searched byte by byte for the patient's name, record number and
date of birth.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.db.database import HEAD_REVISION
from coi.service.admin import upgrade_schema
from coi.service.chain import CoiService
from coi.service.demo import demo_password
from coi.service.errors import ConfigError, Refused, VerificationError
from coi.service.ledger import LedgerService, Party
from coi.service.phi import PHI_KEY_FORMAT, Identity, new_phi_key
from coi.service.phi_store import open_patient
from tests.chain_site import T0, ChainSite, H, copy_site, new_site
from tests.conftest import BEFORE_0010

runner = CliRunner()

PATIENT = {"patient_id": "MRN-40718-ZQ", "name": "Hortense Quillfeather",
           "date_of_birth": "1957-08-19", "record_number": "RN-99017733"}
NEEDLES = (PATIENT["patient_id"], PATIENT["name"], PATIENT["date_of_birth"],
           PATIENT["record_number"], "Quillfeather", "19570819")


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> ChainSite:
    s = copy_site(tmp_path_factory.getbasetemp() / "chain-template", tmp_path / "site")
    s.at(T0 + H)
    return s


@pytest.fixture
def pw(tmp_path: Path) -> Any:
    def make(user: str) -> str:
        p = tmp_path / f"{user}.pw"
        p.write_text(demo_password(user) + "\n")
        return str(p)
    return make


def coi(site: ChainSite, *args: str) -> Any:
    """Run `coi ARGS --db SITE` (the service's connections closed first, as another process)."""
    site.svc.ledger.engine.dispose()
    return runner.invoke(app, [*args, "--db", site.db])


def enrol(site: ChainSite, patient: dict[str, str] = PATIENT) -> str:
    coi_id, _rec = site.svc.enrol(actor=site.people["alice"], patient=patient,
                                  treatment_site="A9999-HEMATOLOGY", manufacturing_slot="SLOT-3")
    return coi_id


def found_in(path: Path) -> list[str]:
    """Which of the patient's identifiers the raw bytes of ``path`` hold, in any usual encoding."""
    raw = path.read_bytes()
    hits = []
    for value in NEEDLES:
        for form in (value, value.upper(), value.lower()):
            if any(enc in raw for enc in (form.encode(), form.encode("utf-16-le"),
                                          form.encode("utf-16-be"),
                                          json.dumps(form).encode())):
                hits.append(f"{value} in {path.name}")
                break
    return hits


def site_files(site: ChainSite) -> list[Path]:
    return [p for p in (Path(site.db), Path(site.db + "-wal")) if p.exists()]


def phi_key_path(site: ChainSite) -> Path:
    return site.svc.ledger.site.phi_key_path


# ------------------------------------------------------------------------------- at rest


@pytest.mark.req("PHI-AT-REST")
def test_no_patient_identifier_in_clear_in_database_wal_backup_or_export(
        site: ChainSite, tmp_path: Path) -> None:
    control = tmp_path / "control.json"
    control.write_text(json.dumps(PATIENT))
    assert len(found_in(control)) == len(NEEDLES) - 1  # all but "19570819": it finds them
    coi_id = enrol(site)
    assert site.svc.patient_identity(coi_id) == Identity("Hortense Quillfeather", "1957-08-19")
    # the live files, with the WAL not yet folded into the database
    assert Path(site.db + "-wal").stat().st_size > 0
    assert [h for p in site_files(site) for h in found_in(p)] == []
    out = tmp_path / "out"
    out.mkdir()
    r = coi(site, "backup", "-o", str(out / "site.backup"))
    assert r.exit_code == 0, r.output
    r = coi(site, "export", "-o", str(out / "all.coi"), "--all", "--html", str(out / "all.html"))
    assert r.exit_code == 0, r.output
    r = coi(site, "export", "-o", str(out / "fhir.json"), "--all", "--fhir")
    assert r.exit_code == 0, r.output
    files = sorted(out.iterdir())
    assert {p.name for p in files} >= {"site.backup", "all.coi", "all.html", "fhir.json"}
    assert [h for p in files for h in found_in(p)] == []
    # after the WAL is folded into the file and the connections closed: still nothing
    site.svc.ledger.engine.dispose()
    assert [h for p in site_files(site) for h in found_in(p)] == []
    # the identifiers are there, sealed: the PHI store opens them for the bedside
    assert site.svc.patient_identity(coi_id).name == "Hortense Quillfeather"  # type: ignore[union-attr]


def test_coi_init_creates_a_private_phi_key_beside_the_log_key(site: ChainSite) -> None:
    path = phi_key_path(site)
    assert path == Path(site.db + ".phikey")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    obj = json.loads(path.read_text())
    assert obj["format"] == PHI_KEY_FORMAT and obj["origin"] == site.svc.ledger.origin()


@pytest.mark.req("PHI-AT-REST")
def test_a_phi_key_readable_by_group_or_others_is_refused_and_consumes_nothing(
        site: ChainSite, pw: Any, tmp_path: Path) -> None:
    path = phi_key_path(site)
    first = enrol(site)
    before = site.entry_count()
    for mode in (0o640, 0o604):
        os.chmod(path, mode)
        with pytest.raises(ConfigError, match=f"mode {mode:04o}.*chmod 600"):
            enrol(site, {"patient_id": "MRN-OTHER-1"})
        with pytest.raises(ConfigError, match="chmod 600"):
            site.svc.patient_identity(first)
    assert site.entry_count() == before
    patient = tmp_path / "p.json"
    patient.write_text(json.dumps({"patient_id": "MRN-CLI-7"}))
    r = coi(site, "enrol", "--patient-file", str(patient), "--treatment-site", "A9999-HEMATOLOGY",
            "--slot", "S", "--as", "alice", "--password-file", pw("alice"))
    assert r.exit_code == 2 and "PHI key file refused" in r.stderr and "chmod 600" in r.stderr
    os.chmod(path, 0o600)
    second = enrol(site, {"patient_id": "MRN-OTHER-1"})
    assert int(second[-6:]) == int(first[-6:]) + 1  # no CoI number was taken while refused


def test_a_missing_or_foreign_phi_key_is_named(site: ChainSite) -> None:
    coi_id = enrol(site)
    path = phi_key_path(site)
    saved = path.read_bytes()
    path.unlink()
    with pytest.raises(ConfigError, match="PHI key file .* not found"):
        site.svc.patient_identity(coi_id)
    with pytest.raises(ConfigError, match="not found"):
        enrol(site, {"patient_id": "MRN-NO-KEY"})
    other = new_phi_key(site.svc.ledger.origin())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps({"format": PHI_KEY_FORMAT, "origin": other.origin,
                             "key": base64.b64encode(other.key).decode()}).encode())
    os.close(fd)
    with pytest.raises(ConfigError, match=f"not under this site's PHI key file \\({other.key_id}"):
        site.svc.patient_identity(coi_id)
    path.write_text(json.dumps({"format": PHI_KEY_FORMAT, "origin": "elsewhere.example/x",
                                "key": json.loads(saved)["key"]}))
    with pytest.raises(ConfigError, match="belongs to ledger 'elsewhere.example/x'"):
        site.svc.patient_identity(coi_id)
    path.write_text("not a key")
    with pytest.raises(ConfigError, match="is not a coi-phi-key/v1 file"):
        site.svc.patient_identity(coi_id)
    path.write_bytes(saved)
    assert site.svc.patient_identity(coi_id) == Identity(PATIENT["name"], PATIENT["date_of_birth"])


def test_a_sealed_record_moved_to_another_patients_row_does_not_open(site: ChainSite) -> None:
    a = enrol(site)
    b = enrol(site, {"patient_id": "MRN-B-2", "name": "Bea Other", "date_of_birth": "1980-01-01"})
    [(wrapped, sealed)] = site.sql("SELECT wrapped_key, sealed FROM patient WHERE coi = :c", c=a)
    site.sql("UPDATE patient SET wrapped_key = :w, sealed = :s WHERE coi = :c",
             w=wrapped, s=sealed, c=b)
    with pytest.raises(VerificationError, match=f"record of {b} does not open"):
        site.svc.patient_identity(b)
    flipped = bytes([sealed[0]]) + bytes([sealed[1] ^ 1]) + bytes(sealed[2:])
    site.sql("UPDATE patient SET sealed = :s WHERE coi = :c", s=flipped, c=a)
    with pytest.raises(VerificationError, match="altered"):
        site.svc.patient_identity(a)


def test_identity_needs_name_and_date_of_birth_and_dates_are_checked(site: ChainSite) -> None:
    bare = enrol(site, {"patient_id": "MRN-ONLY-ID"})
    with pytest.raises(Refused, match="enrolled without \"name\" and \"date_of_birth\""):
        site.svc.patient_identity(bare)
    with pytest.raises(Refused, match="no patient is enrolled under CHA999926999999"):
        site.svc.patient_identity("CHA999926999999")
    for bad in ("1957-13-01", "19570819", "1957-08-19 ", "２０００-01-01", "1957-02-30"):
        with pytest.raises(Refused, match="is not a date: write it as YYYY-MM-DD"):
            enrol(site, {"patient_id": "MRN-X", "date_of_birth": bad})
    with pytest.raises(Refused, match="in the future"):
        enrol(site, {"patient_id": "MRN-X", "date_of_birth": "2999-01-01"})


# -------------------------------------------------------------------------------- erasure


@pytest.mark.req("PHI-AT-REST")
def test_coi_patient_erase_destroys_the_key_and_the_ledger_still_verifies(
        site: ChainSite, pw: Any, tmp_path: Path) -> None:
    coi_id = enrol(site)
    [(wrapped, sealed)] = site.sql("SELECT wrapped_key, sealed FROM patient WHERE coi = :c",
                                   c=coi_id)
    assert any(bytes(wrapped) in p.read_bytes() for p in site_files(site))
    r = coi(site, "patient", "show", coi_id, "--as", "nina", "--password-file", pw("nina"))
    assert r.exit_code == 0, r.output
    assert r.stdout == "name: Hortense Quillfeather\ndate of birth: 1957-08-19\n"
    for who in ("colin", "grace"):  # a courier, QA: no need to see who the patient is
        r = coi(site, "patient", "show", coi_id, "--as", who, "--password-file", pw(who))
        assert r.exit_code == 1 and "only staff who compare a bag with the patient" in r.stderr
        assert r.stdout == "" and site.last_entry()["type"] == "system.refusal"
    # not an administrator: refused, and the refusal is recorded
    before = site.entry_count()
    r = coi(site, "patient", "erase", coi_id, "--reason", "Request REQ-2026-17", "--as", "grace",
            "--witness", "alice", "--password-file", pw("grace"),
            "--witness-password-file", pw("alice"))
    assert r.exit_code == 1 and "only an administrator may erase" in r.stderr
    assert site.entry_count() == before + 1
    assert site.last_entry()["type"] == "system.refusal"
    # a reason that names the patient would put PHI into the ledger: refused
    r = coi(site, "patient", "erase", coi_id, "--reason", "Hortense Quillfeather asked",
            "--as", "admin", "--witness", "alice", "--password-file", pw("admin"),
            "--witness-password-file", pw("alice"))
    assert r.exit_code == 1 and "must not contain the patient's identifiers" in r.stderr
    assert "Quillfeather" not in json.dumps(site.last_entry())
    r = coi(site, "patient", "erase", coi_id, "--reason", "  ", "--as", "admin",
            "--witness", "alice", "--password-file", pw("admin"),
            "--witness-password-file", pw("alice"))
    assert r.exit_code == 1 and "give the reason" in r.stderr
    assert site.svc.patient_identity(coi_id) != "erased"
    # the administrator, witnessed
    r = coi(site, "patient", "erase", coi_id.lower(), "--reason", "Request REQ-2026-17",
            "--as", "admin", "--witness", "alice", "--password-file", pw("admin"),
            "--witness-password-file", pw("alice"))
    assert r.exit_code == 0, r.output
    entry = site.last_entry()
    assert entry["type"] == "patient.erased" and entry["subject"] == coi_id
    assert entry["data"] == {"reason": "Request REQ-2026-17"}
    assert [(s["user"], s["meaning"]) for s in entry["statement"]["signers"]] == [
        ("admin", "authored"), ("alice", "witnessed")]
    assert site.svc.patient_identity(coi_id) == "erased"
    assert site.svc.patient_secret(coi_id) is None
    r = coi(site, "patient", "show", coi_id, "--as", "nina", "--password-file", pw("nina"))
    assert r.exit_code == 0 and r.stdout == "name: erased\ndate of birth: erased\n"
    r = coi(site, "patient", "erase", coi_id, "--reason", "again", "--as", "admin",
            "--witness", "alice", "--password-file", pw("admin"),
            "--witness-password-file", pw("alice"))
    assert r.exit_code == 1 and "already erased" in r.stderr
    # neither the wrapped key nor the sealed record is left in the database or its WAL
    for p in site_files(site):
        raw = p.read_bytes()
        assert bytes(wrapped) not in raw and bytes(sealed) not in raw, p.name
    # the ledger still verifies, at the site and as an export
    assert coi(site, "verify").exit_code == 0
    bundle = tmp_path / "after.coi"
    assert coi(site, "export", "-o", str(bundle), "--all").exit_code == 0
    key = coi(site, "log-key").stdout.strip()
    r = runner.invoke(app, ["verify-export", str(bundle), "--trust", key])
    assert r.exit_code == 0, r.output
    assert found_in(bundle) == []


def test_erasure_needs_a_witness_who_is_someone_else(site: ChainSite) -> None:
    coi_id = enrol(site)
    with pytest.raises(Refused, match="different person"):
        site.svc.erase_patient(site.people["admin"], coi_id, "Request 9",
                               witness=site.people["admin"])
    assert site.svc.patient_identity(coi_id) != "erased"


# ------------------------------------------------------------------------------- migration


def make_plain(site: ChainSite) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Turn the site's database back into the schema before sealing (revision 0006), with every
    patient's secret and identifiers in clear, as a ledger from before sealing holds them."""
    plain: dict[str, tuple[bytes, dict[str, str]]] = {}
    for (coi_id,) in site.sql("SELECT coi FROM patient"):
        opened = open_patient(site.svc.ledger, site.svc.store, coi_id)
        assert opened is not None and not isinstance(opened, str)
        plain[coi_id] = (opened.secret, opened.identifiers)
    blob = "BYTEA" if site.svc.ledger.engine.dialect.name == "postgresql" else "BLOB"
    site.sql(f"ALTER TABLE patient ADD COLUMN secret {blob}")
    site.sql("ALTER TABLE patient ADD COLUMN identifiers TEXT")
    for coi_id, (secret, ids) in plain.items():
        site.sql("UPDATE patient SET secret = :s, identifiers = :i WHERE coi = :c",
                 s=secret, i=json.dumps(ids, sort_keys=True), c=coi_id)
    for col in ("phi_key_id", "wrapped_key", "sealed"):
        site.sql(f"ALTER TABLE patient DROP COLUMN {col}")
    for q in BEFORE_0010:
        site.sql(q)
    site.sql("DROP TABLE state_count")  # and before 0009
    site.sql("DROP INDEX ix_product_state_expected_index")  # and before 0008
    site.sql("ALTER TABLE product_state DROP COLUMN expected_index")
    site.sql("UPDATE alembic_version SET version_num = '0006'")
    site.svc.ledger.engine.dispose()
    if site.svc.ledger.engine.dialect.name == "sqlite":
        con = sqlite3.connect(site.db, isolation_level=None)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
    phi_key_path(site).unlink()
    return plain


@pytest.mark.req("PHI-AT-REST")
def test_coi_migrate_seals_plain_rows_and_leaves_no_identifier_in_the_files(
        site: ChainSite) -> None:
    coi_id = enrol(site)
    plain = make_plain(site)
    assert coi_id in plain and found_in(Path(site.db))  # the old schema holds them in clear
    # the bare migration cannot seal: it refuses and changes nothing
    with pytest.raises(RuntimeError, match="hold identifiers in clear: run `coi migrate`"):
        site.svc.ledger.db.upgrade()
    site.svc.ledger.engine.dispose()
    assert site.sql("SELECT version_num FROM alembic_version") == [("0006",)]
    site.svc.ledger.engine.dispose()
    r = coi(site, "migrate")
    assert r.exit_code == 0, r.output
    assert f"PHI key file: {site.db}.phikey created" in r.stdout
    assert f"sealed the identifiers of {len(plain)} patients under the PHI key" in r.stdout
    assert f"schema at revision {HEAD_REVISION}\n" in r.stdout
    assert r.stdout.endswith("products, all as the 12 verified entries make them: nothing "
                             "changed\n")  # and the product_state table was checked
    assert stat.S_IMODE(phi_key_path(site).stat().st_mode) == 0o600
    assert [h for p in site_files(site) for h in found_in(p)] == []
    columns = {c for (_i, c, *_rest) in site.sql("PRAGMA table_info(patient)")}
    assert "secret" not in columns and "identifiers" not in columns
    for cid, (secret, ids) in plain.items():
        assert site.svc.patient_secret(cid) == secret  # the wristband still matches
        opened = open_patient(site.svc.ledger, site.svc.store, cid)
        assert opened is not None and not isinstance(opened, str) and opened.identifiers == ids
    assert site.svc.patient_identity(coi_id) == Identity(PATIENT["name"], PATIENT["date_of_birth"])
    assert coi(site, "verify").exit_code == 0
    r = coi(site, "migrate")  # again: nothing left to do
    assert r.exit_code == 0
    assert r.stdout.startswith(f"schema at revision {HEAD_REVISION}\nproduct_state: ")


def test_coi_migrate_refuses_a_readable_phi_key_and_changes_nothing(site: ChainSite) -> None:
    enrol(site)
    make_plain(site)
    path = phi_key_path(site)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    key = new_phi_key(site.svc.ledger.origin())
    os.write(fd, json.dumps({"format": PHI_KEY_FORMAT, "origin": key.origin,
                             "key": base64.b64encode(key.key).decode()}).encode())
    os.close(fd)
    os.chmod(path, 0o644)
    r = coi(site, "migrate")
    assert r.exit_code == 2 and "chmod 600" in r.stderr
    assert site.sql("SELECT version_num FROM alembic_version") == [("0006",)]
    assert found_in(Path(site.db))


# ------------------------------------------------------------------------- on each backend


@pytest.mark.req("PHI-AT-REST")
def test_sealing_and_erasure_on_each_backend(backend_db: tuple[str, Path]) -> None:
    """SQLite and PostgreSQL: the patient table holds no identifier in clear, the identity opens,
    an erasure destroys the key and the ledger verifies."""
    url, log_key = backend_db
    site = new_site(url, log_key)
    site.at(T0 + H)
    assert site.svc.ledger.site.phi_key_path == log_key.with_name(
        log_key.name.removesuffix(".logkey") + ".phikey")
    coi_id = enrol(site)
    rows = site.sql("SELECT * FROM patient")
    dump = repr(rows).encode() + b"".join(v for r in rows for v in r if isinstance(v, bytes))
    assert not any(n.encode() in dump for n in NEEDLES)
    assert site.svc.patient_identity(coi_id) == Identity(PATIENT["name"], PATIENT["date_of_birth"])
    site.svc.erase_patient(site.people["admin"], coi_id, "Request 12", witness=site.people["pat"])
    assert site.svc.patient_identity(coi_id) == "erased"
    assert site.sql("SELECT wrapped_key, sealed FROM patient WHERE coi = :c", c=coi_id) == [
        (None, None)]
    assert CoiService.open(url, str(log_key)).verify().size == site.entry_count()
    site.svc.ledger.engine.dispose()


@pytest.mark.postgres
@pytest.mark.req("PHI-AT-REST")
def test_migrate_seals_plain_rows_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    site = new_site(pg_url, tmp_path / "pg.logkey")
    site.at(T0 + H)
    coi_id = enrol(site)
    plain = make_plain(site)
    up = upgrade_schema(LedgerService.open(pg_url, str(tmp_path / "pg.logkey")))
    assert (up.revision, up.sealed_patients) == (HEAD_REVISION, len(plain))
    assert up.phi_key_created == tmp_path / "pg.phikey"
    rows = site.sql("SELECT * FROM patient")
    dump = repr(rows).encode() + b"".join(bytes(v) for r in rows for v in r
                                          if isinstance(v, bytes | memoryview))
    assert not any(n.encode() in dump for n in NEEDLES)
    assert site.svc.patient_identity(coi_id) == Identity(PATIENT["name"], PATIENT["date_of_birth"])
    assert site.svc.patient_secret(coi_id) == plain[coi_id][0]
    CoiService.open(pg_url, str(tmp_path / "pg.logkey")).verify()
    site.svc.ledger.engine.dispose()


def test_an_erasure_entry_made_any_other_way_is_refused_or_fails_verification(
        site: ChainSite, pw: Any) -> None:
    coi_id = enrol(site)
    r = coi(site, "append", "patient.erased", "--subject", coi_id, "--data",
            '{"reason": "x"}', "--as", "admin", "--password-file", pw("admin"))
    assert r.exit_code == 1 and "only by `coi patient erase`" in r.stderr
    assert site.last_entry()["type"] == "system.refusal"
    assert site.svc.patient_identity(coi_id) != "erased"
    # written below the service's checks (as a forger with a user's key could): verify fails
    site.svc.ledger.append("patient.erased", coi_id, {"reason": "x"},
                           [Party(site.people["alice"], "authored"),
                            Party(site.people["nina"], "witnessed")])
    with pytest.raises(VerificationError, match="authored by an administrator"):
        site.svc.verify()
