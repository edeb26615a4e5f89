"""When a deadline job may be deferred for price or carbon: three bounds on top of the contention rule.

Why: a deferred job takes no capacity now but lands on its pool later, where a burst of arrivals may want
the same capacity; the contention rule (``policy``) only sees the present.  These bounds keep deferral to
what a grid can absorb without foreseeing a trace, and each depends only on what the scheduler itself
saw, so the platform and the simulator decide alike:

* **slack** — never defer a job whose slack (deadline - now - its fastest run time) is below
  ``MIN_SLACK_RUNS`` x its run time: a deferral leaves at least that much room to wait for capacity;
* **forecast** — never defer onto pools whose expected use over the deferral window,
  ``max(busy share now, offered load of the jobs that arrived for them in the last hour)``, is above
  ``UTIL_BOUND``: a busy or filling class of pools has no idle hours to defer into;
* **cap** — the deferred work one pass plans onto a pool is at most ``SHARE`` of its capacity (cards for a
  device pool, cores for a CPU pool), so a burst at the planned hour still finds most of the pool.

The constants are chosen a priori (round numbers), not fitted to any trace.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from suanwang.domain.job import JobSpec
from suanwang.domain.placement import QueuedJob
from suanwang.domain.scheduling.base import FreeState
from suanwang.domain.scheduling.context import GridContext

MIN_SLACK_RUNS = 2.0
UTIL_BOUND = 0.7
SHARE = 0.25
WINDOW_S = 3600.0
BUCKET_S = 600.0

IdxOf = Callable[[JobSpec], np.ndarray]  # a job's candidate pools (the policy's cached shape lookup)


class DeferralBounds:
    """Arrivals seen per pool (bucketed by submit time) and the deferred work planned in the current pass."""

    def __init__(self, ctx: GridContext) -> None:
        caps = [p.capacity for p in ctx.pools]
        self.device_pool = np.array([c.devices > 0 for c in caps], dtype=bool)
        self.capacity = np.array([c.devices if c.devices > 0 else c.cores for c in caps], dtype=float)
        self._buckets: dict[int, np.ndarray] = {}  # bucket -> per-pool arrived work (units x seconds)
        self._ids: dict[int, set[str]] = {}  # bucket -> ids counted in it
        self._seen: set[str] = set()
        self.deferred = np.zeros(len(caps))

    def units(self, spec: JobSpec, idx: np.ndarray) -> np.ndarray:
        """What ``spec`` takes of each pool in ``idx``, in the pool's unit (cards or cores)."""
        out: np.ndarray = np.where(self.device_pool[idx], float(spec.devices), float(spec.cores))
        return out

    def start_pass(self, now: float) -> None:
        self.deferred[:] = 0.0
        oldest = math.floor((now - WINDOW_S) / BUCKET_S)
        for b in [b for b in self._buckets if b < oldest]:
            del self._buckets[b]
            self._seen -= self._ids.pop(b, set())

    def record(self, jobs: Sequence[QueuedJob], idx_of: IdxOf, now: float) -> None:
        """Count the work of jobs submitted within the window and not yet counted, spread over their pools."""
        since = now - WINDOW_S
        grouped: dict[tuple[int, int], tuple[np.ndarray, float, float]] = {}
        for job in jobs:
            if job.submitted_at < since or job.id in self._seen:
                continue
            idx = idx_of(job.spec)
            if len(idx) == 0:
                continue
            b = math.floor(job.submitted_at / BUCKET_S)
            self._seen.add(job.id)
            self._ids.setdefault(b, set()).add(job.id)
            key = (b, id(idx))
            spec = job.spec
            _, dev, cores = grouped.get(key, (idx, 0.0, 0.0))
            grouped[key] = (idx, dev + spec.devices * spec.duration_s, cores + spec.cores * spec.duration_s)
        n = len(self.capacity)
        for (b, _), (idx, dev, cores) in grouped.items():
            arr = self._buckets.get(b)
            if arr is None:
                arr = self._buckets[b] = np.zeros(n)
            arr[idx] += np.where(self.device_pool[idx], dev, cores) / len(idx)

    def forecast(self, idx: np.ndarray, free: FreeState) -> float:
        """Expected use of pools ``idx`` over the deferral window (module docstring)."""
        cap = float(self.capacity[idx].sum())
        if cap <= 0:
            return math.inf
        freeu = np.where(self.device_pool[idx], free.dev[idx], free.cores[idx])
        busy = max(0.0, cap - float(np.minimum(freeu, self.capacity[idx]).sum())) / cap
        arrived = sum(float(a[idx].sum()) for a in self._buckets.values())
        return max(busy, arrived / WINDOW_S / cap)

    def may_defer(self, spec: JobSpec, run_s: float, now: float, idx: np.ndarray, i: int,
                  free: FreeState) -> bool:
        """All three bounds for deferring ``spec`` onto pool ``i`` (one of its candidates ``idx``)."""
        if spec.deadline is None or spec.deadline - now - run_s < MIN_SLACK_RUNS * run_s:
            return False
        u = float(self.units(spec, np.array([i]))[0])
        if self.deferred[i] + u > SHARE * self.capacity[i]:
            return False
        return self.forecast(idx, free) <= UTIL_BOUND

    def book(self, spec: JobSpec, i: int) -> None:
        self.deferred[i] += float(self.units(spec, np.array([i]))[0])

