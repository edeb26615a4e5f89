"""Contracts honoured by placement (pure): owners first inside their reservation, spot borrows the idle part
and is preempted when the owner comes, nobody else sees the reservation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.fairness import RunningJob
from suanwang.domain.grid import Capacity, Pool
from suanwang.domain.job import JobSpec
from suanwang.domain.market.reservations import (
    Reservation,
    attribute_lent,
    lendable_pools,
    owner_use,
    place_owners,
    pools_for_others,
)
from suanwang.domain.placement import PoolState, QueuedJob
from suanwang.domain.resources import Engine, ResourceClass, ServiceLevel

GPU = Pool("gpu", "qingyang", ResourceClass.INTELLIGENT, Engine.LOCAL, Capacity(80, 640.0, 8), device_model="H800")
NOW = 1_000.0


def _res(cid: str = "s/b1/a1/0", consumer: str = "c1", units: int = 4) -> Reservation:
    return Reservation(cid, consumer, "qingyang", ResourceClass.INTELLIGENT, units, 0.0, 3600.0, 15_000)


def _job(jid: str, tenant: str, devices: int = 1, contract: str = "",
         level: ServiceLevel = ServiceLevel.STANDARD) -> QueuedJob:
    spec = JobSpec(command=("true",), resource_class=ResourceClass.INTELLIGENT, devices=devices, cores=devices * 10,
                   memory_gb=devices * 80.0, contract=contract, service_level=level)
    return QueuedJob(jid, spec, tenant, NOW)


def _spot(jid: str, devices: int, started: float = 0.0) -> RunningJob:
    return RunningJob(jid, "c9", "qingyang", "gpu", Capacity(devices * 10, devices * 80.0, devices), started, 1e9,
                      ServiceLevel.SPOT)


def test_the_owner_reclaims_lent_capacity_by_preempting_spot_work() -> None:
    running = [_spot("spot-a", 4, started=10.0), _spot("spot-b", 4, started=20.0)]  # the pool is full of spot work
    pools = [PoolState(GPU, Capacity())]
    plan = place_owners([_job("j1", "c1", devices=2)], pools, [_res()], running, {}, now=NOW)
    assert [p.job_id for p in plan.placements] == ["j1"]
    assert plan.contract_of == {"j1": "s/b1/a1/0"}
    assert plan.preempt == ["spot-b"]  # one job, the latest started (least work lost)
    assert plan.room == {"s/b1/a1/0": 2}
    assert plan.free[("qingyang", "gpu")] == Capacity(20, 160.0, 2)


def test_others_never_see_the_reservation_and_spot_borrows_only_its_idle_part() -> None:
    pools = [PoolState(GPU, Capacity(80, 640.0, 8))]
    plan = place_owners([_job("x", "c2")], pools, [_res(units=3)], [], {}, now=NOW)  # c2 owns nothing here
    assert plan.placements == [] and plan.preempt == []
    (others,) = pools_for_others(pools, [_res(units=3)], plan)
    assert others.free.devices == 5
    (lend,) = lendable_pools(pools, [_res(units=3)], plan, {("qingyang", "gpu"): Capacity(50, 400.0, 5)})
    assert lend.free.devices == 3


def test_a_job_naming_another_contract_or_tenant_is_not_placed_in_it() -> None:
    pools = [PoolState(GPU, Capacity(80, 640.0, 8))]
    jobs = [_job("a", "c2", contract="s/b1/a1/0"), _job("b", "c1", contract="s/other")]
    plan = place_owners(jobs, pools, [_res()], [], {}, now=NOW)
    assert plan.placements == []


def test_an_ended_or_future_contract_reserves_nothing() -> None:
    pools = [PoolState(GPU, Capacity(80, 640.0, 8))]
    plan = place_owners([_job("j", "c1")], pools, [_res()], [], {}, now=3600.0)
    assert plan.placements == [] and plan.room == {}


def test_owner_use_counts_units_of_contract_jobs_only() -> None:
    running = [_spot("s", 3), RunningJob("o", "c1", "qingyang", "gpu", Capacity(20, 160.0, 2), 0.0, 1e9)]
    assert owner_use({"o": "s/b1/a1/0"}, running, [PoolState(GPU, Capacity())]) == {"s/b1/a1/0": 2}


@settings(max_examples=60, deadline=None)
@given(units=st.integers(0, 8), used=st.integers(0, 8), spot=st.lists(st.integers(1, 4), max_size=4),
       wants=st.lists(st.integers(1, 4), max_size=5), others=st.integers(0, 8))
def test_owners_stay_inside_their_reservation_and_only_spot_is_preempted(
        units: int, used: int, spot: list[int], wants: list[int], others: int) -> None:
    running = [_spot(f"spot-{i}", d, started=float(i)) for i, d in enumerate(spot)]
    held = sum(spot) + min(used, units) + others
    if held > 8:
        return  # more running than the pool has: not a state the platform can be in
    pools = [PoolState(GPU, Capacity(10 * (8 - held), 80.0 * (8 - held), 8 - held))]
    res = _res(units=units)
    plan = place_owners([_job(f"j{i}", "c1", devices=d) for i, d in enumerate(wants)], pools, [res], running,
                        {res.contract_id: min(used, units)}, now=NOW)
    placed = sum(d for i, d in enumerate(wants) if f"j{i}" in plan.contract_of)
    assert placed <= units - min(used, units)  # never beyond the reservation
    assert plan.room[res.contract_id] == units - min(used, units) - placed
    assert set(plan.preempt) <= {r.id for r in running}  # only spot work
    freed = sum(r.demand.devices for r in running if r.id in plan.preempt)
    assert plan.free[("qingyang", "gpu")].devices == 8 - held + freed - placed >= 0
    if not plan.preempt:
        return
    # preemption only when free capacity was short for someone: without the last victim that job would not fit
    assert placed > 8 - held
    # what others and lenders see never exceeds what is free, and together they never exceed it either
    (seen,) = pools_for_others(pools, [res], plan)
    (lend,) = lendable_pools(pools, [res], plan, {})
    assert seen.free.devices + lend.free.devices <= plan.free[("qingyang", "gpu")].devices


@settings(max_examples=200, deadline=None)
@given(rooms=st.lists(st.integers(0, 5), min_size=1, max_size=4), jobs=st.lists(st.integers(1, 4), max_size=8))
def test_lent_units_are_attributed_to_lines_never_beyond_their_idle_room(rooms: list[int], jobs: list[int]) -> None:
    lines = [_res(f"s/b{i}/a1/0", units=10) for i in range(len(rooms))]
    room = {r.contract_id: n for r, n in zip(lines, rooms, strict=True)}
    lent = [(f"j{i}", "qingyang", ResourceClass.INTELLIGENT, u) for i, u in enumerate(jobs)]
    got = attribute_lent(lent, lines, room)
    for cid, n in room.items():  # no line lends more than it left idle
        assert sum(u for parts in got.values() for c, u in parts if c == cid) <= n
    for jid, _, _, units in lent:  # no job borrows more than it takes; the idle room is used before any is left
        assert sum(u for _, u in got.get(jid, ())) <= units
    assert sum(u for parts in got.values() for _, u in parts) == min(sum(rooms), sum(jobs))
    assert attribute_lent([("x", "wuhu", ResourceClass.INTELLIGENT, 2)], lines, room) == {}  # another site's lines
