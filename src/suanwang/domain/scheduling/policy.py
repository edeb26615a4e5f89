"""``GridScheduler``: the policy that places each job on a (site, pool, start time) by a documented score.

Why a score and not a rule: a consumer trades money against time, carbon and
latency, and the grid's sites differ in all four.  Hard rules come first and
no score overrides them (``context.GridContext.hard_rule``); the score is
stated in ``scoring``.  Weights come per job (``job_weights``), else per
tenant (``tenant_weights``), else the defaults.

Deferral.  With a deadline the time term is the share of the slack used, so
a job that can wait (a *deferrable* job: it has a deadline and no latency
bound) moves to the valley-price or high-green hours whenever the price and
carbon saved outweigh the slack used, and never past its deadline: start
times are now and each hour boundary of the next ``horizon_h`` hours, kept
only when ``finish <= deadline`` and, for a start later than now, a margin
remains: ``finish + max(run_p, 1 h) <= deadline`` (capacity may be taken by
then; the margin leaves time to wait for it).  A deferred placement has
``start_at > now`` and takes no capacity now: the job stays queued with its
planned start (in the live platform and in the simulator alike) and every
later ``plan`` decides again, so capacity taken meanwhile or a shrinking
slack changes the decision.  A job starting now goes only to a pool with
room now; with none, it stays queued.  Where queue waits (``wait_p``) would
make the cheap pools miss a deadline, only pools that meet it are
candidates.  When no candidate can meet the deadline any more, the job
starts at the earliest finish among pools with room now (never later: that
would only add lateness) with ``terms["deadline_miss"] = 1``, or stays
queued; ``check_submit`` tells the consumer so at submit.  Gangs
(``QueuedJob.gang``) are placed on one site, all members or none.

Deferral only into idle hours.  Deferring a job moves its demand from capacity
free now to capacity later; on a backlogged pool that later capacity is what
the queue, jobs without a deadline among it, is waiting for, so there the
deferral costs their wait and can turn into a miss.  A deferrable job is
therefore deferred only when none of its candidate pools is *contended*: a
pool is contended when, in this pass or the one before, a job without a
deadline that could use it found no room (or was held back by the backfill
guard).  On a contended grid the job starts now where there is room, else
it waits in the queue like any job (and goes first once urgent).  No rule
depends on a trace: only on what the passes themselves saw.  Contention
sees only the present; ``deferral.DeferralBounds`` adds what bounds a later
burst's harm: a minimum slack of 2 run times, a forecast use of the job's
pools (busy now, or the last hour's arrivals for them) of at most 70 %, and
at most a quarter of a pool's capacity deferred onto it per pass.

Best fit among the near-best pools (``best_fit``, on by default). A job
starting now goes, of the best-scored pool with room and the next
``fast_paths.PACK_LOOK`` (8) pools with room that run it no slower (finish no
later) and score within ``fast_paths.PACK_SLACK`` (25 %) of it, to the one
that leaves room for the fewest further jobs of its demand (ties: the better
score). Why: on a busy grid the waits of large jobs are set by how many holes
their size is left, and score order alone scatters small jobs over the pools
(two 64-core jobs in one 554-core pool cost a 96-core slot; 8-core jobs beside
32-core ones cost a 2-card slot); packing them where they fit tightly keeps
whole slots free. No job runs longer for the packing; it may pay more, up to
the slack, which the matrix weighs (``bench/results/matrix_200.json``):
unbounded, packing lost one held-out cell but sent a job to a pool three times
the price of an idle one; bounded at 5 %, three cells lost a plan tick of
wait; at 25 %, one tuning and one held-out cell lose (see the issue notes). A
deadline job's choice between starting now and a later hour is weighed at the
best score now, before the packing.

Urgent jobs (``urgency``): a deadline job whose slack, deadline - now - its
run time on its fastest candidate, is at most its margin ``max(run, 1 h)``
can no longer be deferred.  It is offered capacity before the other jobs of
its priority (under fair share: of its tier, before DRF), earliest latest
start first (EDF), and still counts toward its tenant's share.  This is
what keeps a deferral, or a queue, from turning into a miss when the
capacity of its planned hour has been taken.

How it stays fast is in ``fast_paths``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from suanwang.domain.grid import SiteId
from suanwang.domain.job import JobSpec
from suanwang.domain.placement import Placement, PoolState, QueuedJob
from suanwang.domain.scheduling.base import FreeState, Guard, Urgency
from suanwang.domain.scheduling.context import GridContext
from suanwang.domain.scheduling.deferral import DeferralBounds
from suanwang.domain.scheduling.fast_paths import FastPaths, _Shape
from suanwang.domain.scheduling.scoring import (
    DEFAULT_WEIGHTS,
    Candidate,
    Weights,
    is_deferrable,
    public_terms,
    score_terms,
)
from suanwang.domain.scheduling.signals import GridModel, PoolKey
from suanwang.errors import Unplaceable


class GridScheduler(FastPaths):
    """The multi-objective grid scheduler (see the module docstring)."""

    def __init__(
        self,
        grid: GridModel | GridContext,
        *,
        weights: Weights = DEFAULT_WEIGHTS,
        tenant_weights: Mapping[str, Weights] | None = None,
        job_weights: Mapping[str, Weights] | None = None,
        horizon_h: int = 24,
        keep_order: bool = False,
        best_fit: bool = True,
    ) -> None:
        super().__init__(grid)
        self.best_fit = best_fit
        self.weights = weights
        self.tenant_weights = dict(tenant_weights or {})
        self.job_weights = dict(job_weights or {})
        self.horizon_h = horizon_h
        self.keep_order = keep_order
        self.deferral = DeferralBounds(self.ctx)

    def weights_for(self, job: QueuedJob) -> Weights:
        if not self.job_weights and not self.tenant_weights:
            return self.weights
        return self.job_weights.get(job.id) or self.tenant_weights.get(job.tenant) or self.weights

    def _begin(self, now: float) -> None:
        super()._begin(now)
        n = len(self.ctx.pools)
        last = getattr(self, "_contended_now", None)
        self._contended = last if last is not None and len(last) == n else np.zeros(n, dtype=bool)
        self._contended_now = np.zeros(n, dtype=bool)
        self._marked: set[int] = set()  # shapes whose pools are marked contended in this pass
        self._now = now
        if hasattr(self, "deferral"):
            self.deferral.start_pass(now)

    def _prepare(self, ordered: Sequence[QueuedJob]) -> None:
        super()._prepare(ordered)
        self.deferral.record(ordered, lambda spec: self._info(spec).idx, self._now)

    def _mark_contended(self, info: _Shape, idx: np.ndarray, whole: bool) -> None:
        """A job without a deadline found no room on ``idx``: deferral there would starve it."""
        if whole:
            if id(info) in self._marked:
                return
            self._marked.add(id(info))
        self._contended_now[idx] = True

    def contended(self, idx: np.ndarray) -> bool:
        """Whether any of the pools ``idx`` had a job find no room in this pass or the one before."""
        if not hasattr(self, "_contended"):
            return False
        return bool(self._contended[idx].any() or self._contended_now[idx].any())

    def urgency(self, now: float) -> Urgency:
        """A deadline job is urgent once it can no longer be deferred: slack (deadline - now - run) <= margin."""

        def urgent(job: QueuedJob) -> bool:
            spec = job.spec
            if spec.deadline is None:
                return False
            fastest = self._info(spec).fastest
            if fastest <= 0:
                return False
            run = spec.duration_s / fastest
            return spec.deadline - now - run <= max(run, 3600.0)

        return urgent
    def start_times(self, spec: JobSpec, now: float, *, all_hours: bool = False) -> np.ndarray:
        """Now, then each local hour boundary within the horizon (deferrable jobs only) before the deadline."""
        if not is_deferrable(spec):
            return np.array([now])
        first = math.floor(now / 3600.0) * 3600.0 + 3600.0
        hours = first + 3600.0 * np.arange(self.horizon_h)
        if not all_hours:
            hours = hours[hours < (spec.deadline or now)]
        return np.concatenate(([now], hours))

    def _choose(
        self, job: QueuedJob, free: FreeState, now: float, site: SiteId | None, mask: np.ndarray | None = None,
        guard: Guard | None = None,
    ) -> tuple[int, Placement] | None:
        spec = job.spec
        info = self._info(spec)
        idx = info.idx
        if len(idx) == 0:
            return None
        allowed = None  # restrictions (gang site, price rule) as a mask over idx; scores stay cached
        if site is not None:
            allowed = self.ctx.site_idx[idx] == self.ctx.network.index[site]
        if mask is not None:
            allowed = mask[idx] if allowed is None else allowed & mask[idx]
        if allowed is not None and not allowed.any():
            return None
        if self.job_weights or self.tenant_weights:
            w = self.weights_for(job)
            wk = self._wk(w)
        else:
            w, wk = self.weights, self._wk(self.weights) if self._wk_plain < 0 else self._wk_plain
            self._wk_plain = wk
        full = self._full.get((info.demand, wk))
        if full is not None and spec.cores <= full.cores and spec.memory_gb <= full.memory_gb \
                and spec.devices <= full.devices:
            if spec.deadline is None:
                self._mark_contended(info, idx, True)
            return None  # a no-bigger demand of this shape found no room; free capacity only shrinks
        if spec.deadline is not None:
            got = self._choose_timed(job, info, free, now, allowed, guard)
        elif allowed is None and not info.data and not free.any_wait and not spec.device_share:
            got = self._choose_fast(job, info, free, now, w, wk, guard)
        else:
            if guard is not None:  # the guard filters like room now: the scores stay those of every candidate
                ok = guard.mask(job, idx)
                if ok is not None:
                    allowed = ok if allowed is None else allowed & ok
            got = self._choose_ranked(job, info, free, now, wk, allowed)
        if got is None and spec.deadline is None:
            self._mark_contended(info, idx if allowed is None else idx[allowed], allowed is None)
            if allowed is None and guard is None:
                self._full[(info.demand, wk)] = spec.demand
        return got

    def _choose_timed(
        self, job: QueuedJob, info: _Shape, free: FreeState, now: float, allowed: np.ndarray | None,
        guard: Guard | None = None,
    ) -> tuple[int, Placement] | None:
        """A deadline job: the best (pool, start) meeting its deadline; a start now needs room now (and the
        guard's leave: like room now, it filters the starts now of the job's own shortlist).

        When no pool can meet the deadline any more: the earliest finish among pools with room now (a later
        start would only add lateness).
        """
        spec = job.spec
        t = None
        if allowed is None and not job.gang:
            t = self._timed.pop(job.id, None)
            if t is None and job.id in self._pos:
                self._precompute(self._pos[job.id], free, now)
                t = self._timed.pop(job.id, None)
        if t is None:  # a restricted set (gang site, price rule) gets its own shortlist
            [t] = self._timed_rows([job], info, free, now, None if allowed is None else info.idx[allowed],
                                   gang=bool(job.gang))
        fits = free.fits(t.idx, spec)
        if guard is not None:
            ok = guard.mask(job, t.idx)
            if ok is not None:
                fits &= ok
        if t.meets:
            now_score = np.where(fits, t.now_score, np.inf)  # starting now needs room now
            r = int(np.argmin(now_score))
            score, c = float(now_score[r]), 0
            later, lr, lc = t.later  # a later start reserves nothing yet; ties go to the earlier cell
            if self.contended(t.idx):
                later = math.inf  # deferral only into idle hours (module docstring)
            if later < score or (later == score and lr * len(t.starts) + lc < r * len(t.starts)):
                li = int(t.idx[lr])
                if self.deferral.may_defer(spec, spec.duration_s / info.fastest, now, info.idx, li, free):
                    score, r, c = later, lr, lc
                    self.deferral.book(spec, li)
            if not math.isfinite(score):
                return None
            if c == 0 and self.best_fit and not spec.device_share:  # the start now was weighed at its best score
                r = self._tightest(spec, t.idx, free, now_score, r, t.finish_now)
                score = float(now_score[r])
        else:
            finish = np.where(fits, t.finish_now, np.inf)
            if not np.isfinite(finish).any():
                return None
            near = finish <= finish.min() + 1e-6
            r, c = int(np.argmin(np.where(near, t.now_score, np.inf))), 0
            score = float(t.now_score[r])
        i = int(t.idx[r])
        start = float(t.starts[c]) if c > 0 else now
        return i, self._pending_placement(job, i, free, now, start, self._transfer_one(spec, i), score)

    # ---- submit-time checks and explanations ---------------------------------------------------

    def candidates(self, job: QueuedJob, pools: Sequence[PoolState], *, now: float) -> list[Candidate]:
        """Every pool that could run ``job``, scored at its best start time, best first."""
        free = FreeState(self.ctx, pools)
        idx = self.ctx.candidates(job.spec)
        if len(idx) == 0:
            return []
        starts = self.start_times(job.spec, now)
        terms = self.ctx.evaluate(job.spec, idx, free.wait, starts, now, job.spec.duration_s)
        score, _ = score_terms(terms, job.spec, now, self.weights_for(job))
        fits = free.fits(idx, job.spec)  # a fraction fits on a partly used card (FreeState packs it)
        out = []
        for r, i in enumerate(idx):
            c = int(np.argmin(score[r]))
            flat = {k: float(v[r, c]) for k, v in terms.items()}
            flat["score"] = float(score[r, c])
            pool = self.ctx.pools[int(i)]
            out.append(
                Candidate(pool.site, pool.name, float(starts[c]), float(score[r, c]), public_terms(flat, job.spec),
                          bool(fits[r]))
            )
        return sorted(out, key=lambda c: (c.score, c.start_at))

    def best_finish(self, spec: JobSpec, *, now: float) -> tuple[float, PoolKey | None]:
        """Earliest predicted finish over every pool that could run ``spec`` (ignoring load)."""
        idx = self.ctx.candidates(spec)
        if len(idx) == 0:
            return math.inf, None
        wait = np.zeros(len(self.ctx.pools))
        terms = self.ctx.evaluate(spec, idx, wait, np.array([now]), now, spec.duration_s)
        r = int(np.argmin(terms["finish"][:, 0]))
        pool = self.ctx.pools[int(idx[r])]
        return float(terms["finish"][r, 0]), (pool.site, pool.name)

    def check_submit(self, spec: JobSpec, *, now: float) -> None:
        """Raise ``Unplaceable`` when no pool could ever run ``spec`` or none can meet its deadline."""
        idx = self.ctx.candidates(spec)
        if len(idx) == 0:
            reasons = self.ctx.ruled_out(spec)
            detail = "; ".join(f"{self.ctx.pools[i].site}/{self.ctx.pools[i].name}: {r}" for i, r in reasons.items())
            raise Unplaceable(f"no pool can run this job ({detail or 'no pools'})",
                              ruled_out={f"{self.ctx.pools[i].site}/{self.ctx.pools[i].name}": r
                                         for i, r in reasons.items()})
        if spec.deadline is not None:
            finish, where = self.best_finish(spec, now=now)
            if finish > spec.deadline:
                raise Unplaceable(
                    f"no pool can meet the deadline: the earliest finish is {finish - spec.deadline:.0f} s late "
                    f"(at {where[0]}/{where[1]})" if where else "no pool can meet the deadline",
                    earliest_finish=finish,
                    deadline=spec.deadline,
                )
