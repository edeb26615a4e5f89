"""The audit trail never fails the mutation it records."""

from __future__ import annotations

from sqlalchemy import select

from suanwang.services.audit import OBJECT_CHARS, record_audit
from suanwang.store.db import Database
from suanwang.store.tables import AuditRow


def test_an_object_name_longer_than_its_column_is_kept_whole_in_the_detail(db: Database) -> None:
    name = ",".join(f"j-{i:016x}" for i in range(30))  # 569 characters
    with db.transaction() as s:
        record_audit(s, None, "job.submit", name, count=30)
    with db.transaction() as s:
        row = s.execute(select(AuditRow)).scalar_one()
    assert len(row.object) == OBJECT_CHARS and name.startswith(row.object[:-1])
    assert row.detail == {"count": 30, "object": name}
