"""The database URL: parsed once into one typed value; a bad one is a clear configuration error.

``DatabaseUrl.parse`` is the only reader of ``--db`` / ``COI_DATABASE_URL``: the engine, the
verify workers and the log key's default path all use what it worked out. Hostile input (any
text at all) gives a ``DatabaseUrl`` or a ``ConfigError`` saying what was wrong and what to
give, never another exception, and never shows a password.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from coi.cli.main import app
from coi.db.reads import DriverReader
from coi.db.url import ConfigError, DatabaseUrl
from coi.service.site import Site
from tests.conftest import Ledger

SECRET = "s3cr3t-pw"


def test_a_path_is_a_sqlite_file_made_absolute(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for text in ("coi.db", "./coi.db", "sqlite:///coi.db", f"sqlite:///{tmp_path}/coi.db"):
        u = DatabaseUrl.parse(text)
        assert (u.backend, u.sqlite_path) == ("sqlite", tmp_path / "coi.db")
        assert u.display == u.driver_url == f"sqlite:///{tmp_path}/coi.db" == str(u)


def test_empty_means_the_environment_then_the_default(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert DatabaseUrl.parse(None, env={}).sqlite_path == tmp_path / "coi.db"
    assert DatabaseUrl.parse("", env={"COI_DATABASE_URL": "other.db"}).sqlite_path == (
        tmp_path / "other.db")
    assert DatabaseUrl.parse("mine.db", env={"COI_DATABASE_URL": "other.db"}).sqlite_path == (
        tmp_path / "mine.db")


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg", "POSTGRES"])
def test_postgresql_through_psycopg_with_the_password_hidden(scheme: str) -> None:
    u = DatabaseUrl.parse(f"{scheme}://alice:{SECRET}@db.example:5433/coi?sslmode=require")
    assert u.backend == "postgresql" and u.database == "coi" and u.sqlite_path is None
    assert u.driver_url == f"postgresql+psycopg://alice:{SECRET}@db.example:5433/coi?sslmode=require"
    assert u.display == "postgresql+psycopg://alice:***@db.example:5433/coi?sslmode=require"
    assert SECRET not in str(u) and SECRET not in repr(u)
    assert dict(u.connect_params) == {"host": "db.example", "port": "5433", "user": "alice",
                                      "password": SECRET, "dbname": "coi",
                                      "sslmode": "require"}


@pytest.mark.parametrize(("text", "says"), [
    ("mysql://root@localhost/coi", "unsupported database 'mysql'"),
    ("postgresql+psycopg2://u@h/db", "psycopg 3 only"),
    ("sqlite://", "names no file"),
    ("sqlite:///:memory:", "must be kept in a file"),
    (":memory:", "must be kept in a file"),
    ("sqlite:///coi.db?mode=ro", "options on a SQLite URL"),
    (f"postgresql://u:{SECRET}@h:port/db", "is not a database URL"),
    ("coi.db\n", "control characters"),
    (" coi.db", "surrounding spaces"),
    ("co\x00i.db", "control characters"),
    ("\x1b[31mred.db", "control characters"),
])
def test_a_bad_url_says_what_is_wrong_and_what_to_give(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        DatabaseUrl.parse(text)
    assert says in str(e.value)
    assert SECRET not in str(e.value)
    if "control" not in says and "spaces" not in says and "psycopg" not in says:
        assert "postgresql://user@host/dbname" in str(e.value) or "sqlite:///" in str(e.value)


@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_config_error(text: str) -> None:
    try:
        u = DatabaseUrl.parse(text or "x.db")
    except ConfigError as e:
        assert SECRET not in str(e)
        return
    assert u.backend in ("sqlite", "postgresql")
    assert (u.sqlite_path is not None) == (u.backend == "sqlite")
    assert u.display.isprintable()


@given(st.text(alphabet=st.characters(blacklist_characters="/@", blacklist_categories=("Cc",)),
               min_size=1, max_size=20))
def test_no_password_reaches_a_message(password: str) -> None:
    for text in (f"postgresql://u:{password}@h:x/db", f"mysql://u:{password}@h/db",
                 f"postgresql://u:{password}@h/db"):
        try:
            u = DatabaseUrl.parse(text)
        except ConfigError as e:
            assert f":{password}@" not in str(e)
        else:
            assert f":{password}@" not in u.display and f":{password}@" not in repr(u)


def test_the_value_travels_to_a_worker_intact(tmp_path: Path) -> None:
    for u in (DatabaseUrl.parse(str(tmp_path / "a.db")),
              DatabaseUrl.parse(f"postgresql://u:{SECRET}@h/db")):
        assert pickle.loads(pickle.dumps(u)) == u


def test_the_log_key_defaults_beside_the_file_or_by_the_database_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COI_LOG_KEY", raising=False)
    assert Site.resolve("x.db").log_key_path == tmp_path / "x.db.logkey"
    assert Site.resolve("postgresql://u@h/ward").log_key_path == tmp_path / "coi-ward.logkey"
    assert Site.resolve("postgresql://u@h").log_key_path == tmp_path / "coi-coi.logkey"
    assert Site.resolve(f"postgresql://u:{SECRET}@h/ward").db_url == (
        "postgresql+psycopg://u:***@h/ward")


def test_the_driver_reader_opens_what_the_engine_opens(sqlite_ledger: Ledger) -> None:
    svc = sqlite_ledger.svc
    reader = DriverReader(svc.site.db)
    try:
        assert reader.rows(0, 5) == list(svc.store.rows(0, 5))
    finally:
        reader.close()


@pytest.mark.parametrize("db", ["mysql://root:" + SECRET + "@h/coi", "sqlite://", "bad.db\n",
                                "FOLDER"])
def test_the_cli_exits_2_with_the_reason(db: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["verify", "--db", str(tmp_path) if db == "FOLDER" else db])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("coi: ") and SECRET not in r.output
