"""Run Alembic migrations programmatically (no alembic.ini needed by users), and say where a database stands."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at ``url`` to the newest schema (callers hold the migration lock: ``Database.migrate``)."""
    command.upgrade(alembic_config(url), revision)


def head_revisions() -> set[str]:
    """The revisions this code's schema is at."""
    return set(ScriptDirectory(str(MIGRATIONS)).get_heads())


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database is at (empty when it was never migrated)."""
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())
