"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is found at SUANWANG_TEST_POSTGRES_URL (default: the local
server on 127.0.0.1:5432, database ``test``, trust auth).  Each test gets its
own schema, so tests never see each other's rows.  Without a reachable
server the PostgreSQL cases are skipped with the reason, unless
SUANWANG_REQUIRE_POSTGRES=1 (CI sets it) turns that into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text

from suanwang.store.db import Database, scratch_schema

# Property tests: no per-example deadline (these machines are shared and noisy); under CI the examples are
# derandomised, so a run is reproducible and a red CI means a change, not an unlucky draw.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

PG_URL = os.environ.get("SUANWANG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_available() -> str | None:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means: not here
        return f"PostgreSQL not reachable at {PG_URL}: {exc.__class__.__name__}"


_PG_PROBLEM = _postgres_available()


def postgres_schema_url() -> Iterator[str]:
    if _PG_PROBLEM:
        if os.environ.get("SUANWANG_REQUIRE_POSTGRES") == "1":
            pytest.fail(_PG_PROBLEM)
        pytest.skip(_PG_PROBLEM)
    with scratch_schema(PG_URL) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'suanwang.db'}"
    else:
        yield from postgres_schema_url()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    yield database
    database.dispose()
