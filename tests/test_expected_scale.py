"""The products expected here cost the same at any depth of hand-off history (issue 21).

Which products are expected (received by hand-off, no step recorded on them here since) is a
column of the product_state projection (``expected_index``): ``coi status`` and the receiving
station read the newest of them as one range of a partial index, then only those
``handoff.received`` entries. The statements a status call sends are counted at 3 and at 30
received products; the plans are read back with ``EXPLAIN`` on each backend; a ledger at
revision 0007 with products already received is upgraded with the column filled from its
entries, verifies, and ``coi migrate`` finds nothing to rebuild.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from typer.testing import CliRunner

from coi.cli.main import app
from coi.db import migrate
from coi.db.chain_repo import ChainStore
from coi.db.database import HEAD_REVISION
from coi.db.engine import make_engine
from coi.db.url import DatabaseUrl
from coi.ledger.errors import VerificationError
from coi.service.admin import rebuild_states
from coi.service.demo import STEP_NAMES, Site, Walk, step
from coi.service.handoff_receive import receive_handoff
from coi.tui.text import arrivals
from tests.conftest import BEFORE_0010
from tests.test_handoff import CLINIC, FACTORY, Org, build, pin, reopen, send, ship

runner = CliRunner()
DIN2 = f"A999826{2:06d}"  # what ship() gave the second product's collection


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement ``engine`` sends meanwhile, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, sql: str, params: Any, *_rest: Any) -> None:
        sent.append((sql, params))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _pair(tmp_path: Path) -> tuple[Org, Org]:
    clinic = build(str(tmp_path / "clinic.db"), tmp_path / "clinic.key", CLINIC)
    factory = build(str(tmp_path / "factory.db"), tmp_path / "factory.key", FACTORY)
    pin(clinic, factory, "acme-factory", "manufacturing")
    pin(factory, clinic, "city-clinic", "collection")
    return clinic, factory


def _hand_over(clinic: Org, factory: Org, seqs: range, tmp_path: Path) -> list[str]:
    got = []
    for seq in seqs:
        coi = ship(clinic, seq)
        f = send(clinic, coi, "acme-factory", tmp_path / f"h{seq}.jsonl")
        factory.clock.set(clinic.clock.now_ms() + 60_000)
        receive_handoff(factory.svc, factory.people["maya"], f)
        got.append(coi)
    return got


def _status_statements(org: Org) -> tuple[dict[str, Any], int]:
    org.svc.status()  # the process definition and the schema are read once per service
    with statements(org.ledger.engine) as sent:
        s = org.svc.status()
    return s, len(sent)


def test_status_sends_as_many_statements_at_30_received_products_as_at_3(
        tmp_path: Path) -> None:
    clinic, factory = _pair(tmp_path)
    first = _hand_over(clinic, factory, range(1, 4), tmp_path)
    s3, n3 = _status_statements(factory)
    assert [e["coi"] for e in s3["expected"]] == first[::-1]  # newest first
    more = _hand_over(clinic, factory, range(4, 31), tmp_path)
    s30, n30 = _status_statements(factory)
    assert [e["coi"] for e in s30["expected"]] == (first + more)[::-1]
    assert s30["expected_total"] == 30 and n30 == n3, (n3, n30)
    # A page: the newest receipts, with how many there are; the station's own list too.
    cut = factory.svc.status(limit=5)
    assert [e["coi"] for e in cut["expected"]] == more[::-1][:5]
    assert cut["expected_total"] == 30
    page, total = factory.svc.arrivals_at("receipt_at_manufacturing", limit=5)
    assert ([e["coi"] for e in page], total) == (more[::-1][:5], 30)
    assert [e["coi"] for e in factory.svc.expected_at("receipt_at_manufacturing",
                                                      coi=first[0].lower())] == [first[0]]
    factory.ledger.engine.dispose()
    res = runner.invoke(app, ["status", "--db", factory.db, "--limit", "5"])
    assert res.exit_code == 0, res.output
    assert ("expected from partners (hand-off received): (the first 5; --limit N lists more)"
            in res.output)


# ------------------------------------------------------------------------------ the plans


def _expected_queries(engine: Engine) -> list[tuple[str, Any]]:
    """The statements ``ChainStore.expected`` sends for a full page, with and without the
    receiving step's states."""
    store = ChainStore(engine)
    with statements(engine) as sent:
        store.expected(limit=0)
        store.expected(states=frozenset({"shipped", "in_transit_to_manufacturing"}), limit=0)
    queries = [(sql, params) for sql, params in sent if sql.lstrip().startswith("SELECT")]
    assert len(queries) == 4  # a page and a count, twice
    return queries


def test_sqlite_reads_the_expected_products_from_their_partial_index(tmp_path: Path) -> None:
    engine = make_engine(DatabaseUrl.parse(str(tmp_path / "x.db")))
    try:
        migrate.upgrade(engine)
        for sql, params in _expected_queries(engine):
            with engine.connect() as c:
                plan = " | ".join(str(r[3]) for r in c.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + sql, params))
            assert "ix_product_state_expected_index" in plan, (sql, plan)
            assert "TEMP B-TREE" not in plan, (sql, plan)  # read in order, nothing sorted
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_reads_the_expected_products_from_their_partial_index(pg_url: str) -> None:
    engine = make_engine(DatabaseUrl.parse(pg_url))
    try:
        migrate.upgrade(engine)
        for sql, params in _expected_queries(engine):
            with engine.begin() as c:
                c.execute(text("SET enable_seqscan = off"))  # empty: what it *can* use
                plan = "\n".join(str(r[0]) for r in c.exec_driver_sql("EXPLAIN " + sql, params))
            assert "ix_product_state_expected_index" in plan, (sql, plan)
    finally:
        engine.dispose()


# -------------------------------------------------------------------------- the migration


def test_a_0007_ledger_with_received_products_is_upgraded_with_them_expected(
        tmp_path: Path) -> None:
    clinic, factory = _pair(tmp_path)
    waiting, taken = _hand_over(clinic, factory, range(1, 3), tmp_path)
    receipt = STEP_NAMES.index("receipt_at_manufacturing")
    step(Site(svc=factory.svc, people=factory.people), Walk(coi=taken, seq=2, din=DIN2),
         receipt, factory.clock.now_ms())
    want = {waiting: factory.svc.status()["expected"][0]["index"], taken: None}
    # The ledger as revision 0007 left it: no column, no index; the entries as they are.
    engine = factory.ledger.engine
    with engine.begin() as c:
        for q in BEFORE_0010:
            c.execute(text(q))
        c.execute(text("DROP TABLE state_count"))  # 0009: counted again from the rows
        c.execute(text("DROP INDEX ix_product_state_expected_index"))
        c.execute(text("ALTER TABLE product_state DROP COLUMN expected_index"))
        c.execute(text("UPDATE alembic_version SET version_num = '0007'"))
    engine.dispose()
    res = runner.invoke(app, ["migrate", "--db", factory.db, "--log-key", str(factory.key)])
    assert res.exit_code == 0, res.output
    assert f"schema at revision {HEAD_REVISION}" in res.output
    org = reopen(factory)
    with org.ledger.engine.connect() as c:
        got = dict(c.execute(text("SELECT coi, expected_index FROM product_state")).all())
    assert got == want
    assert [e["coi"] for e in org.svc.status()["expected"]] == [waiting]
    org.svc.verify()  # every column as the replay makes it
    rebuilt = rebuild_states(org.ledger)
    assert rebuilt is not None and rebuilt.differed == {} and rebuilt.recorded_index is None

    # The column is the replay's like every other: changed outside coi, verify names it and
    # `coi migrate` puts it back (recorded).
    with org.ledger.engine.begin() as c:
        c.execute(text("UPDATE product_state SET expected_index = NULL WHERE coi = :c"),
                  {"c": waiting})
    assert org.svc.status()["expected"] == []
    with org.ledger.engine.begin() as c:  # naming an entry that is not its receipt: said so
        c.execute(text("UPDATE product_state SET expected_index = 0 WHERE coi = :c"),
                  {"c": waiting})
    with pytest.raises(VerificationError, match=f"says {waiting} is expected by the "
                                                "handoff.received entry 0, which the ledger "
                                                "does not hold: run `coi verify`"):
        org.svc.status()
    with pytest.raises(VerificationError, match=f"for {waiting}: column expected_index "
                                                "differs.*run `coi migrate`"):
        org.svc.verify()
    rebuilt = rebuild_states(org.ledger)
    assert rebuilt is not None and rebuilt.differed == {waiting: "column expected_index differs"}
    assert rebuilt.recorded_index is not None
    assert [e["coi"] for e in org.svc.status()["expected"]] == [waiting]
    org.ledger.engine.dispose()


def test_the_station_counts_the_arrivals_it_does_not_name() -> None:
    page = [{"coi": f"CH{n}", "from": "acme", "items": ["C00001"]} for n in range(5)]
    assert str(arrivals(page, 30)).endswith("CH4 from acme (C00001); and 25 more")
    assert "more" not in str(arrivals(page, 5))
    assert str(arrivals([], 0)) == ""
