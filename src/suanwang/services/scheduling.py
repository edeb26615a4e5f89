"""The platform's scheduling pass: requeue lost leases, then place waiting jobs.

The pure ``Scheduler`` decides; this module only loads its inputs (pool
states with free capacity derived from placed and running jobs) and applies
its plan in one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from suanwang.domain.explain import explain
from suanwang.domain.fairness import FairScheduler, RunningJob
from suanwang.domain.grid import Capacity
from suanwang.domain.job import LEASED_STATES, JobSpec, JobState, check_transition, state_after_lost_lease
from suanwang.domain.market import reservations
from suanwang.domain.placement import Placement, PoolState, QueuedJob, Scheduler, mib
from suanwang.domain.resources import Engine, LostPolicy, ServiceLevel
from suanwang.services import market_reservations, transfers
from suanwang.services.attempts import AttemptOutcome, end_attempt
from suanwang.services.billing import price_queue
from suanwang.services.grid_model import GridShape, load_grid
from suanwang.services.jobs import move, spec_from_json
from suanwang.services.planner import GridPlanner
from suanwang.services.views import Job
from suanwang.store import locks
from suanwang.store.db import is_postgres, rowcount
from suanwang.store.tables import JobEventRow, JobRow, SiteRow

_LEASED = tuple(s.value for s in LEASED_STATES)  # queued_at_site or running: an agent holds the lease
_HOLDING = (JobState.PLACED.value, *_LEASED)
# Engines with a queue of their own: work placed beyond their free capacity waits there, ready to
# start the moment a slot frees, instead of a report-place-lease round trip later.
QUEUEING_ENGINES = frozenset({Engine.SLURM, Engine.RAY})


def placeable_capacity(capacity: Capacity, engine: Engine, engine_queue: float) -> Capacity:
    """What placement may hold on a pool: its capacity, times ``engine_queue`` where the engine queues."""
    if engine not in QUEUEING_ENGINES or engine_queue <= 1.0:
        return capacity
    return Capacity(int(capacity.cores * engine_queue), capacity.memory_gb * engine_queue,
                    int(capacity.devices * engine_queue))
_WAITING = (JobState.PENDING.value, JobState.REQUEUED.value)


SCHEDULING_LOCK = 0x5357_0001  # PostgreSQL advisory lock key: one scheduling pass at a time across replicas


def claim_scheduling_pass(session: Session) -> bool:
    """On PostgreSQL, only one API replica schedules at a time; SQLite has one writer anyway."""
    if not is_postgres(session.get_bind()):
        return True
    return bool(session.scalar(locks.TRY_XACT, {"k": SCHEDULING_LOCK}))


def reap_expired_leases(session: Session, *, now: float) -> list[str]:
    """Jobs whose agent stopped renewing their lease: requeue or mark lost, per job policy."""
    expired = session.scalars(
        select(JobRow).where(JobRow.state.in_(_LEASED), JobRow.lease_expires_at < now).with_for_update()
    ).all()
    for job in expired:
        policy = LostPolicy(job.spec.get("on_lost", LostPolicy.REQUEUE.value))
        new = state_after_lost_lease(policy)
        end_attempt(session, job, AttemptOutcome.LOST, now=now)
        move(session, job, new, f"lease expired at site {job.site} (attempt {job.attempt})", now=now)
        if new is JobState.REQUEUED:
            job.site = None
            job.pool = None
            job.lease_expires_at = None
    return [j.id for j in expired]


def extend_leases_after_restart(session: Session, *, now: float, lease_s: float) -> int:
    """Give agents a full lease after the platform was down: its outage is not their fault."""
    result = session.execute(
        update(JobRow)
        .where(JobRow.state.in_(_LEASED), JobRow.lease_expires_at < now + lease_s)
        .values(lease_expires_at=now + lease_s)
    )
    return rowcount(result)


def mark_offline_sites(session: Session, *, now: float, timeout_s: float) -> list[str]:
    stale = session.scalars(select(SiteRow).where(SiteRow.online.is_(True), SiteRow.last_seen < now - timeout_s)).all()
    for site in stale:
        site.online = False
    return [s.name for s in stale]


def pool_states(
    session: Session, engine_queue: float = 1.0, *, grid: tuple[GridShape, dict[str, bool]] | None = None
) -> list[PoolState]:
    """Every pool with its free capacity: capacity minus what placed and leased (queued at site, running) jobs hold.

    With ``engine_queue`` > 1, pools whose engine queues (Slurm, Ray) count that multiple of their capacity.
    ``grid`` is the (shape, online) pair of ``load_grid`` when the caller has just read it.
    """
    held: dict[tuple[str, str], Capacity] = defaultdict(Capacity)
    rows = session.execute(
        select(JobRow.site, JobRow.pool, func.sum(JobRow.cores), func.sum(JobRow.memory_gb), func.sum(JobRow.devices))
        .where(JobRow.state.in_(_HOLDING))
        .group_by(JobRow.site, JobRow.pool)
    )
    for site, pool, cores, mem, devices in rows:
        held[(site or "", pool or "")] = Capacity(int(cores or 0), float(mem or 0.0), int(devices or 0))
    cards = shared_cards(session, held)
    (_, pools, _), online = grid if grid is not None else load_grid(session)
    return [
        PoolState(pool=p, free=placeable_capacity(p.capacity, p.engine, engine_queue) - held[(p.site, p.name)],
                  online=online.get(p.site, False), cards=cards.get((p.site, p.name), ()))
        for p in pools
    ]


def shared_cards(
    session: Session, held: dict[tuple[str, str], Capacity]
) -> dict[tuple[str, str], tuple[tuple[int, int, int], ...]]:
    """The cards fractions hold, per pool: (card, milli-cards, device MiB).  ``held`` counted each fraction as
    a whole device; it is corrected to count each card fractions share once."""
    per: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(dict)
    rows = session.execute(select(JobRow.site, JobRow.pool, JobRow.device_share, JobRow.spec, JobRow.placement)
                           .where(JobRow.state.in_(_HOLDING), JobRow.device_share > 0))
    counted: dict[tuple[str, str], int] = defaultdict(int)
    for site, pool, share, spec, placement in rows:
        key = (site, pool)
        counted[key] += 1
        card = int((placement or {}).get("card", -1))
        cards = per[key]
        if card < 0:  # placed before its card was recorded: count it on a card of its own
            card = -1 - len(cards)
        used = cards.setdefault(card, [0, 0])
        used[0] += int(share)
        used[1] += mib(float((spec or {}).get("device_memory_gb") or 0.0))
    for key, n in counted.items():
        h = held[key]
        held[key] = Capacity(h.cores, h.memory_gb, h.devices - n + len(per[key]))
    return {k: tuple((c, u, m) for c, (u, m) in sorted(v.items())) for k, v in per.items()}


_QUEUED_COLUMNS = (JobRow.id, JobRow.state, JobRow.spec, JobRow.tenant_id, JobRow.submitted_at, JobRow.attempt,
                   JobRow.placement)


def queued_jobs(session: Session, *, limit: int = 10_000) -> list[Any]:
    """The waiting jobs in queue order, as plain rows (the columns placement needs).

    On PostgreSQL the rows are locked, skipping any a concurrent cancel holds, so
    a placement never overwrites a state change made meanwhile.
    """
    return list(
        session.execute(
            select(*_QUEUED_COLUMNS)
            .where(JobRow.state.in_(_WAITING))
            .order_by(JobRow.priority.desc(), JobRow.submitted_at, JobRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def running_jobs(session: Session) -> list[RunningJob]:
    """Leased jobs, the capacity preemption may free (one still queued at its site counts from its placement)."""
    rows = session.scalars(select(JobRow).where(JobRow.state.in_(_LEASED)))
    return [
        RunningJob(id=r.id, tenant=r.tenant_id, site=r.site or "", pool=r.pool or "",
                   demand=Capacity(r.cores, r.memory_gb, r.devices), started_at=r.started_at or r.placed_at or 0.0,
                   expected_end=(r.started_at or r.placed_at or 0.0) + float(r.spec.get("duration_s", 3600.0)),
                   service_level=ServiceLevel(r.spec.get("service_level", "standard")))
        for r in rows
    ]


def preempt(session: Session, job_ids: list[str], *, now: float) -> None:
    """Requeue running spot jobs to make room; their agents kill them on the next heartbeat.

    Their usage so far was reported and is billed; the next attempt starts afresh.
    """
    if not job_ids:
        return
    for job in session.scalars(select(JobRow).where(JobRow.id.in_(job_ids)).with_for_update()):
        if JobState(job.state).is_leased:
            end_attempt(session, job, AttemptOutcome.PREEMPTED, now=now)
            move(session, job, JobState.REQUEUED, "preempted for guaranteed work", now=now)
            job.site = None
            job.pool = None
            job.lease_expires_at = None


_specs: dict[str, JobSpec] = {}
_SPEC_CACHE_MAX = 200_000


def _spec(job_id: str, data: dict[str, Any]) -> JobSpec:
    """A queued job's spec, parsed once: a spec never changes after submit, and a backlog is re-planned each pass."""
    spec = _specs.get(job_id)
    if spec is None:
        if len(_specs) >= _SPEC_CACHE_MAX:
            _specs.clear()
        spec = _specs[job_id] = spec_from_json(data)
    return spec


def place_waiting_jobs(
    session: Session, scheduler: Scheduler | Callable[[GridShape], Scheduler], *, now: float,
    engine_queue: float = 1.0,
) -> list[Placement]:
    """Run the scheduler over the queue and apply its plan.

    ``scheduler`` may be a function of the grid's shape (the planner's), so an
    idle pass with nothing queued reads neither the grid nor the price books.
    A placement starting later (a deferrable job shifted to cheaper or greener
    hours) takes no capacity now: the job stays waiting with the planned start
    recorded, and a later pass places it when its hour comes.  The plan is
    written with one UPDATE and one INSERT per pass (Core executemany), not
    row by row through the ORM.
    """
    rows = queued_jobs(session)
    if not rows:
        return []
    by_id = {r.id: r for r in rows}
    queue = [
        QueuedJob(id=r.id, spec=_spec(r.id, r.spec), tenant=r.tenant_id, submitted_at=r.submitted_at, attempt=r.attempt)
        for r in rows
    ]
    grid = load_grid(session)
    if not hasattr(scheduler, "plan"):
        scheduler = scheduler(grid[0])
    pools = pool_states(session, engine_queue, grid=grid)
    queue = price_queue(session, queue, grid[0][1], now=now)  # each limited job's quote per pool: the price rule
    running: list[RunningJob] | None = None
    owners, reserved = None, market_reservations.reservations_now(session, now=now)
    if reserved:  # the market's contracts: owners first, the idle reservations hidden from the rest (lent below)
        running = running_jobs(session)
        used = reservations.owner_use(*market_reservations.contract_jobs(session, _HOLDING, {r.site for r in reserved}),
                                      pools)
        owners = reservations.place_owners(queue, pools, reserved, running, used, now=now)
        preempt(session, owners.preempt, now=now)
        running = [r for r in running if r.id not in owners.preempt]
        queue = [q for q in queue if q.id not in owners.contract_of]
        all_pools, pools = pools, reservations.pools_for_others(pools, reserved, owners)
    if isinstance(scheduler, FairScheduler):
        result = scheduler.plan_with_preemption(queue, pools, now=now,
                                                running=running if running is not None else running_jobs(session))
        preempt(session, result.preempt, now=now)
        plan = result.placements
    else:
        plan = scheduler.plan(queue, pools, now=now)
    lent_of: dict[str, tuple[tuple[str, int], ...]] = {}
    if owners is not None:
        lent = _lend(scheduler, queue, plan, all_pools, reserved, owners, now)
        lent_of = _lent_lines(lent, queue, all_pools, reserved, owners,
                              market_reservations.lent_use(session, _HOLDING, {r.site for r in reserved},
                                                           set(owners.room)))
        plan = owners.placements + plan + lent
    placed, deferred, events = [], [], []
    # a job whose inputs are not yet at its site waits while they are staged (flows; services.transfers)
    staging = transfers.staging_gate(session, {p.job_id: p.site for p in plan if p.start_at <= now + 1.0}, now=now)
    for placement in plan:
        job = by_id[placement.job_id]
        record = {"site": placement.site, "pool": placement.pool, "start_at": placement.start_at,
                  "terms": placement.terms}
        if placement.card >= 0:  # a fraction: the card it shares, for the agent to pin
            record["card"] = placement.card
        if owners is not None and placement.job_id in owners.contract_of:
            record["contract"] = owners.contract_of[placement.job_id]
        lent_history = job.placement.get("lent") if isinstance(job.placement, dict) else None
        lent_history = dict(lent_history) if isinstance(lent_history, dict) else {}
        if placement.job_id in lent_of:  # borrowed contracts' idle units: their buyers are owed a share (rating)
            lent_history[str(job.attempt + 1)] = record["lent_now"] = [list(p) for p in lent_of[placement.job_id]]
        if lent_history:  # by the attempt the lease will start, kept across requeues for late usage reports
            record["lent"] = lent_history
        if placement.job_id in staging:
            if job.placement != record | {"staging": staging[placement.job_id]}:
                deferred.append({"b_id": job.id, "placement": record | {"staging": staging[placement.job_id]}})
            continue
        if placement.start_at > now + 1.0:
            if job.placement != record | {"deferred": True}:
                deferred.append({"b_id": job.id, "placement": record | {"deferred": True}})
            continue
        check_transition(JobState(job.state), JobState.PLACED)
        _specs.pop(job.id, None)
        placed.append({"b_id": job.id, "site": placement.site, "pool": placement.pool, "placed_at": now,
                       "placement": record, "state": JobState.PLACED.value})
        events.append({"job_id": job.id, "at": now, "attempt": job.attempt, "from_state": job.state,
                       "to_state": JobState.PLACED.value, "reason": f"placed on {placement.site}/{placement.pool}"})
    jobs = JobRow.__table__
    if deferred:
        session.execute(update(jobs).where(jobs.c.id == bindparam("b_id")).values(placement=bindparam("placement")),
                        deferred)
    if placed:
        session.execute(update(jobs).where(jobs.c.id == bindparam("b_id")).values(
            state=bindparam("state"), site=bindparam("site"), pool=bindparam("pool"),
            placed_at=bindparam("placed_at"), placement=bindparam("placement")), placed)
        session.execute(insert(JobEventRow.__table__), events)
    return [p for p in plan if p.start_at <= now + 1.0 and p.job_id not in staging]


def _lend(scheduler: Scheduler, queue: list[QueuedJob], plan: list[Placement], pools: list[PoolState],
          reserved: list[reservations.Reservation], owners: reservations.OwnerPlan, now: float) -> list[Placement]:
    """Spot work the main pass left waiting may borrow the reservations' idle part (preempted when owners come)."""
    done = {p.job_id for p in plan}
    spot = [q for q in queue if q.id not in done and q.spec.service_level is ServiceLevel.SPOT]
    if not spot:
        return []
    demand = {q.id: q.spec.demand for q in queue}
    taken: dict[tuple[str, str], Capacity] = defaultdict(Capacity)
    for p in plan:
        if p.start_at <= now + 1.0:
            taken[(p.site, p.pool)] = taken[(p.site, p.pool)] + demand[p.job_id]
    lend = reservations.lendable_pools(pools, reserved, owners, taken)
    return [p for p in scheduler.plan(spot, lend, now=now) if p.start_at <= now + 1.0]


def _lent_lines(lent: list[Placement], queue: list[QueuedJob], pools: list[PoolState],
               reserved: list[reservations.Reservation], owners: reservations.OwnerPlan, lent_now: dict[str, int]
               ) -> dict[str, tuple[tuple[str, int], ...]]:
    """The contract lines each lent placement borrowed from (``reservations.attribute_lent``), of what the
    spot work already borrowing (``lent_now``) left idle."""
    specs = {q.id: q.spec for q in queue}
    by_key = {(p.pool.site, p.pool.name): p.pool for p in pools}
    return reservations.attribute_lent(
        [(p.job_id, p.site, specs[p.job_id].resource_class,
          reservations.units_of(specs[p.job_id], by_key[(p.site, p.pool)]))
         for p in lent if (p.site, p.pool) in by_key], reserved,
        {cid: n - lent_now.get(cid, 0) for cid, n in owners.room.items()})


def explain_job(session: Session, planner: GridPlanner, job: JobRow | Job, *, now: float) -> dict[str, Any]:
    """The scheduler's reasons for one job, as it would decide now (with its recorded placement, if any)."""
    placed = None
    if job.placement.get("site"):
        placed = Placement(job.id, job.placement["site"], job.placement["pool"], job.placement.get("start_at", now),
                           job.placement.get("terms", {}))
    queued = QueuedJob(id=job.id, spec=spec_from_json(job.spec), tenant=job.tenant_id, submitted_at=job.submitted_at,
                       attempt=job.attempt)
    states = pool_states(session)
    [queued] = price_queue(session, [queued], [s.pool for s in states], now=now, when=True)
    result = explain(planner.grid_scheduler(session), queued, states, now=now, placed=placed).as_dict()
    return result | {"state": job.state, "deferred": bool(job.placement.get("deferred"))}
