"""Baseline policies the grid scheduler is measured against: a fixed preference order, first pool with room."""

from __future__ import annotations

import numpy as np

from suanwang.domain.grid import SiteId
from suanwang.domain.placement import Placement, QueuedJob
from suanwang.domain.scheduling.base import FreeState, Guard, PolicyBase
from suanwang.domain.scheduling.context import GridContext
from suanwang.domain.scheduling.signals import GridModel


class _FirstRoom(PolicyBase):
    """Baselines: a fixed preference order per job; the first candidate with room wins."""

    def _prefer(self, job: QueuedJob, idx: np.ndarray, now: float) -> np.ndarray:
        raise NotImplementedError

    def _choose(
        self, job: QueuedJob, free: FreeState, now: float, site: SiteId | None, mask: np.ndarray | None = None,
        guard: Guard | None = None,
    ) -> tuple[int, Placement] | None:
        idx = self.ctx.candidates(job.spec)
        idx = self._restrict(idx, site)
        if mask is not None:
            idx = idx[mask[idx]]
        if guard is not None and len(idx):  # a baseline starts everything now: the guard rules the rest out
            allowed = guard.mask(job, idx)
            if allowed is not None:
                idx = idx[allowed]
        if len(idx) == 0:
            return None
        order = self._prefer(job, idx, now)
        ok = free.fits(order, job.spec.demand)
        if not ok.any():
            return None
        i = int(order[int(np.argmax(ok))])
        return i, self._placement(job, i, now)


class RandomPolicy(_FirstRoom):
    """Any pool that could run the job, uniformly at random (seeded)."""

    def __init__(self, grid: GridModel | GridContext, seed: int = 0) -> None:
        super().__init__(grid)
        self.rng = np.random.default_rng(seed)

    def _prefer(self, job: QueuedJob, idx: np.ndarray, now: float) -> np.ndarray:
        return self.rng.permutation(idx)


class RoundRobin(_FirstRoom):
    """Pools in turn: each job starts looking one past where the last one landed."""

    def __init__(self, grid: GridModel | GridContext) -> None:
        super().__init__(grid)
        self.next = 0

    def _prefer(self, job: QueuedJob, idx: np.ndarray, now: float) -> np.ndarray:
        k = int(np.searchsorted(idx, self.next % len(self.ctx.pools)))
        self.next += 1
        return np.roll(idx, -k)


class NearestSite(_FirstRoom):
    """Lowest latency from the consumer (else the data) site; ties in grid order."""

    def _prefer(self, job: QueuedJob, idx: np.ndarray, now: float) -> np.ndarray:
        origin = job.spec.consumer_site or job.spec.data_site
        net = self.ctx.network
        if origin not in net.index:
            return idx
        lat = net.latency_ms[net.index[origin], self.ctx.site_idx[idx]]
        return idx[np.argsort(lat, kind="stable")]


class CheapestFirst(_FirstRoom):
    """SkyPilot-like: the lowest price for the job's run starting now; no time shifting."""

    def _prefer(self, job: QueuedJob, idx: np.ndarray, now: float) -> np.ndarray:
        wait = np.zeros(len(self.ctx.pools))
        terms = self.ctx.evaluate(job.spec, idx, wait, np.array([now]), now, job.spec.duration_s)
        return idx[np.argsort(terms["cost_fen"][:, 0], kind="stable")]
