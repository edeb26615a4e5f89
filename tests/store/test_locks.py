"""Advisory locks are per schema: one platform's pass never blocks another's in the same database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from suanwang.services.chain import claim_sealing
from suanwang.services.scheduling import claim_scheduling_pass
from suanwang.store.db import scratch_schema
from tests.conftest import postgres_schema_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def url_a() -> Iterator[str]:
    yield from postgres_schema_url()


@pytest.mark.parametrize("claim", [claim_scheduling_pass, claim_sealing])
def test_a_claim_excludes_its_own_schema_only(claim, url_a: str) -> None:  # type: ignore[no-untyped-def]
    with scratch_schema(url_a.split("?")[0]) as url_b:
        engines = [create_engine(u) for u in (url_a, url_a, url_b)]
        sessions = [Session(e) for e in engines]
        try:
            first, same_schema, other_schema = sessions
            assert claim(first)
            assert not claim(same_schema), "a second replica of the same platform must wait"
            assert claim(other_schema), "a platform in another schema of the database must not wait"
            first.rollback()  # the lock ends with the transaction
            same_schema.rollback()
            assert claim(same_schema)
        finally:
            for s in sessions:
                s.rollback()
                s.close()
            for e in engines:
                e.dispose()
