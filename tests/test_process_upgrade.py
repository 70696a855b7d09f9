"""A ledger keeps the process definition its genesis names: an upgrade of coi that ships a newer
definition still opens, records on and verifies ledgers created under an earlier one."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from coi.domain.loader import load_process, shipped_source
from coi.service import demo
from coi.service.errors import ConfigError
from tests.chain_site import new_site, new_walk, walk

OLD = shipped_source("car_t-1.0.0.toml")


def _old_genesis(fin: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"fin": fin}, {"name": "autologous-car-t", "version": "1.0.0",
                          "sha256": hashlib.sha256(OLD).hexdigest()}


def test_a_1_0_0_ledger_runs_its_own_definition(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:  # only the genesis is written as an older coi wrote it
        m.setattr(demo, "genesis_extras", _old_genesis)
        site = new_site(str(tmp_path / "old.db"), tmp_path / "old.db.logkey")
    p = site.svc.process()
    assert p.version == "1.0.0" and site.svc.process_source() == OLD
    assert p.sha256 != load_process().sha256
    w = new_walk(site, bags=1)
    walk(site, w, until="infusion")  # the whole chain to the bedside, under 1.0.0's rules
    product = site.svc.chain().product(w.coi)
    assert product is not None and product.state == "verified"
    site.svc.verify()


def test_an_unknown_definition_is_refused_with_what_to_do(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(fin: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"fin": fin}, {"name": "autologous-car-t", "version": "9.9.9", "sha256": "ab" * 32}

    with monkeypatch.context() as m:
        m.setattr(demo, "genesis_extras", unknown)
        site = new_site(str(tmp_path / "x.db"), tmp_path / "x.db.logkey")
    with pytest.raises(ConfigError, match=r"runs process autologous-car-t 9\.9\.9 .* "
                                          r"does not ship .* use the coi release"):
        site.svc.process()


def test_a_1_1_0_ledger_keeps_its_rules_after_the_upgrade_to_1_2_0(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1.1.0 knew no QC history, exceptional release or keyed entry: its ledgers keep running
    (a DIN without its check character, a second QC result replacing the first) and verify."""
    raw = shipped_source("car_t-1.1.0.toml")

    def genesis(fin: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"fin": fin}, {"name": "autologous-car-t", "version": "1.1.0",
                              "sha256": hashlib.sha256(raw).hexdigest()}

    with monkeypatch.context() as m:
        m.setattr(demo, "genesis_extras", genesis)
        site = new_site(str(tmp_path / "v11.db"), tmp_path / "v11.db.logkey")
    assert site.svc.process().version == "1.1.0"
    w = new_walk(site, bags=1)
    walk(site, w, until="qa_release")
    site.svc.record("qc_result", w.coi, actor=site.people["quinn"],
                    fields={"test": "viability", "result": "pass", "value": "90"})
    walk(site, w, until="infusion")
    product = site.svc.chain().product(w.coi)
    assert product is not None and product.state == "verified"
    assert site.entry(product.steps["apheresis_collection"][0])["data"]["din"] == w.din
    site.svc.verify()
