"""One replay, one wording: ``coi verify`` and the domain's replay refuse a fault the same way.

Each test slips one process entry into a real ledger below the service (the ledger's own append
checks signatures and keys, not the process rules), then asks twice: ``coi verify`` on the
command line, and :func:`coi.domain.replay.replay` over facts read straight from the stored
statements (signers' roles taken from the site's staff list, not from the service). Both must
name the same entry with the same sentence, and the sentence must say what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.domain import messages as say
from coi.domain.errors import ReplayError
from coi.domain.facts import Fact, Signer
from coi.domain.process import Process
from coi.domain.replay import replay
from coi.service.ledger import LedgerService, Party
from tests.chain_site import STAFF, T0, ChainSite, H, copy_site, new_walk, walk

runner = CliRunner()
ROLES = {user: frozenset(roles) for user, _name, roles in STAFF}
PACKAGING = {"container_id": "BOX0001", "temperature_range": "2_8c"}


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> ChainSite:
    return copy_site(tmp_path_factory.getbasetemp() / "chain-template", tmp_path / "site")


def slip_in(site: ChainSite, type_: str, data: dict[str, Any], *, by: str, meaning: str) -> int:
    """Append a process entry through a bare ledger service (no process rule, no entry hook)."""
    coi = new_walk(site, start_ms=T0 + H)
    walk(site, coi, until="packaging")
    site.svc.ledger.engine.dispose()
    bare = LedgerService.open(site.db, str(site.log_key), clock=site.clock)
    site.advance(5 * 60_000)
    entry = bare.append(type_, coi.coi, data, [Party(site.people[by], meaning)])
    bare.engine.dispose()
    return entry.index


def facts_of(site: ChainSite, process: Process) -> list[Fact]:
    """Every process entry of the ledger as a Fact, read from the stored statement bytes."""
    facts = []
    for index in range(site.entry_count()):
        row = site.svc.ledger.store.row(index)
        assert row is not None
        st = json.loads(row.statement)
        if st["type"] not in process.entry_types:
            continue
        signers = tuple(
            Signer(s["user"], s["name"], s["meaning"], ROLES.get(s["user"], frozenset()))
            for s in st["signers"]
        )
        facts.append(Fact(st["index"], st["time"], st["type"], st["subject"], st["data"], signers))
    return facts


def refusal_by_replay(site: ChainSite) -> ReplayError:
    process = site.svc.process()
    with pytest.raises(ReplayError) as err:
        replay(process, facts_of(site, process))
    return err.value


def refusal_by_verify(site: ChainSite, *args: str) -> str:
    site.svc.ledger.engine.dispose()
    res = runner.invoke(app, ["verify", "--db", site.db, *args])
    assert res.exit_code == 1, res.output
    return str(res.stderr)


FAULTS = {
    # the role rule: a courier signs the apheresis team's packaging step
    "role": (
        "step.packaging",
        PACKAGING,
        "colin",
        "authored",
        "the process refuses this entry: Only apheresis may record 'Packaging'; colin has "
        "roles: courier",
    ),
    # the order rule: QA releases a product that has not been made
    "order": (
        "step.qa_release",
        {"certificate_id": "COA0001"},
        "grace",
        "released",
        "the process refuses this entry: QA release needs",
    ),
    # the right person and step, but data the rules would have written otherwise (upper case)
    "data": (
        "step.packaging",
        {**PACKAGING, "container_id": "box0001"},
        "alice",
        "authored",
        say.data_differ("step.packaging"),
    ),
    # a value no attempt can produce
    "value": (
        "step.packaging",
        {**PACKAGING, "container_id": ["BOX0001"]},
        "alice",
        "authored",
        say.not_text_or_int(["BOX0001"]),
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_verify_and_the_replay_refuse_a_fault_in_the_same_words(
    site: ChainSite, fault: str
) -> None:
    type_, data, by, meaning, expected = FAULTS[fault]
    index = slip_in(site, type_, data, by=by, meaning=meaning)
    error = refusal_by_replay(site)
    assert error.index == index
    assert error.reason.startswith(expected), error.reason
    stderr = refusal_by_verify(site)
    assert "verification FAILED" in stderr
    assert f"verification FAILED: entry {index}: {error.reason}. What to do:" in stderr, stderr
    assert refusal_by_verify(site, "--jobs", "2") == stderr


def test_the_same_ledger_without_the_fault_verifies(site: ChainSite) -> None:
    """The control: the walk itself is clean, for the replay and for ``coi verify``."""
    coi = new_walk(site, start_ms=T0 + H)
    walk(site, coi, until="packaging")
    process = site.svc.process()
    facts = facts_of(site, process)
    assert replay(process, facts).product(coi.coi) is not None
    site.svc.ledger.engine.dispose()
    res = runner.invoke(app, ["verify", "--db", site.db])
    assert res.exit_code == 0, res.output
