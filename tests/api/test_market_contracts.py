"""Contracts honoured by placement, through the routes and the control loop (SQLite and PostgreSQL).

The contract row is written directly (as a clear writes it: ``services.market.clear_session``); the clear
itself is tested in tests/services/test_market_service.py.  Spot work of another tenant borrows the idle
reservation, the owner's job naming its contract reclaims it by preempting spot, others never see it.
"""

from __future__ import annotations

import time

from sqlalchemy import select

from suanwang.store.market_tables import MarketContractRow
from suanwang.store.tables import JobRow, SiteRow, TenantRow
from tests.api.conftest import Grid

API = "/api/v1"
CID = "da-2026-12-09/b-1/a-1/0"


def _contract(grid: Grid, consumer: str, units: int = 4, *, cls: str = "general", ends_in: float = 3600.0,
              provider: str = "p") -> None:
    now = time.time()
    with grid.platform.db.transaction() as s:
        s.add(MarketContractRow(id=CID, session_id="da-2026-12-09", bid_id="b-1", consumer=consumer, ask_id="a-1",
                                provider=provider, site="local", resource_class=cls, slot_start=now - 60,
                                slot_end=now + ends_in, units=units, buyer_price_cf=12_000, seller_price_cf=10_000))


def _demo(grid: Grid) -> str:
    with grid.platform.db.transaction() as s:
        return str(s.scalar(select(TenantRow.id).where(TenantRow.name == "demo")))


def _jobs(grid: Grid) -> dict[str, JobRow]:
    with grid.platform.db.transaction() as s:
        rows = list(s.scalars(select(JobRow)))
        s.expunge_all()
    return {r.id: r for r in rows}


def _submit(client, **spec: object) -> dict[str, object]:  # type: ignore[no-untyped-def]
    r = client.post(f"{API}/jobs", json={"command": ["true"], "cores": 1, "memory_gb": 1, **spec})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_spot_borrows_the_idle_reservation_and_the_owner_reclaims_it(grid: Grid) -> None:
    grid.register()  # local/cpu: 8 cores, 32 GiB
    _contract(grid, _demo(grid), units=4)
    other = grid.new_consumer("spotter")
    spot = [_submit(other, service_level="spot")["id"] for _ in range(8)]
    grid.tick()
    jobs = _jobs(grid)
    assert all(jobs[j].state == "placed" for j in spot)  # 4 free + 4 lent from the idle reservation
    leased = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 16, "wait_s": 0})
    assert leased.status_code == 200, leased.text
    waiting = _submit(other)["id"]  # standard work of a non-owner: never sees the reservation
    mine = _submit(grid.consumer, cores=2, contract=CID)["id"]
    grid.tick()
    jobs = _jobs(grid)
    assert jobs[mine].state == "placed" and jobs[mine].placement["contract"] == CID
    assert jobs[mine].placement["terms"]["contract_price_cf"] == 12_000
    requeued = [j for j in spot if jobs[j].state in ("requeued", "pending")]
    assert len(requeued) == 2  # exactly the owner's two cores of spot work, no more
    assert jobs[waiting].state in ("pending", "requeued")
    auto = _submit(grid.consumer, cores=2)["id"]  # names no contract: matched to its owner's automatically
    grid.tick()
    jobs = _jobs(grid)
    assert jobs[auto].state == "placed" and jobs[auto].placement["contract"] == CID
    over = _submit(grid.consumer, cores=1, contract=CID)["id"]  # the reservation is used up: it waits
    grid.tick()
    assert _jobs(grid)[over].state == "pending"


def test_a_job_naming_a_contract_not_its_own_ended_or_of_another_class_is_refused(grid: Grid) -> None:
    grid.register()
    _contract(grid, _demo(grid), units=4)
    other = grid.new_consumer("someone")
    r = other.post(f"{API}/jobs", json={"command": ["true"], "contract": CID})
    assert r.status_code == 404 and "contract" in r.text  # another tenant's: as if it did not exist
    r = grid.consumer.post(f"{API}/jobs", json={"command": ["true"], "contract": "no/such/thing"})
    assert r.status_code == 404
    r = grid.consumer.post(f"{API}/jobs", json={"command": ["true"], "contract": "x" * 201})
    assert r.status_code == 422
    r = grid.consumer.post(f"{API}/jobs", json={"command": ["true"], "contract": "a\x00b"})
    assert r.status_code == 422
    with grid.platform.db.transaction() as s:
        s.get(MarketContractRow, CID).resource_class = "intelligent"  # type: ignore[union-attr]
    r = grid.consumer.post(f"{API}/jobs", json={"command": ["true"], "contract": CID})
    assert r.status_code == 422 and "class" in r.text
    with grid.platform.db.transaction() as s:
        row = s.get(MarketContractRow, CID)
        assert row is not None
        row.resource_class, row.slot_end = "general", time.time() - 1
    r = grid.consumer.post(f"{API}/jobs", json={"command": ["true"], "contract": CID})
    assert r.status_code == 409 and "ended" in r.text
    assert _jobs(grid) == {}  # nothing written


def test_usage_under_a_contract_is_paid_at_the_clear_and_the_price_book_is_the_fallback(grid: Grid) -> None:
    from suanwang.store.tables import UsageRow
    from tests.api.test_billing_api import priced, run_with_usage, top_up, wallet

    consumer = priced(grid)  # 1000 fen per core-hour
    top_up(grid, consumer, 10_000)
    _contract(grid, consumer, units=2)
    covered = run_with_usage(grid, 1.0, job={"command": ["true"], "cores": 2, "memory_gb": 1, "contract": CID})
    assert _jobs(grid)[covered].placement["contract"] == CID
    assert wallet(grid, consumer)["balance"] == 10_000  # one core-hour, but the contract price was paid at the clear
    with grid.platform.db.transaction() as s:
        row = s.get(MarketContractRow, CID)
        assert row is not None
        row.slot_end = time.time() - 1  # the contract's slot is over: price books again
    fallback = run_with_usage(grid, 1.0, job={"command": ["true"], "cores": 2, "memory_gb": 1})
    assert "contract" not in _jobs(grid)[fallback].placement
    assert wallet(grid, consumer)["balance"] == 9_000
    with grid.platform.db.transaction() as s:
        reasons = dict(s.execute(select(UsageRow.job_id, UsageRow.unbilled_reason)).all())
    assert reasons == {covered: "contract", fallback: None}


def test_spot_on_lent_capacity_credits_the_buyer_half_of_what_it_paid_once(grid: Grid) -> None:
    from datetime import UTC, datetime

    from suanwang.domain.ledger import earnings, wallet
    from suanwang.domain.settlement import compute_settlement
    from suanwang.services.billing.contract_rating import book_lent_credits
    from suanwang.services.ledger_store import cached_balances, reconcile
    from suanwang.store.sql_ledger import load_transfers
    from suanwang.store.tables import UsageRow
    from tests.api.test_billing_api import priced, top_up

    entry = {"resource_class": "general", "tier": "standard", "unit": "core_hour", "unit_price_fen": 1000}
    buyer = priced(grid, {"entries": [entry | {"service_level": "standard"}, entry | {"service_level": "spot"}]})
    with grid.platform.db.transaction() as s:
        owner = str(s.scalar(select(SiteRow.tenant_id).where(SiteRow.name == "local")))
    _contract(grid, buyer, units=4, provider=owner)  # the site's provider sold the line (and earns the spot work)
    other = grid.new_consumer("spotter")
    spotter = other.get(f"{API}/whoami").json()["tenant_id"]
    top_up(grid, spotter, 20_000, key="spot")
    spot = [_submit(other, service_level="spot", duration_s=3600)["id"] for _ in range(8)]
    grid.tick()
    jobs = _jobs(grid)
    lent = {j: jobs[j].placement["lent"] for j in spot if "lent" in jobs[j].placement}
    assert list(lent.values()) == [{"1": [[CID, 1]]}] * 4  # 4 free cores, then the 4 idle reserved ones
    tasks = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 16, "wait_s": 0}).json()
    start = time.time()
    records = [{"job_id": t["job_id"], "attempt": t["attempt"], "seq": 0, "pool": "cpu", "start": start,
                "end": start + 1800, "wall_s": 1800, "cpu_s": 1.0, "peak_memory_bytes": 1} for t in tasks]
    assert len(records) == 8
    with grid.platform.db.transaction() as s:
        before = cached_balances(s)
    assert grid.agent.post(f"{API}/agent/usage", json={"records": records}).json()["new"] == 8
    grid.tick()  # rating: each spot job pays 500 fen (half a core-hour); the lent ones owe the buyer half of it
    with grid.platform.db.transaction() as s:
        after = cached_balances(s)
        assert reconcile(s).ok
        rows = [tuple(r) for r in s.execute(select(UsageRow.id, UsageRow.job_id, UsageRow.attempt, UsageRow.seq,
                                                   UsageRow.tenant_id, UsageRow.site, UsageRow.pool,
                                                   UsageRow.resource_class, UsageRow.start, UsageRow.end))]
        assert book_lent_credits(s, [(r, 500) for r in rows]) == []  # a retried batch books nothing again
    assert after.get(wallet(buyer), 0) - before.get(wallet(buyer), 0) == 4 * 250
    assert before.get(earnings(owner), 0) + 8 * 500 - after[earnings(owner)] == 4 * 250  # no platform fee here
    with grid.platform.db.transaction() as s:
        transfers = load_transfers(s, before=datetime(2999, 1, 1, tzinfo=UTC))
    period = compute_settlement(transfers, start=datetime(1970, 1, 1, tzinfo=UTC), end=datetime(2999, 1, 1, tzinfo=UTC))
    credits = [m for m in period.market if m.item == "lent"]
    assert {m.account for m in credits} == {f"wallet:{buyer}", f"earnings:{owner}"}  # on the buyer's and the seller's
    assert sum(m.fen for m in credits if m.account == f"wallet:{buyer}") == 1000
    assert all(m.session == "da-2026-12-09" and m.ref.startswith(CID + "#") for m in credits)


def test_lending_over_several_passes_attributes_each_line_only_what_it_left_idle(grid: Grid) -> None:
    grid.register()  # local/cpu: 8 cores
    demo = _demo(grid)
    _contract(grid, demo, units=2)
    now = time.time()
    second = "da-2026-12-09/b-2/a-1/0"
    with grid.platform.db.transaction() as s:
        s.add(MarketContractRow(id=second, session_id="da-2026-12-09", bid_id="b-2", consumer=demo,
                                ask_id="a-1", provider="p", site="local", resource_class="general",
                                slot_start=now - 60, slot_end=now + 3600, units=2, buyer_price_cf=12_000,
                                seller_price_cf=10_000))
    other = grid.new_consumer("spotter")
    first_wave = [_submit(other, service_level="spot")["id"] for _ in range(6)]
    grid.tick()  # 4 free cores, then 2 lent: the first line's
    later = [_submit(other, service_level="spot")["id"] for _ in range(3)]
    grid.tick()  # 2 more lent: the second line's (the first has none idle), the last waits
    jobs = _jobs(grid)
    lent = [jobs[j].placement.get("lent_now") for j in first_wave + later]
    assert [x for x in lent if x] == [[[CID, 1]], [[CID, 1]], [[second, 1]], [[second, 1]]]
    assert jobs[later[-1]].state == "pending"
