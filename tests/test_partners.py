"""Partners: organisations pinned in the ledger by an administrator (name, FIN, role, log key).

Real ledgers and keys; the registry is replayed from the ledger's own entries.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coi.cli.main import app
from coi.ledger import note
from coi.ledger.keys import generate, public_bytes
from coi.service import partners
from coi.service.errors import Refused
from tests.conftest import PASSWORDS, Ledger

runner = CliRunner()


def _key(origin: str, seed: int) -> str:
    return note.verifier_key(origin, public_bytes(generate(bytes([seed]) * 32)))


FACTORY = _key("factory.example/a9997", 7)
CLINIC = _key("clinic.example/a9996", 8)


def test_add_list_remove_replayed_from_the_ledger(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    admin = led.people["admin"]
    e = partners.add(led.svc, admin, name="acme-cells", log_key=FACTORY, fin="A9997",
                     role="manufacturing")
    partners.add(led.svc, admin, name="city-clinic", log_key=CLINIC, fin="A9996",
                 role="treatment")
    ps = partners.partners(led.reopen())  # a fresh service: read from the ledger alone
    assert [(p.name, p.fin, p.role, p.origin, p.added_at) for p in ps] == [
        ("acme-cells", "A9997", "manufacturing", "factory.example/a9997", e.index),
        ("city-clinic", "A9996", "treatment", "clinic.example/a9996", e.index + 1)]
    partners.remove(led.svc, admin, name="acme-cells", reason="contract ended")
    assert [p.name for p in partners.partners(led.svc)] == ["city-clinic"]
    led.svc.verify()
    row = led.svc.store.row(e.index)
    assert row is not None and row.subject == "partner/acme-cells" and row.signer == "admin"


@pytest.mark.parametrize(("kwargs", "why"), [
    ({"fin": "A9996"}, "already partner city-clinic's"),
    ({"fin": "A9999"}, "this site's own FIN"),
    ({"name": "city-clinic", "fin": "A9995"}, "already registered"),
    ({"log_key": CLINIC, "fin": "A9995"}, "already partner city-clinic's"),
    ({"name": "Acme"}, "not valid"),
    ({"name": "acme\n"}, "not valid"),
    ({"fin": "a9997"}, "not an ISBT 128"),
    ({"fin": "A9997\n"}, "not an ISBT 128"),
    ({"role": "courier"}, "not one of"),
    ({"log_key": "factory.example+00000000+AAAA"}, "not a log verifier key"),
])
def test_refused_partners_change_nothing(sqlite_ledger: Ledger, kwargs: dict[str, str],
                                         why: str) -> None:
    led = sqlite_ledger
    partners.add(led.svc, led.people["admin"], name="city-clinic", log_key=CLINIC, fin="A9996",
                 role="treatment")
    size = led.svc.store.count_rows()
    args = {"name": "acme-cells", "log_key": FACTORY, "fin": "A9997", "role": "manufacturing",
            **kwargs}
    with pytest.raises(Refused, match=why):
        partners.add(led.svc, led.people["admin"], **args)
    assert led.svc.store.count_rows() == size


def test_only_an_administrator_pins_a_partner(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    with pytest.raises(Refused, match="not an administrator"):
        partners.add(led.svc, led.people["alice"], name="acme-cells", log_key=FACTORY,
                     fin="A9997", role="manufacturing")
    with pytest.raises(Refused, match="reserved"):
        led.svc.append("partner.add", "partner/acme-cells",
                       {"name": "acme-cells", "fin": "A9997", "role": "manufacturing",
                        "log_key": FACTORY}, [partners.Party(led.people["alice"], "authored")])
    assert partners.partners(led.svc) == []


def test_partner_commands(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    led = sqlite_ledger
    led.svc.engine.dispose()
    pw = tmp_path / "admin.pw"
    pw.write_text(PASSWORDS["admin"] + "\n")
    db = ["--db", led.db]
    r = runner.invoke(app, ["partner", "add", "acme-cells", "--log-key", FACTORY, "--fin",
                            "A9997", "--role", "manufacturing", "--as", "admin",
                            "--password-file", str(pw), *db])
    assert r.exit_code == 0, r.output
    assert "pinned at entry" in r.output
    r = runner.invoke(app, ["partner", "list", "--json", *db])
    assert r.exit_code == 0, r.output
    assert [p["fin"] for p in json.loads(r.output)] == ["A9997"]
    r = runner.invoke(app, ["partner", "add", "other", "--log-key", CLINIC, "--fin", "A9997",
                            "--role", "treatment", "--as", "admin", "--password-file", str(pw),
                            *db])
    assert r.exit_code == 1 and "two partners cannot share one" in r.output
    r = runner.invoke(app, ["partner", "add", "bad name", "--log-key", CLINIC, "--fin", "A9995",
                            "--role", "treatment", "--as", "admin", "--password-file", str(pw),
                            *db])
    assert r.exit_code == 1 and "not valid" in r.output
    r = runner.invoke(app, ["partner", "remove", "acme-cells", "--reason", "test", "--as",
                            "admin", "--password-file", str(pw), *db])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["partner", "list", *db])
    assert "no partners" in r.output
