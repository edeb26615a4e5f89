"""Alembic environment: uses suanwang's metadata and the URL set by suanwang.store.migrate."""

from alembic import context

from suanwang.store import ledger_tables, market_tables  # noqa: F401  (register the money and market tables)
from suanwang.store.db import make_engine
from suanwang.store.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:  # suanwang.store.migrate sets it; alembic run by hand without it has nothing to migrate
        raise RuntimeError("alembic: no sqlalchemy.url set (run migrations through suanwang.store.migrate)")
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
