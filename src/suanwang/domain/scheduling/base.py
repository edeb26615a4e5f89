"""What every policy shares: free capacity during a pass, job order, gangs all-or-nothing, the price rule.

A *pass* is one ``plan`` call (or one ``FairScheduler`` pass): ``start_pass``,
then ``place_unit`` for each placement unit in order, then ``end_pass``.
``FairScheduler`` drives a policy through exactly these public methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from suanwang.domain.grid import SiteId
from suanwang.domain.job import JobSpec
from suanwang.domain.packing import WHOLE
from suanwang.domain.placement import Placement, PoolState, QueuedJob, priced_out
from suanwang.domain.placement import mib as placement_mib
from suanwang.domain.scheduling.context import GridContext
from suanwang.domain.scheduling.signals import GridModel


class Guard(Protocol):
    """Where a job may start now, beyond room and the hard rules (``FairScheduler``'s backfill guard).

    It filters, like room now does: a pool it refuses is skipped for this job only (another job may start
    there), and a start later than now is not guarded (it takes no capacity now).  ``latest_end`` depends
    only on the job's demand, the pool's free capacity (``FreeState.changes``) and ``version``, so a policy
    may cache it per demand and pool while those stay the same.
    """

    version: int  # changes whenever the guard's rule does (not when free capacity does)

    def latest_end(self, spec: JobSpec, i: int) -> float:
        """The latest time a job of ``spec``'s demand may end if it starts on grid pool ``i`` now (inf: any)."""
        ...

    def mask(self, job: QueuedJob, idx: np.ndarray) -> np.ndarray | None:
        """Whether ``job`` may start now on each of the grid pools ``idx``; None when it may on all."""
        ...


class Demand(Protocol):
    """A demand: what ``FreeState`` checks and books."""

    @property
    def cores(self) -> int: ...
    @property
    def memory_gb(self) -> float: ...
    @property
    def devices(self) -> int: ...


class FreeState:
    """Free capacity during one pass, as numpy arrays over the grid's pools.

    ``changes[i]`` counts the bookings on pool i (``take`` and ``give``), so what is derived from a pool's
    free capacity can be cached until it changes.

    Shared pools (``Pool.sharing``) also keep their partly used cards (``shared[i]``: card -> [milli-cards,
    device MiB]); ``dev[i]`` counts wholly free cards.  A fraction (``device_share``) goes best fit onto the
    busiest card with room for its share and memory, else opens a wholly free card; it never overcommits a
    card (``domain.packing``'s rule).  ``drain`` is the rule that keeps whole-card jobs from starving.
    """

    def __init__(self, ctx: GridContext, pools: Sequence[PoolState]) -> None:
        n = len(ctx.pools)
        self.cores = np.zeros(n)
        self.mem = np.zeros(n)
        self.dev = np.zeros(n)
        self.wait = np.zeros(n)
        self.shared: dict[int, dict[int, list[int]]] = {}
        self.draining: dict[int, set[int]] = {}  # per pool: cards no fraction may join this pass
        self.drained = False  # one whole-card job drains per pass (packing's rule)
        self.ctx = ctx
        for state in pools:
            i = ctx.index.get((state.pool.site, state.pool.name))
            if i is None or not state.online:
                continue
            self.cores[i], self.mem[i], self.dev[i] = state.free.cores, state.free.memory_gb, state.free.devices
            self.wait[i] = state.wait_s
            if state.pool.sharing.shares:
                self.shared[i] = {c: [u, m] for c, u, m in state.cards}
        self.any_wait = bool(self.wait.any())
        self.changes = [0] * n
        self.gives = 0  # how often capacity was given back (a rolled-back gang, preemption)

    def fits(self, idx: np.ndarray, d: Demand) -> np.ndarray:
        share = getattr(d, "device_share", 0)
        out: np.ndarray = ((self.cores[idx] >= d.cores) & (self.mem[idx] >= d.memory_gb - 1e-9)
                           & (self.dev[idx] >= (0 if share else d.devices)))
        if share:
            for r in np.flatnonzero(out):
                out[r] = self._card_for(int(idx[r]), share, getattr(d, "device_memory_gb", 0.0)) is not None
        return out

    def fits_one(self, i: int, d: Demand) -> bool:
        share = getattr(d, "device_share", 0)
        if share:
            return bool(self.cores[i] >= d.cores and self.mem[i] >= d.memory_gb - 1e-9
                        and self._card_for(i, share, getattr(d, "device_memory_gb", 0.0)) is not None)
        return bool(self.cores[i] >= d.cores and self.mem[i] >= d.memory_gb - 1e-9 and self.dev[i] >= d.devices)

    def take(self, i: int, d: Demand) -> int:
        """Book ``d`` on pool ``i``; a fraction returns the card it shares (-1 for anything else)."""
        self.cores[i] -= d.cores
        self.mem[i] -= d.memory_gb
        self.changes[i] += 1
        share = getattr(d, "device_share", 0)
        if not share:
            self.dev[i] -= d.devices
            return -1
        pool = self.ctx.pools[i]
        got = self._card_for(i, share, getattr(d, "device_memory_gb", 0.0))
        if got is None:
            raise AssertionError("a fraction booked where it does not fit")  # callers check fits first
        card, share_held, mib_held = got
        cards = self.shared[i]
        if card not in cards:
            self.dev[i] -= 1  # a wholly free card starts being shared
            cards[card] = [0, 0]
        cards[card][0] += share_held
        cards[card][1] += mib_held
        if cards[card][0] > WHOLE or cards[card][1] > mib(pool.device_memory_gb):
            raise AssertionError("packing would overcommit a card")  # unreachable: _card_for checked
        return card

    def give(self, i: int, d: Demand, card: int = -1) -> None:
        self.cores[i] += d.cores
        self.mem[i] += d.memory_gb
        self.changes[i] += 1
        self.gives += 1
        share = getattr(d, "device_share", 0)
        cards = self.shared.get(i)
        if share and cards is not None and card in cards:
            granted = self.ctx.pools[i].sharing.granted(share, mib(getattr(d, "device_memory_gb", 0.0)))
            s, m = granted if granted is not None else (share, 0)
            cards[card][0] -= s
            cards[card][1] -= m
            if cards[card][0] <= 0:
                del cards[card]
                self.dev[i] += 1
            return
        self.dev[i] += d.devices

    def _card_for(self, i: int, share: int, memory_gb: float) -> tuple[int, int, int] | None:
        """The card a fraction goes on (best fit: the busiest with room), and the share and MiB it is granted."""
        cards = self.shared.get(i)
        if cards is None:
            return None
        pool = self.ctx.pools[i]
        granted = pool.sharing.granted(share, mib(memory_gb))
        if granted is None:
            return None
        s, m = granted
        card_mib = mib(pool.device_memory_gb)
        drained = self.draining.get(i, ())
        best, key = None, None
        for c, (used, held) in cards.items():
            if c in drained or used + s > WHOLE or held + m > card_mib:
                continue
            k = (WHOLE - used, c)
            if key is None or k < key:
                best, key = c, k
        if best is not None:
            return best, s, m
        if self.dev[i] >= 1 and m <= card_mib:
            return next(c for c in range(len(cards) + 1) if c not in cards), s, m  # a wholly free card
        return None

    def drain(self, idx: np.ndarray, devices: int) -> int | None:
        """A whole-card job that has waited ``DRAIN_AFTER_S`` found no room: on the shared pool among ``idx``
        that frees ``devices`` cards soonest, hold its wholly free cards and stop fractions joining the least
        numbered shared ones, for the rest of the pass.  Each pass recomputes this, so the same (emptying) cards
        stay drained until the job starts; one job drains per pass.  Returns the pool drained, if any."""
        if self.drained:
            return None
        best, key = None, None
        for i in idx.tolist():
            cards = self.shared.get(i)
            if cards is None:
                continue
            need = devices - int(self.dev[i])
            if need > len(cards):
                continue  # not enough cards even when every fraction ends
            k = (need, i)  # the fewest cards to empty; stable from pass to pass (the tests' bounded delay)
            if key is None or k < key:
                best, key = i, k
        if best is None:
            return None
        self.drained = True
        cards = self.shared[best]
        need = devices - int(self.dev[best])
        self.dev[best] -= min(devices, int(self.dev[best]))  # nobody else takes the free ones this pass
        self.changes[best] += 1
        # the lowest-numbered shared cards: the same from pass to pass, and no fraction opens a new card while the
        # job's free cards are held, so the drained cards only empty (within the longest fraction's run time)
        self.draining[best] = set(sorted(cards)[:max(need, 0)])
        return int(best)


DRAIN_AFTER_S = 60.0  # a whole-card job that waited this long drains cards (domain.packing's drain rule)


def mib(gb: float) -> int:
    return placement_mib(gb)


Urgency = Callable[[QueuedJob], bool]


def priority_order(jobs: Sequence[QueuedJob], urgent: Urgency | None = None) -> list[QueuedJob]:
    """Priority first; within a priority, urgent jobs by latest start (EDF), then submit time."""
    if urgent is None:
        return sorted(jobs, key=lambda j: (-j.spec.priority, j.submitted_at, j.id))

    def key(j: QueuedJob) -> tuple[Any, ...]:
        s = j.spec
        if urgent(j):
            return (-s.priority, 0, (s.deadline or 0.0) - s.duration_s, j.submitted_at, j.id)
        return (-s.priority, 1, 0.0, j.submitted_at, j.id)

    return sorted(jobs, key=key)


def gang_units(jobs: Sequence[QueuedJob]) -> list[list[QueuedJob]]:
    """Jobs grouped into placement units: a gang's members together at its first member's position."""
    units: list[list[QueuedJob]] = []
    by_gang: dict[str, list[QueuedJob]] = {}
    for job in jobs:
        if not job.gang:
            units.append([job])
        elif job.gang in by_gang:
            by_gang[job.gang].append(job)
        else:
            by_gang[job.gang] = [job]
            units.append(by_gang[job.gang])
    return units



class PolicyBase:
    """Shared loop: order, gangs all-or-nothing, capacity bookkeeping.  Subclasses pick a pool."""

    keep_order: bool = False

    def __init__(self, grid: GridModel | GridContext) -> None:
        self.ctx = grid if isinstance(grid, GridContext) else GridContext(grid)

    def plan(self, jobs: Sequence[QueuedJob], pools: Sequence[PoolState], *, now: float) -> list[Placement]:
        free = self.start_pass(pools, now)
        ordered = list(jobs) if self.keep_order else priority_order(jobs, self.urgency(now))
        self.set_order(ordered)
        gangs = {unit[0].gang: unit for unit in gang_units([j for j in ordered if j.gang])}
        out: list[Placement] = []
        for job in ordered:
            if not job.gang:
                placement = self._place_one(job, free, now)
                if placement is not None:
                    out.append(placement)
                continue
            unit = gangs[job.gang]
            if unit[0] is job and len(unit) >= job.gang_size:  # a gang waits until all its members are queued
                out.extend(self.place_unit(unit, free, now))
        self.end_pass()
        return out

    # ---- the pass interface: ``plan`` and ``FairScheduler`` drive a policy through these ----------

    def start_pass(self, pools: Sequence[PoolState], now: float) -> FreeState:
        """A pass starts: per-pass caches reset; returns the free capacity the pass books placements against."""
        free = FreeState(self.ctx, pools)
        self._begin(now)
        return free

    def set_order(self, ordered: Sequence[QueuedJob]) -> None:
        """The order jobs will be offered capacity in this pass (lets a policy score upcoming jobs together)."""
        self._prepare(ordered)

    def end_pass(self) -> None:
        """The pass ends: every placement it returned is complete (predicted terms filled in)."""
        self._end()

    def _place_one(self, job: QueuedJob, free: FreeState, now: float) -> Placement | None:
        """A job outside any gang (``place_unit`` without the all-or-nothing bookkeeping)."""
        spec = job.spec
        if spec.not_before is not None and spec.not_before > now:
            return None
        got = self._choose(job, free, now, None, self.price_mask(job))
        if got is None:
            self._drain_for(job, free, now)
            return None
        i, placement = got
        if placement.start_at <= now:
            card = free.take(i, spec)
            if card >= 0:
                placement = replace(placement, card=card)
        return placement

    def place_unit(
        self, unit: list[QueuedJob], free: FreeState, now: float, guard: Guard | None = None
    ) -> list[Placement]:
        """One job, or a gang's members all-or-nothing, in ``unit``'s order; ``guard`` filters starts now.

        A gang goes to one site: the site its first member's choice names, and when the whole gang does not fit
        there, the next site its first member would choose with the sites tried ruled out (the gang as a whole
        picks the site, not one member's best pool), until every site that could take the first member is tried.
        """
        result, first_site = self._try_unit(unit, free, now, guard, None)
        if result or len(unit) == 1 or first_site is None:
            if not result and len(unit) == 1:
                self._drain_for(unit[0], free, now)
            return result
        tried = {first_site}
        net = self.ctx.network
        for _ in range(len(net.sites) - 1):
            mask = ~np.isin(self.ctx.site_idx, [net.index[s] for s in tried])
            result, first_site = self._try_unit(unit, free, now, guard, mask)
            if result or first_site is None:
                return result
            tried.add(first_site)
        return []

    def _try_unit(self, unit: list[QueuedJob], free: FreeState, now: float, guard: Guard | None,
                  exclude: np.ndarray | None) -> tuple[list[Placement], SiteId | None]:
        """``unit`` placed all-or-nothing, the first member among pools ``exclude`` keeps (None: all); the
        placements (empty: rolled back) and the site the first member went to (None: it found none)."""
        taken: list[tuple[int, JobSpec, int]] = []
        result: list[Placement] = []
        site: SiteId | None = None
        first: SiteId | None = None
        for job in unit:
            spec = job.spec
            if spec.not_before is not None and spec.not_before > now:
                break
            mask = self.price_mask(job)
            if exclude is not None and site is None:
                mask = exclude if mask is None else mask & exclude
            got = self._choose(job, free, now, site if job.gang else None, mask, guard)
            if got is None:
                break
            i, placement = got
            if placement.start_at <= now:
                card = free.take(i, spec)
                taken.append((i, spec, card))
                if card >= 0:
                    placement = replace(placement, card=card)
            site = self.ctx.pools[i].site
            if first is None:
                first = site
            result.append(placement)
        if len(result) < len(unit):
            for i, d, card in taken:
                free.give(i, d, card)
            return [], first
        return result, first

    def _drain_for(self, job: QueuedJob, free: FreeState, now: float) -> None:
        """The drain rule: a whole-card job that waited ``DRAIN_AFTER_S`` and found no room drains shared cards."""
        spec = job.spec
        if (free.shared and spec.devices and not spec.device_share and not free.drained
                and now - job.submitted_at >= DRAIN_AFTER_S):
            free.drain(self.ctx.candidates(spec), spec.devices)

    def price_mask(self, job: QueuedJob) -> np.ndarray | None:
        """The price rule (``placement.priced_out``) as a mask over pools; None when it rules nothing out,
        so the common case keeps the fast paths."""
        dear = priced_out(job)
        if not dear:
            return None
        mask = np.ones(len(self.ctx.pools), dtype=bool)
        for key in dear:
            i = self.ctx.index.get(key)
            if i is not None:
                mask[i] = False
        return mask

    def _begin(self, now: float) -> None:
        """A plan call starts (per-call caches)."""

    def _end(self) -> None:
        """A plan call ends: every placement it returned is complete."""

    def urgency(self, now: float) -> Urgency | None:
        """Which queued jobs go first within their priority tier (deadline-aware policies only)."""
        return None

    def _prepare(self, ordered: Sequence[QueuedJob]) -> None:
        pass

    def can_ever_run(self, spec: JobSpec) -> bool:
        """Whether any pool of the grid could ever run ``spec`` (the hard rules; cached by request shape)."""
        return len(self.ctx.candidates(spec)) > 0

    def _choose(
        self, job: QueuedJob, free: FreeState, now: float, site: SiteId | None, mask: np.ndarray | None = None,
        guard: Guard | None = None,
    ) -> tuple[int, Placement] | None:
        """The pool for ``job`` and its placement: ``mask`` (over all pools) rules pools out, ``guard`` filters
        where it may start now."""
        raise NotImplementedError

    def _restrict(self, idx: np.ndarray, site: SiteId | None) -> np.ndarray:
        if site is None:
            return idx
        out: np.ndarray = idx[self.ctx.site_idx[idx] == self.ctx.network.index[site]]
        return out

    def _placement(self, job: QueuedJob, i: int, now: float, start: float | None = None) -> Placement:
        pool = self.ctx.pools[i]
        return Placement(job.id, pool.site, pool.name, now if start is None else start)
