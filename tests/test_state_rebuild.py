"""The product_state table is a projection of the ledger: ``coi verify`` fails, naming the
product, when a row is deleted, changed or invented; ``coi migrate`` rebuilds the table from the
verified ledger (in the transaction of a ``system.state_rebuilt`` entry signed by the site's log
key), changes nothing when the table is right, and refuses, changing nothing, when the ledger's
entries do not verify. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.service.admin import rebuild_states
from coi.service.chain import CoiService
from coi.service.errors import VerificationError
from coi.service.ledger import Party
from tests.chain_site import T0, ChainSite, H, new_site, new_walk, walk
from tests.conftest import BEFORE_0010, Ledger

runner = CliRunner()


def cli(site: ChainSite, *args: str) -> Any:
    site.svc.ledger.engine.dispose()  # the CLI opens its own engine
    return runner.invoke(app, [*args, "--db", site.db])


def migrate(site: ChainSite) -> Any:
    site.svc.ledger.engine.dispose()
    return runner.invoke(app, ["migrate", "--db", site.db, "--log-key", str(site.log_key)])


def table(site: ChainSite) -> list[Any]:
    return site.sql("SELECT * FROM product_state ORDER BY coi")


def two_products(backend_db: tuple[str, Path]) -> tuple[ChainSite, str, str]:
    url, log_key = backend_db
    site = new_site(url, log_key)
    a = new_walk(site, seq=1, start_ms=T0 + H)
    walk(site, a, until="labelling")
    b = new_walk(site, seq=2)
    walk(site, b, until="courier_pickup")
    return site, a.coi, b.coi


@pytest.mark.req("TAMPER-DETECTION")
def test_migrate_rebuilds_a_tampered_table_and_records_it(backend_db: tuple[str, Path]) -> None:
    site, a, b = two_products(backend_db)
    good = table(site)
    size = site.entry_count()

    # A healthy ledger: migrate changes nothing and records nothing.
    res = migrate(site)
    assert res.exit_code == 0, res.output
    assert "2 products, all as the" in res.output and "nothing changed" in res.output
    assert site.entry_count() == size and table(site) == good

    # One row changed in a summary column only, one deleted, one invented.
    site.sql("UPDATE product_state SET deadline_ms = NULL, open_deviations = 3 WHERE coi = :c",
             c=a)
    site.sql("DELETE FROM product_state WHERE coi = :c", c=b)
    site.sql("INSERT INTO product_state (coi, state, data, last_index, open_deviations) "
             "VALUES ('CHA9999267777\x1b[31m', 'released', '{}', 1, 0)")
    with pytest.raises(VerificationError, match=f"disagrees with the ledger for {a} "
                                                r"\(and 2 other products\).*coi migrate"):
        site.svc.verify()
    res = cli(site, "verify")
    assert res.exit_code == 1 and a in res.stderr and "coi migrate" in res.stderr

    res = migrate(site)
    assert res.exit_code == 0, res.output
    assert f"rebuilt from the {size} verified entries: 2 products written, 3 differed" in (
        res.output)
    assert f"{a}: column deadline_ms, open_deviations differs" in res.output
    assert f"{b}: no row is stored" in res.output
    assert "\x1b" not in res.output and "CHA9999267777\\e[31m" in res.output
    assert table(site) == good
    assert site.entry_count() == size + 1
    entry = site.last_entry()
    assert entry["type"] == "system.state_rebuilt" and entry["signer"] == "@site"
    assert entry["data"]["differed"] == 3 and entry["data"]["verified_size"] == size
    assert sorted(entry["data"]["named"]) == sorted([a, b, "CHA9999267777\\x1b[31m"])
    res = cli(site, "verify")
    assert res.exit_code == 0, res.output + res.stderr
    assert f"OK: {size + 1} entries verified" in res.output

    # Again: the table is right now, so nothing more is recorded.
    res = migrate(site)
    assert res.exit_code == 0 and "nothing changed" in res.output
    assert site.entry_count() == size + 1


def _disable_ledger_triggers(site: ChainSite) -> None:
    if site.svc.ledger.engine.dialect.name == "postgresql":
        site.sql("ALTER TABLE ledger_entry DISABLE TRIGGER ALL")
        return
    names = site.sql("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                     "AND tbl_name = 'ledger_entry'")
    for (name,) in names:
        site.sql(f'DROP TRIGGER "{name}"')


@pytest.mark.req("TAMPER-DETECTION")
def test_migrate_refuses_to_rebuild_from_a_ledger_that_fails(
        backend_db: tuple[str, Path]) -> None:
    site, a, _b = two_products(backend_db)
    site.sql("DELETE FROM product_state WHERE coi = :c", c=a)
    _disable_ledger_triggers(site)
    site.sql("UPDATE ledger_entry SET subject = 'CHA999926000000' WHERE idx = 5")
    before = table(site)
    size = site.entry_count()
    res = migrate(site)
    assert res.exit_code == 1
    assert "entry 5" in res.stderr and "not rebuilt (nothing changed)" in res.stderr
    assert table(site) == before and site.entry_count() == size


@pytest.mark.req("TAMPER-DETECTION")
def test_entries_appended_while_verify_runs_are_not_taken_for_tampering(
        sqlite_ledger: Ledger) -> None:
    """The head, the rows beyond it, the node count and the tables beside the ledger are read in
    one snapshot: a station appending during `coi verify` is not reported as a row inserted
    behind the ledger's back (nor as extra tree nodes)."""
    led = sqlite_ledger
    other = led.reopen()
    size = led.svc.store.head().size  # type: ignore[union-attr]
    appended: list[int] = []

    def progress(_done: int, _upto: int) -> None:
        if not appended:
            appended.append(other.append("test.note", "CHA99992600001A", {"n": 99},
                                         [Party(led.people["alice"], "authored")]).index)

    assert led.svc.verify(progress=progress).size == size
    assert appended == [size]
    assert led.svc.verify().size == size + 1
    other.engine.dispose()


def test_a_rebuild_raced_by_a_station_verifies_again(tmp_path: Path) -> None:
    """A station records while `coi migrate` verifies: the rebuild's transaction sees the ledger
    moved on, writes nothing, and the rebuild starts over from the new head."""
    site, a, b = two_products((str(tmp_path / "coi.db"), tmp_path / "coi.db.logkey"))
    site.sql("DELETE FROM product_state WHERE coi = :c", c=a)
    other = CoiService.open(site.db, str(site.log_key), clock=site.clock)
    runs: list[int] = []

    def progress(done: int, _upto: int) -> None:
        if not runs:  # the first verification only: a station records a step meanwhile
            runs.append(done)
            other.ledger.append("test.note", b, {"n": 1},
                                [Party(site.people["pat"], "authored")])

    size = site.entry_count()
    rebuilt = rebuild_states(site.svc.ledger, progress=progress)
    assert rebuilt is not None and rebuilt.verified_size == size + 1
    assert rebuilt.recorded_index == size + 1 and list(rebuilt.differed) == [a]
    site.svc.verify()
    other.ledger.engine.dispose()


def counts(site: ChainSite) -> dict[str, int]:
    return {s: int(n) for s, n in site.sql("SELECT state, products FROM state_count")
            if int(n) != 0}


def grouped(site: ChainSite) -> dict[str, int]:
    return {s: int(n) for s, n in site.sql(
        "SELECT state, COUNT(*) FROM product_state GROUP BY state")}


@pytest.mark.req("TAMPER-DETECTION")
def test_the_state_counts_move_with_the_rows_and_a_changed_count_is_caught_and_recounted(
        backend_db: tuple[str, Path]) -> None:
    """``coi status`` counts products by state from ``state_count`` (one row per state, kept
    in each append's transaction), never by counting every product: the counts follow each
    product from state to state; one changed outside coi fails ``coi verify``, naming the
    state, and ``coi migrate`` counts again from the rows, recorded."""
    site, a, b = two_products(backend_db)
    before = grouped(site)
    assert counts(site) == before and sorted(before.values()) == [1, 1]
    assert site.svc.status()["by_state"] == before
    c = new_walk(site, seq=3)
    walk(site, c, until="labelling")  # a third product, through the first product's states
    after = grouped(site)
    assert counts(site) == after and sum(after.values()) == 3
    assert after[site.svc.chain().product(a).state] == 2  # type: ignore[union-attr]

    state = site.svc.chain().product(a).state  # type: ignore[union-attr]
    site.sql("UPDATE state_count SET products = 7 WHERE state = :s", s=state)
    assert site.svc.status()["by_state"][state] == 7  # what status reads: the projection
    res = cli(site, "verify")
    assert res.exit_code == 1
    assert "state_count table disagrees" in res.output and f"state {state}: 7 counted, 2 " \
        "products" in res.output and "coi migrate" in res.output
    size = site.entry_count()
    res = migrate(site)
    assert res.exit_code == 0, res.output
    assert "state_count: counted again" in res.output
    assert site.entry_count() == size + 1  # the repair is on the record
    assert site.sql("SELECT type FROM ledger_entry ORDER BY idx DESC LIMIT 1") == [
        ("system.state_rebuilt",)]
    assert counts(site) == grouped(site)
    assert cli(site, "verify").exit_code == 0
    res = migrate(site)  # nothing left to do
    assert res.exit_code == 0 and "nothing changed" in res.output
    assert site.entry_count() == size + 1


def test_a_ledger_before_the_counts_is_upgraded_with_them_counted(
        backend_db: tuple[str, Path]) -> None:
    """Revision 0009 fills ``state_count`` from the product rows there are: a ledger that
    verified before the upgrade verifies after it, and nothing is recorded."""
    site, _a, _b = two_products(backend_db)
    want = grouped(site)
    for q in BEFORE_0010:
        site.sql(q)
    site.sql("DROP TABLE state_count")
    site.sql("UPDATE alembic_version SET version_num = '0008'")
    size = site.entry_count()
    res = migrate(site)
    assert res.exit_code == 0, res.output
    assert counts(site) == want and site.entry_count() == size
    assert cli(site, "verify").exit_code == 0
