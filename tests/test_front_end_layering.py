"""The front ends' two rules stay written down: the CLI and the TUI import only the service, and
neither has an import cycle (TYPE_CHECKING imports included).

``test_import_hygiene`` runs ``lint-imports`` on whatever contracts pyproject.toml holds; this
test makes sure the contracts for the front ends are there and no weaker than agreed, and
checks the same rule on the source itself, so that dropping or loosening a contract fails.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FRONT_ENDS = ["coi.cli", "coi.tui"]
BELOW_THE_SERVICE = ["coi.export", "coi.domain", "coi.ledger", "coi.db", "coi.labels",
                     "sqlalchemy", "sqlmodel", "alembic", "psycopg", "cryptography"]


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def test_the_service_only_contract_is_written() -> None:
    found = [c for c in _contracts() if c["type"] == "forbidden"
             and sorted(c["source_modules"]) == FRONT_ENDS]
    assert len(found) == 1, "pyproject.toml lacks the front ends' service-only contract"
    forbidden = set(found[0]["forbidden_modules"])
    assert set(BELOW_THE_SERVICE) <= forbidden, set(BELOW_THE_SERVICE) - forbidden
    assert found[0].get("allow_indirect_imports") is True  # the service itself imports them


def test_the_no_cycle_contract_is_written() -> None:
    found = [c for c in _contracts() if c["type"] == "acyclic_siblings"]
    ancestors = {a for c in found for a in c["ancestors"]}
    assert set(FRONT_ENDS) <= ancestors
    assert not any(c.get("exclude_type_checking_imports") for c in found)


def test_front_end_sources_import_only_the_service() -> None:
    """Every import statement in coi/cli and coi/tui (in functions too) names no module below
    the service."""
    bad = []
    for pkg in FRONT_ENDS:
        for path in sorted((ROOT / pkg.replace(".", "/")).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    if any(name == m or name.startswith(m + ".") for m in BELOW_THE_SERVICE):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert bad == []
