"""The ledger core and the export package stay in modules a reader can hold: 500 lines at most.

(The same bound for the rest of coi comes with the domain, service and front-end splits.)
"""

from __future__ import annotations

from pathlib import Path

import coi

ROOT = Path(coi.__file__).parent
MAX_LINES = 500


def test_no_module_of_the_ledger_core_or_export_is_over_500_lines() -> None:
    files = sorted([*(ROOT / "ledger").glob("*.py"), *(ROOT / "export").glob("*.py")])
    assert len(files) >= 15
    long = {str(f.relative_to(ROOT)): n for f in files
            if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
