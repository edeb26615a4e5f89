"""Why a job is where it is (or still waits): pools considered, ruled out and why, the best few scores.

Consumers and operators ask "why did my job go to Zhongwei?" and "why is it
still pending?".  The answer is computed by the same code that placed it:
the hard rules (``GridContext.hard_rule``) and the score
(``GridScheduler.candidates``), so the explanation cannot drift from the
decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from suanwang.domain.placement import Placement, PoolState, QueuedJob, china_time, priced_out
from suanwang.domain.price_horizon import QUEUE_HORIZON
from suanwang.domain.scheduler import Candidate, GridScheduler


@dataclass(frozen=True, slots=True)
class Explanation:
    """The reasons behind one job's placement or wait."""

    job_id: str
    considered: tuple[str, ...]  # "site/pool" of every pool that could ever run the job
    ruled_out: dict[str, str]  # "site/pool" -> the hard rule that excludes it
    full_now: tuple[str, ...]  # considered pools without room for the job now
    best: tuple[Candidate, ...]  # the best few candidates with their score terms, best first
    placed: Placement | None = None
    # "site/pool" -> from when (Unix seconds) a pool above the job's limit now is within it (a cheaper band)
    waiting_for_price: dict[str, float] = field(default_factory=dict)
    limit_fen: int | None = None  # the job's price limit, when a pool is above it now

    @property
    def summary(self) -> str:
        if not self.considered and self.waiting_for_price:
            name, at = min(self.waiting_for_price.items(), key=lambda kv: (kv[1], kv[0]))
            return (f"job {self.job_id}: waiting for price: every pool that could run it is above its limit "
                    f"{self.limit_fen} fen now; {name} is within it from {china_time(at)} (a cheaper time-of-use "
                    f"band)")
        priced = sum(why.startswith("price ") for why in self.ruled_out.values())
        if not self.considered and priced:
            never = any("not within it at any start" in why for why in self.ruled_out.values())
            horizon = (f" and at every start in the next {QUEUE_HORIZON.total_seconds() / 3600:g} h under the price "
                       f"books in force (it waits for a cheaper book)") if never else ""
            return (f"job {self.job_id}: waiting for price: {priced} pools could run it but are above its limit "
                    f"{self.limit_fen} fen now{horizon}; {len(self.ruled_out)} ruled out")
        if not self.considered:
            return f"job {self.job_id}: no pool can ever run it ({len(self.ruled_out)} ruled out)"
        head = self.best[0] if self.best else None
        where = f"{self.placed.site}/{self.placed.pool}" if self.placed else "not placed yet"
        best = f"; best {head.site}/{head.pool} score {head.score:.3f}" if head else ""
        return (
            f"job {self.job_id}: {where}; {len(self.considered)} pools considered, "
            f"{len(self.ruled_out)} ruled out, {len(self.full_now)} full now{best}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "summary": self.summary,
            "considered": list(self.considered),
            "ruled_out": dict(self.ruled_out),
            "full_now": list(self.full_now),
            "best": [
                {"site": c.site, "pool": c.pool, "start_at": c.start_at, "score": c.score, "fits_now": c.fits_now,
                 "terms": dict(c.terms)}
                for c in self.best
            ],
            "placed": None if self.placed is None else {"site": self.placed.site, "pool": self.placed.pool,
                                                          "start_at": self.placed.start_at},
            "waiting_for_price": dict(self.waiting_for_price),
        }


def explain(
    scheduler: GridScheduler,
    job: QueuedJob,
    pools: Sequence[PoolState],
    *,
    now: float,
    top: int = 3,
    placed: Placement | None = None,
) -> Explanation:
    """Explain ``job`` against the current ``pools`` (its placement, if any, given as ``placed``)."""
    ctx = scheduler.ctx
    idx = ctx.candidates(job.spec)
    reasons = ctx.ruled_out(job.spec)
    name = [f"{p.site}/{p.name}" for p in ctx.pools]
    online = {(s.pool.site, s.pool.name) for s in pools if s.online}
    ruled = {name[i]: r for i, r in sorted(reasons.items())}
    dear = {f"{site}/{pool}": (site, pool, why) for (site, pool), why in priced_out(job).items()}
    for key, (_, _, why) in dear.items():  # the price rule: above the job's limit (its hold)
        ruled.setdefault(key, why)
    for i in idx:
        p = ctx.pools[int(i)]
        if (p.site, p.name) not in online:
            ruled[name[int(i)]] = "offline (no agent reports this pool)"
    later = job.within_limit_at or {}
    waiting = {key: later[(site, pool)] for key, (site, pool, why) in dear.items()  # only for price, online
               if ruled[key] == why and (site, pool) in later}
    cands = [c for c in scheduler.candidates(job, pools, now=now) if f"{c.site}/{c.pool}" not in ruled]
    full = tuple(f"{c.site}/{c.pool}" for c in cands if not c.fits_now)
    considered = tuple(name[int(i)] for i in idx if name[int(i)] not in ruled)
    return Explanation(job.id, considered, ruled, full, tuple(cands[:top]), placed, waiting,
                       job.spec.max_price_fen if dear else None)
