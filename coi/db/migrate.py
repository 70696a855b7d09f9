"""Schema management through Alembic, with the scripts found from the installed package."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("coi._migrations")))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine, attributes: dict[str, Any] | None = None) -> None:
    """Bring the schema to the newest revision. ``attributes`` reach the migration scripts
    (``coi_phi_seal``: what seals plain patient rows; they set ``coi_phi_sealed``)."""
    cfg = alembic_config(engine)
    cfg.attributes.update(attributes or {})
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
    if attributes is not None:
        attributes.update((k, v) for k, v in cfg.attributes.items() if k != "connection")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def check(engine: Engine) -> None:
    """``alembic check``: raise if the models and the migrated schema differ."""
    cfg = alembic_config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)
