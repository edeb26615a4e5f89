"""Hard placement rules and the first-fit policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.grid import Capacity, Pool
from suanwang.domain.job import JobSpec
from suanwang.domain.placement import FirstFit, PoolState, QueuedJob, check_placeable, rule_out
from suanwang.domain.resources import Engine, ResourceClass
from suanwang.errors import Unplaceable


def a_pool(name: str = "cpu", *, cores: int = 8, memory_gb: float = 32, devices: int = 0, device_model: str = "",
           device_memory_gb: float = 0.0, site: str = "s1", region: str = "") -> Pool:
    rc = ResourceClass.INTELLIGENT if devices else ResourceClass.GENERAL
    return Pool(name=name, site=site, resource_class=rc, engine=Engine.LOCAL,
                capacity=Capacity(cores, memory_gb, devices), device_model=device_model,
                device_memory_gb=device_memory_gb, labels={"region": region} if region else {})


def a_job(job_id: str = "j1", **spec: object) -> QueuedJob:
    return QueuedJob(id=job_id, spec=JobSpec(command=("true",), **spec), tenant="t", submitted_at=0.0)  # type: ignore[arg-type]


def test_device_memory_rule() -> None:
    small = a_pool("a100-40", devices=8, device_model="A100 40GB", device_memory_gb=40)
    job = JobSpec(command=("x",), resource_class=ResourceClass.INTELLIGENT, devices=1, device_memory_gb_min=80)
    assert "40 GB < 80 GB" in (rule_out(job, small) or "")


def test_region_rule() -> None:
    pool = a_pool(region="cn-east")
    assert rule_out(JobSpec(command=("x",), region="cn-northwest"), pool) is not None
    assert rule_out(JobSpec(command=("x",), region="cn-east"), pool) is None


def test_unplaceable_names_every_pool() -> None:
    with pytest.raises(Unplaceable, match="s1/cpu: too small"):
        check_placeable(JobSpec(command=("x",), memory_gb=1000), [a_pool()])
    with pytest.raises(Unplaceable, match="no pools"):
        check_placeable(JobSpec(command=("x",)), [])


@given(sizes=st.lists(st.integers(1, 8), min_size=1, max_size=30), cores=st.integers(1, 32))
def test_first_fit_never_overcommits_a_pool(sizes: list[int], cores: int) -> None:
    pool = a_pool(cores=cores, memory_gb=1000)
    jobs = [a_job(f"j{i}", cores=c, memory_gb=1) for i, c in enumerate(sizes)]
    plan = FirstFit().plan(jobs, [PoolState(pool, pool.capacity)], now=0.0)
    used = sum(next(j.spec.cores for j in jobs if j.id == p.job_id) for p in plan)
    assert used <= cores
    assert len({p.job_id for p in plan}) == len(plan)


def test_first_fit_skips_offline_pools_and_respects_not_before() -> None:
    pool = a_pool()
    assert FirstFit().plan([a_job()], [PoolState(pool, pool.capacity, online=False)], now=0.0) == []
    assert FirstFit().plan([a_job(not_before=100.0)], [PoolState(pool, pool.capacity)], now=0.0) == []
    assert len(FirstFit().plan([a_job(not_before=100.0)], [PoolState(pool, pool.capacity)], now=100.0)) == 1
