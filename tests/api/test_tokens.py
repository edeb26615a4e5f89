"""Token lifecycle: expiry, revocation, listing, rotation, one-use enrolment; refusals audited and counted."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from suanwang.store.tables import AuditRow
from tests.api.conftest import Grid

API = "/api/v1"


def _issue(grid: Grid, **body: object) -> dict[str, object]:
    body = {"role": "consumer", "tenant_id": grid.operator.get(f"{API}/whoami").json()["tenant_id"], **body}
    r = grid.operator.post(f"{API}/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _failures(reason: str) -> float:
    return REGISTRY.get_sample_value("suanwang_auth_failures_total", {"reason": reason}) or 0.0


def test_expired_token_is_401(grid: Grid) -> None:
    tok = _issue(grid, lifetime_s=60)
    c = grid.as_(str(tok["token"]))
    assert c.get(f"{API}/jobs").status_code == 200
    grid.client.app.state.auth.wall = lambda: float(tok["expires_at"]) + 1  # type: ignore[arg-type]
    before = _failures("expired")
    r = c.get(f"{API}/jobs")  # also while the principal is still in the cache
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    assert _failures("expired") == before + 1


@pytest.mark.parametrize("lifetime", ["0", "-1", "1e999999", str(2**70), "NaN", str(10 * 366 * 86400 + 1)])
def test_absurd_lifetimes_are_422(grid: Grid, lifetime: object) -> None:
    body = f'{{"role": "consumer", "tenant_id": "t-operator", "lifetime_s": {lifetime}}}'
    r = grid.operator.post(f"{API}/tokens", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "lifetime_s" in r.json()["detail"], r.text


def test_revoked_token_is_401_at_once_and_listing_never_shows_secrets(grid: Grid) -> None:
    tok = _issue(grid, name="to revoke")
    c = grid.as_(str(tok["token"]))
    assert c.get(f"{API}/jobs").status_code == 200  # now cached
    r = grid.operator.post(f"{API}/tokens/{tok['id']}/revoke")
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert c.get(f"{API}/jobs").status_code == 401
    assert grid.operator.post(f"{API}/tokens/{tok['id']}/revoke").status_code == 409
    listed = grid.operator.get(f"{API}/tokens").json()
    assert any(t["id"] == tok["id"] and t["revoked"] for t in listed)
    text = str(listed)
    assert "token_hash" not in text and "sw_" not in text and "'token'" not in text


def test_revocation_on_another_replica_holds_within_the_cache_time(grid: Grid) -> None:
    tok = _issue(grid)
    c = grid.as_(str(tok["token"]))
    auth = grid.client.app.state.auth
    now = [0.0]
    auth.cache.clock = lambda: now[0]
    assert c.get(f"{API}/jobs").status_code == 200
    with grid.platform.db.transaction() as s:  # revoked by another replica: this one's cache does not know
        from suanwang.services.auth import revoke_token

        revoke_token(s, str(tok["id"]), now=1.0)
    assert auth.settings.cache_s <= 1.0
    now[0] = auth.settings.cache_s
    assert c.get(f"{API}/jobs").status_code == 401


def test_rotation_keeps_role_tenant_site_and_revokes_the_old(grid: Grid) -> None:
    agent_id = grid.agent.get(f"{API}/whoami").json()["token_id"]
    r = grid.operator.post(f"{API}/tokens/{agent_id}/rotate")
    assert r.status_code == 201, r.text
    new = r.json()
    assert (new["role"], new["site"], new["replaces"]) == ("agent", "local", agent_id)
    assert grid.agent.get(f"{API}/whoami").status_code == 401
    me = grid.as_(new["token"]).get(f"{API}/whoami").json()
    assert (me["role"], me["site"], me["token_id"]) == ("agent", "local", new["id"])
    assert grid.operator.post(f"{API}/tokens/{agent_id}/rotate").status_code == 409
    assert grid.operator.post(f"{API}/tokens/tok-nope/rotate").status_code == 404
    assert grid.consumer.post(f"{API}/tokens/{new['id']}/rotate").status_code == 403


def test_enrolment_token_works_once(grid: Grid) -> None:
    r = grid.operator.post(f"{API}/sites/local/enrolments", json={"lifetime_s": 600})
    assert r.status_code == 201, r.text
    enrol = r.json()["enrol_token"]
    assert grid.as_(enrol).get(f"{API}/whoami").status_code == 401  # not a bearer token
    first = grid.client.post(f"{API}/agent/enrol", json={"enrol_token": enrol})
    assert first.status_code == 201, first.text
    agent = grid.as_(first.json()["token"])
    assert agent.get(f"{API}/whoami").json()["site"] == "local"
    pools = [{"name": "cpu", "resource_class": "general", "engine": "local", "cores": 2, "memory_gb": 4}]
    assert agent.post(f"{API}/agent/register", json={"pools": pools}).status_code == 200
    before = _failures("enrolment")
    again = grid.client.post(f"{API}/agent/enrol", json={"enrol_token": enrol})
    assert again.status_code == 401
    assert _failures("enrolment") == before + 1


def test_enrolment_racing_twice_issues_one_token(grid: Grid) -> None:
    enrol = grid.operator.post(f"{API}/sites/local/enrolments").json()["enrol_token"]
    codes: list[int] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        c = grid.as_("unused")
        barrier.wait()
        codes.append(c.post(f"{API}/agent/enrol", json={"enrol_token": enrol}).status_code)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201, 401, 401, 401]


def test_enrolment_expires_and_providers_enrol_only_their_sites(grid: Grid) -> None:
    enrol = grid.operator.post(f"{API}/sites/local/enrolments", json={"lifetime_s": 1}).json()
    import time as _time

    from sqlalchemy import update

    from suanwang.store.tables import EnrolmentRow

    with grid.platform.db.transaction() as s:  # as if its hour had passed
        s.execute(update(EnrolmentRow).values(expires_at=_time.time() - 1))
    assert grid.client.post(f"{API}/agent/enrol", json={"enrol_token": enrol["enrol_token"]}).status_code == 401
    t = grid.operator.post(f"{API}/tenants", json={"name": "p1", "kind": "provider"}).json()
    prov = grid.as_(grid.operator.post(f"{API}/tokens", json={"role": "provider",
                                                              "tenant_id": t["id"]}).json()["token"])
    assert prov.post(f"{API}/sites", json={"name": "p1-site"}).status_code == 201
    assert prov.post(f"{API}/sites/p1-site/enrolments").status_code == 201
    assert prov.post(f"{API}/sites/local/enrolments").status_code == 404  # the operator's site
    assert grid.consumer.post(f"{API}/sites/local/enrolments").status_code == 403
    r = grid.operator.post(f"{API}/sites/local/enrolments", content=b'{"lifetime_s": 1e999999}',
                           headers={"content-type": "application/json"})
    assert r.status_code == 422 and "lifetime_s" in r.json()["detail"]


def test_refused_authentications_are_audited_at_most_once_a_second_per_source(grid: Grid) -> None:
    auth = grid.client.app.state.auth
    now = [100.0]
    auth.refusals.clock = lambda: now[0]
    before = _failures("unknown")
    for _ in range(5):
        assert grid.as_("sw_guess").get(f"{API}/jobs").status_code == 401
    now[0] += 1.0
    assert grid.as_("sw_guess").get(f"{API}/jobs").status_code == 401
    assert _failures("unknown") == before + 6
    with grid.platform.db.sessions() as s:
        rows = list(s.scalars(select(AuditRow).where(AuditRow.action == "auth.refused").order_by(AuditRow.id)))
    assert [r.detail["count"] for r in rows] == [1, 5]
    assert rows[0].detail["reason"] == "unknown" and rows[0].actor == "system"


def test_a_busy_token_is_read_again_in_the_background_before_its_entry_runs_out(grid: Grid) -> None:
    import time as _time

    from suanwang.services.auth import hash_token, revoke_token

    tok = _issue(grid)
    auth = grid.client.app.state.auth
    now = [0.0]
    auth.cache.clock = lambda: now[0]
    headers = {"Authorization": f"Bearer {tok['token']}"}
    assert grid.client.get(f"{API}/jobs", headers=headers).status_code == 200
    with grid.platform.db.transaction() as s:  # revoked by another replica
        revoke_token(s, str(tok["id"]), now=1.0)
    now[0] = auth.settings.cache_s * 0.6  # past half its age: served from the cache, read again behind it
    assert grid.client.get(f"{API}/jobs", headers=headers).status_code == 200
    digest = hash_token(str(tok["token"]))
    deadline = _time.monotonic() + 10
    while auth.cache.peek(digest) is not None:  # the read-ahead runs on the client's event loop
        assert _time.monotonic() < deadline, "the cached entry was never read again"
        _time.sleep(0.01)
    assert grid.client.get(f"{API}/jobs", headers=headers).status_code == 401  # still within cache_s
