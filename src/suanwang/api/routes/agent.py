"""The agent protocol: agents pull work and push state, usage and logs (outbound HTTPS only)."""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from suanwang.api.deps import CurrentPrincipal, PlatformDep, SessionDep
from suanwang.api.schemas import HeartbeatIn, LeaseIn, LogChunkIn, RegisterIn, StatusIn, TaskOut, UsageBatchIn
from suanwang.domain.catalogue import CATALOGUE_LABEL
from suanwang.errors import InvalidSpec
from suanwang.services import agents, job_data, sites
from suanwang.services.auth import Principal
from suanwang.services.platform import Platform
from suanwang.services.wakeups import lease_topic

router = APIRouter(prefix="/agent", tags=["agent"])


@router.post("/register")
def register(body: RegisterIn, session: SessionDep, agent: CurrentPrincipal, platform: PlatformDep) -> dict[str, Any]:
    rows = sites.register_pools(session, agent, [p.model_dump() for p in body.pools], body.info)
    platform.wake(books=False)  # new capacity: work for placement
    warnings = [f"pool {r.name}: {r.labels[CATALOGUE_LABEL]}" for r in rows if CATALOGUE_LABEL in (r.labels or {})]
    return {"site": agent.site, "pools": [r.name for r in rows], "lease_s": platform.settings.lease_s,
            "site_timeout_s": platform.settings.site_timeout_s, "warnings": warnings}


@router.post("/heartbeat")
def heartbeat(body: HeartbeatIn, session: SessionDep, agent: CurrentPrincipal, platform: PlatformDep) -> dict[str, Any]:
    running = [(r.job_id, r.attempt) for r in body.running]
    kill = agents.heartbeat(session, agent, running, lease_s=platform.settings.lease_s, info=body.info,
                            now=platform.now())
    return {"kill": [{"job_id": j, "attempt": a} for j, a in kill], "lease_s": platform.settings.lease_s,
            "site_timeout_s": platform.settings.site_timeout_s}


@router.post("/lease")
async def lease(body: LeaseIn, agent: CurrentPrincipal, platform: PlatformDep) -> list[TaskOut]:
    """Hand out placed jobs; with ``wait_s`` the call waits (long-poll) until work arrives.

    It waits without a thread or a database query: placing a job at this site wakes it
    (``Platform.wakeups``; on PostgreSQL across replicas by NOTIFY).  An idle call looks at the
    database once; only while this process has no connected NOTIFY listener does it look again
    every ``lease_poll_s`` (``Platform.lease_poll_s``), so a NOTIFY that went missing delays a job
    by at most that.
    """
    topic = lease_topic(agent.site or "")
    deadline = time.monotonic() + body.wait_s
    while True:
        mark = platform.wakeups.mark(topic)  # before looking: a placement after the look moves it
        tasks = await run_in_threadpool(_lease_once, body, agent, platform)
        left = deadline - time.monotonic()
        if tasks or left <= 0:
            return tasks
        woken = await platform.wakeups.wait_async(topic, mark, platform.lease_poll_s(left))
        if not woken and time.monotonic() >= deadline:
            return []  # the time is up and nothing came: the agent's next call looks first thing


def _lease_once(body: LeaseIn, agent: Principal, platform: Platform) -> list[TaskOut]:
    with platform.db.transaction() as session:
        jobs = agents.lease_jobs(session, agent, max_jobs=body.max_jobs, lease_s=platform.settings.lease_s,
                                 request_id=body.request_id, now=platform.now())
        data = job_data.task_data(session, [j.id for j in jobs])  # declared inputs and output (flows)
        return [
            TaskOut(job_id=j.id, attempt=j.attempt, pool=j.pool or "", command=j.spec["command"], cores=j.cores,
                    memory_gb=j.memory_gb, devices=j.devices, env=j.spec.get("env", {}),
                    workdir=j.spec.get("workdir", ""), duration_s=j.spec.get("duration_s", 3600.0),
                    tenant=j.tenant_id, circuit=j.spec.get("circuit", ""), shots=j.spec.get("shots", 0),
                    device_share=j.spec.get("device_share", 0), device_memory_gb=j.spec.get("device_memory_gb", 0.0),
                    card=int((j.placement or {}).get("card", -1)), **data.get(j.id, {}))
            for j in jobs
        ]


@router.post("/jobs/{job_id}/status")
def status(job_id: str, body: StatusIn, session: SessionDep, agent: CurrentPrincipal,
           platform: PlatformDep) -> dict[str, Any]:
    applied = agents.report_status(session, agent, job_id=job_id, attempt=body.attempt, phase=body.phase,
                                   exit_code=body.exit_code, reason=body.reason, started_at=body.started_at,
                                   now=platform.now())
    if body.phase != "started":  # an ended attempt freed capacity and may have outputs to settle; a start, neither
        platform.wake()
    return {"applied": applied}


@router.post("/usage")
def usage(body: UsageBatchIn, session: SessionDep, agent: CurrentPrincipal, platform: PlatformDep) -> dict[str, Any]:
    reports = [agents.UsageReport(**r.model_dump()) for r in body.records]
    new = agents.record_usage(session, agent, reports, clock_skew_s=platform.settings.usage_clock_skew_s,
                              now=platform.now())
    if new:
        platform.wake(place=False)  # usage to rate
    return {"accepted": len(reports), "new": new}


@router.post("/logs")
def logs(body: LogChunkIn, session: SessionDep, agent: CurrentPrincipal) -> dict[str, Any]:
    try:
        data = base64.b64decode(body.data_b64, validate=True)
    except ValueError as exc:  # binascii.Error, or a character outside ASCII
        raise InvalidSpec(f"data_b64 is not valid base64: {exc}") from exc
    agents.store_log_chunk(session, agent, job_id=body.job_id, attempt=body.attempt, offset=body.offset, data=data)
    return {"stored": True}
