"""Rows stay in the services and the store: routes and console pages see plain values (STYLE #9, #12)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import suanwang
from suanwang.api.schemas import JobOut, PoolOut, SiteOut, UsageOut
from suanwang.services.views import Job, PoolView, SiteView, UsageRecord

SRC = Path(suanwang.__file__).parent
# Routes that still build their answer from a row, each waiting on its owner's change.
NOT_YET = {"api/routes/datasets.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


@pytest.mark.parametrize("path", sorted([*SRC.glob("api/routes/*.py"), *SRC.glob("web/*.py")]),
                         ids=lambda p: str(p.relative_to(SRC)))
def test_routes_and_pages_import_no_rows_and_build_no_queries(path: Path) -> None:
    if str(path.relative_to(SRC)) in NOT_YET:
        pytest.skip("builds its answer from a row still")
    imported = _imports(path)
    assert not [m for m in imported if m.startswith("suanwang.store")], "rows are read through a service"
    assert not [m for m in imported if m.startswith("sqlalchemy") and m != "sqlalchemy.orm"], "no SQL here"


@pytest.mark.parametrize(("schema", "view", "derived"), [
    (JobOut, Job, set()), (SiteOut, SiteView, set()), (PoolOut, PoolView, set()),
    (UsageOut, UsageRecord, {"units"}),  # units: the record's units_nano as exact decimal text
])
def test_each_response_field_comes_from_its_view(schema: type, view: type, derived: set[str]) -> None:
    fields = {f.name for f in dataclasses.fields(view)}
    assert set(schema.model_fields) - derived <= fields
