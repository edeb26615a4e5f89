"""The agent protocol: agents pull work and push state, usage and logs (outbound HTTPS only)."""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter

from suanwang.api.deps import CurrentPrincipal, PlatformDep, SessionDep
from suanwang.api.schemas import HeartbeatIn, LeaseIn, LogChunkIn, RegisterIn, StatusIn, TaskOut, UsageBatchIn
from suanwang.domain.catalogue import CATALOGUE_LABEL
from suanwang.errors import InvalidSpec
from suanwang.services import agents, sites

router = APIRouter(prefix="/agent", tags=["agent"])


@router.post("/register")
def register(body: RegisterIn, session: SessionDep, agent: CurrentPrincipal, platform: PlatformDep) -> dict[str, Any]:
    rows = sites.register_pools(session, agent, [p.model_dump() for p in body.pools], body.info)
    platform.wake()
    warnings = [f"pool {r.name}: {r.labels[CATALOGUE_LABEL]}" for r in rows if CATALOGUE_LABEL in (r.labels or {})]
    return {"site": agent.site, "pools": [r.name for r in rows], "lease_s": platform.settings.lease_s,
            "warnings": warnings}


@router.post("/heartbeat")
def heartbeat(body: HeartbeatIn, session: SessionDep, agent: CurrentPrincipal, platform: PlatformDep) -> dict[str, Any]:
    running = [(r.job_id, r.attempt) for r in body.running]
    kill = agents.heartbeat(session, agent, running, lease_s=platform.settings.lease_s, info=body.info)
    return {"kill": [{"job_id": j, "attempt": a} for j, a in kill], "lease_s": platform.settings.lease_s}


@router.post("/lease")
def lease(body: LeaseIn, agent: CurrentPrincipal, platform: PlatformDep) -> list[TaskOut]:
    """Hand out placed jobs; with ``wait_s`` the call waits (long-poll) until work arrives."""
    deadline = time.monotonic() + body.wait_s
    while True:
        with platform.db.transaction() as session:
            jobs = agents.lease_jobs(session, agent, max_jobs=body.max_jobs, lease_s=platform.settings.lease_s,
                                     request_id=body.request_id)
            tasks = [
                TaskOut(job_id=j.id, attempt=j.attempt, pool=j.pool or "", command=j.spec["command"], cores=j.cores,
                        memory_gb=j.memory_gb, devices=j.devices, env=j.spec.get("env", {}),
                        workdir=j.spec.get("workdir", ""), duration_s=j.spec.get("duration_s", 3600.0),
                        tenant=j.tenant_id, circuit=j.spec.get("circuit", ""),
                        shots=j.spec.get("shots", 0))
                for j in jobs
            ]
        if tasks or time.monotonic() >= deadline:
            return tasks
        time.sleep(0.02)


@router.post("/jobs/{job_id}/status")
def status(job_id: str, body: StatusIn, session: SessionDep, agent: CurrentPrincipal,
           platform: PlatformDep) -> dict[str, Any]:
    applied = agents.report_status(session, agent, job_id=job_id, attempt=body.attempt, phase=body.phase,
                                   exit_code=body.exit_code, reason=body.reason, started_at=body.started_at)
    platform.wake()
    return {"applied": applied}


@router.post("/usage")
def usage(body: UsageBatchIn, session: SessionDep, agent: CurrentPrincipal, platform: PlatformDep) -> dict[str, Any]:
    reports = [agents.UsageReport(**r.model_dump()) for r in body.records]
    new = agents.record_usage(session, agent, reports, clock_skew_s=platform.settings.usage_clock_skew_s)
    return {"accepted": len(reports), "new": new}


@router.post("/logs")
def logs(body: LogChunkIn, session: SessionDep, agent: CurrentPrincipal) -> dict[str, Any]:
    try:
        data = base64.b64decode(body.data_b64, validate=True)
    except ValueError as exc:  # binascii.Error, or a character outside ASCII
        raise InvalidSpec(f"data_b64 is not valid base64: {exc}") from exc
    agents.store_log_chunk(session, agent, job_id=body.job_id, attempt=body.attempt, offset=body.offset, data=data)
    return {"stored": True}
