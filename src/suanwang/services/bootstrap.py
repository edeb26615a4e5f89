"""First start: the operator tenant and token, and this machine as the site "local".

Tokens are written to files in the data directory (mode 0600) because their
plaintext is never stored in the database.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from suanwang.domain.grid import Site
from suanwang.services.auth import Principal, Role, create_tenant, issue_token
from suanwang.services.sites import create_site
from suanwang.store.db import Database
from suanwang.store.tables import SiteRow, TenantRow

OPERATOR_TENANT = "operator"
LOCAL_SITE = "local"


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file existed with a wider mode
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def bootstrap(db: Database, data_dir: Path, *, local_site: bool = True) -> None:
    """Create what a fresh platform needs; idempotent, and re-issues a token whose file is missing."""
    with db.transaction() as s:
        op_id = s.scalar(select(TenantRow.id).where(TenantRow.name == OPERATOR_TENANT))
        if op_id is None:
            op_id = create_tenant(s, name=OPERATOR_TENANT, kind="operator", tenant_id="t-operator").id
        if not (data_dir / "operator.token").exists():
            _, token = issue_token(s, role=Role.OPERATOR, tenant_id=op_id, name="bootstrap operator")
            _write_secret(data_dir / "operator.token", token)
        if not local_site:
            return
        operator = Principal(token_id="bootstrap", role=Role.OPERATOR, tenant_id=op_id)  # nosec B106  # an actor
        if s.get(SiteRow, LOCAL_SITE) is None:
            create_site(s, operator, Site(name=LOCAL_SITE, region="local", province="", provider=op_id))
        if not (data_dir / "agent.token").exists():
            _, token = issue_token(s, role=Role.AGENT, tenant_id=op_id, site=LOCAL_SITE, name="local agent")
            _write_secret(data_dir / "agent.token", token)
        consumer_id = s.scalar(select(TenantRow.id).where(TenantRow.name == "demo"))
        if consumer_id is None:
            consumer_id = create_tenant(s, name="demo", kind="consumer").id
        if not (data_dir / "consumer.token").exists():
            _, token = issue_token(s, role=Role.CONSUMER, tenant_id=consumer_id, name="demo consumer")
            _write_secret(data_dir / "consumer.token", token)
