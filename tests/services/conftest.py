"""Fixtures the service tests share with the API tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from suanwang.store.db import Database
from tests.api import conftest as api


@pytest.fixture
def grid(db: Database, tmp_path: Path) -> Iterator[api.Grid]:
    """The in-process platform of the API tests (``tests.api.conftest.grid``), for service tests that
    drive it through its routes."""
    with api.a_grid(db, tmp_path) as running:
        yield running
