"""`python -m coi.db.check_schema`: run `alembic check` on a fresh SQLite database (CI)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from coi.db import migrate
from coi.db.engine import make_engine
from coi.db.url import DatabaseUrl


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        engine = make_engine(DatabaseUrl.parse(str(Path(d) / "check.db")))
        migrate.upgrade(engine)
        migrate.check(engine)
        engine.dispose()
    print("alembic check: models and migrations agree (SQLite)")


if __name__ == "__main__":
    main()
