"""Fixtures of the agent tests: a jobs root that tenants' uids can reach."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def jobs_root() -> Iterator[Path]:
    """A jobs root the tenants' uids can reach (pytest's tmp_path is 0700 root's)."""
    d = Path(tempfile.mkdtemp(prefix="sw-jobs-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)
