"""The grid scheduler: each job to a (site, pool, start time) by a documented score.

Why a score and not a rule: a consumer trades money against time, carbon and
latency, and the grid's sites differ in all four.  Hard rules come first and
no score overrides them (``hard_rule``): class, device model, device memory,
node size (``placement.rule_out``), data-sovereignty region (the site's
region), and the network latency bound from the consumer's site.

Inputs the live platform feeds (``GridModel``): sites, pools and links, and per
pool a ``PriceSignal`` (fen per standard compute unit-hour, SCU·h, for each
local hour of the day: time-of-use aware), a ``speed`` (SCU a device or core
delivers per hour relative to the reference device) and ``power_kw`` per
device (or core); per site a ``CarbonSignal`` (kg CO2 per kWh for each local
hour).  Local hour = (unix seconds / 3600 + ``utc_offset_h``) mod 24.

For job j with ``n`` units (devices, or cores on CPU pools) and reference run
time ``D`` seconds, on candidate pool p starting at ``s``:

    run_p     = D / speed_p
    start     = max(s, now + wait_p + transfer_p)      transfer: network.transfer_time_s
    finish    = start + run_p
    cost_p    = n * D/3600 * mean(price_p over [start, finish])      (SCU·h x fen)
    carbon_p  = n * power_p * run_p/3600 * mean(ci_site over [start, finish])
    latency_p = path latency consumer_site -> site (ms), 0 without a consumer

Each term is made dimensionless against the best candidate, so no constant
depends on a trace's scale::

    T_cost = cost_p / min(cost) - 1        T_carbon = carbon_p / min(carbon) - 1
    T_lat  = latency_p / min(latency) - 1  (0 when all are 0)
    T_time = (finish_p - now) / min(finish - now) - 1                  without deadline
    T_time = (finish_p - min(finish)) / (deadline - now)               with a deadline
    score  = w_cost T_cost + w_time T_time + w_carbon T_carbon + w_latency T_lat

and the lowest score wins (ties: the earlier pool in grid order).  Weights
come per job (``job_weights``), else per tenant (``tenant_weights``), else the
defaults.  With a deadline the time term is the share of the slack used, so
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

Urgent jobs (``urgency``): a deadline job whose slack, deadline - now - its
run time on its fastest candidate, is at most its margin ``max(run, 1 h)``
can no longer be deferred.  It is offered capacity before the other jobs of
its priority (under fair share: of its tier, before DRF), earliest latest
start first (EDF), and still counts toward its tenant's share.  This is
what keeps a deferral, or a queue, from turning into a miss when the
capacity of its planned hour has been taken.

Speed.  The cost, carbon and latency terms of a job starting now depend on
its candidate set, its latency origin and its run time, not on its size:
one table per (candidate set, origin, weights) holds them for run times in
25 % log steps clamped to 5 min..2 days, from per-pool cost and carbon
computed once for a window starting at the middle of the current quarter
hour (plus the engine wait, if any; the data transfer, seconds to minutes,
does not move it), reused across ``plan`` calls in that quarter hour.
Without engine waits and data transfer the time term is speed_max / speed -
1 whatever the run time, so all such jobs of a group and step rank the
candidates alike: the ranking is sorted once and each job walks it from the
first pool not yet found full for its demand (most jobs take this path).
Jobs with input data elsewhere get exact score rows, one matrix per group
for the next 16,384 jobs.  A deadline job is scored over a shortlist: the
best 8 pools by cost, carbon and latency terms at each start hour, and the
8 fastest (run time in factor-2 steps), one matrix per group and step.  The
chosen placements' terms are computed exactly, for all placements of a
``plan`` call in one pass at its end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from suanwang.domain.grid import Capacity, Link, Pool, PoolId, Site, SiteId
from suanwang.domain.job import JobSpec
from suanwang.domain.models import model_set_rule
from suanwang.domain.network import Network
from suanwang.domain.placement import Placement, PoolState, QueuedJob, priced_out, rule_out
from suanwang.domain.quantum import circuit_rule
from suanwang.domain.resources import ResourceClass
from suanwang.errors import InvalidSpec, Unplaceable

PoolKey = tuple[SiteId, PoolId]
Allow = Callable[["QueuedJob"], "np.ndarray | None"]  # per job: which grid pools it may use (bool per pool)
HOURS = 24


@dataclass(frozen=True, slots=True)
class PriceSignal:
    """Price of one SCU·h in integer fen for each local hour of the day (index 0 = 00:00-01:00)."""

    fen_per_unit_hour: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.fen_per_unit_hour) != HOURS:
            raise InvalidSpec(f"a price signal needs {HOURS} hourly prices, got {len(self.fen_per_unit_hour)}")
        if any(not isinstance(p, int) or p < 0 for p in self.fen_per_unit_hour):
            raise InvalidSpec("hourly prices must be non-negative integers (fen)")

    @classmethod
    def flat(cls, fen: int) -> PriceSignal:
        return cls((fen,) * HOURS)


@dataclass(frozen=True, slots=True)
class CarbonSignal:
    """Grid carbon intensity (kg CO2 per kWh) for each local hour of the day."""

    kg_per_kwh: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.kg_per_kwh) != HOURS or any(c < 0 for c in self.kg_per_kwh):
            raise InvalidSpec(f"a carbon signal needs {HOURS} non-negative hourly values")

    @classmethod
    def flat(cls, kg: float) -> CarbonSignal:
        return cls((kg,) * HOURS)


@dataclass(frozen=True, slots=True)
class PoolSignals:
    """What a pool costs and delivers: price per SCU·h, speed in SCU per unit-hour, power per unit."""

    price: PriceSignal
    speed: float = 1.0
    power_kw: float = 0.4

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise InvalidSpec("speed must be positive")
        if self.power_kw < 0:
            raise InvalidSpec("power_kw must not be negative")


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the score terms (see the module docstring)."""

    cost: float = 1.0
    time: float = 0.5
    carbon: float = 0.3
    latency: float = 0.1


@dataclass(frozen=True)
class GridModel:
    """Everything static the scheduler knows about the grid."""

    sites: tuple[Site, ...]
    pools: tuple[Pool, ...]
    links: tuple[Link, ...] = ()
    signals: Mapping[PoolKey, PoolSignals] = field(default_factory=dict)
    carbon: Mapping[SiteId, CarbonSignal] = field(default_factory=dict)
    utc_offset_h: float = 8.0

    def __post_init__(self) -> None:
        names = {s.name for s in self.sites}
        for pool in self.pools:
            if pool.site not in names:
                raise InvalidSpec(f"pool {pool.name} is at unknown site {pool.site}")
        if len({(p.site, p.name) for p in self.pools}) != len(self.pools):
            raise InvalidSpec("pool names must be unique within a site")

    def signals_for(self, pool: Pool) -> PoolSignals:
        return self.signals.get((pool.site, pool.name)) or PoolSignals(PriceSignal.flat(0))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One scored option for a job (used by ``explain``)."""

    site: SiteId
    pool: PoolId
    start_at: float
    score: float
    terms: dict[str, float]
    fits_now: bool


def job_units(spec: JobSpec) -> int:
    """Units a job occupies: devices when it asks for devices, else cores."""
    return spec.devices if spec.devices > 0 else max(1, spec.cores)


def _is_deferrable(spec: JobSpec) -> bool:
    return spec.deadline is not None and spec.latency_ms_max is None


def _integral(cum: np.ndarray, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Integral of periodic hourly series (rows of ``cum``) from hour 0 to hour ``x`` (vectorised)."""
    days = np.floor(x / HOURS)
    rem = x - days * HOURS
    h = np.minimum(rem.astype(np.int64), HOURS - 1)
    flat = cum.ravel()
    at = rows * (HOURS + 1) + h  # 1-D take is much faster than 2-D fancy indexing
    lo = flat.take(at)
    return days * flat.take(rows * (HOURS + 1) + HOURS) + lo + (rem - h) * (flat.take(at + 1) - lo)


_Q_LOW, _Q_HIGH = round(math.log(300.0) / math.log(1.25)), round(math.log(172800.0) / math.log(1.25))


_LOG_STEP = {1.25: math.log(1.25), 2.0: math.log(2.0)}


def _bucket(duration_s: float, step: float) -> int:
    """Run time in log steps, clamped to 5 min .. 2 days (outside, the hourly means barely change)."""
    return round(math.log(min(max(duration_s, 300.0), 172800.0)) / (_LOG_STEP.get(step) or math.log(step)))


def _cumulative(series: np.ndarray) -> np.ndarray:
    out = np.zeros((series.shape[0], HOURS + 1))
    out[:, 1:] = np.cumsum(series, axis=1)
    return out


class GridContext:
    """Static arrays over the grid's pools, built once and shared by every policy."""

    def __init__(self, grid: GridModel) -> None:
        self.grid = grid
        self.network = Network((s.name for s in grid.sites), grid.links)
        self.site_by_name = {s.name: s for s in grid.sites}
        self.pools = grid.pools
        self.index: dict[PoolKey, int] = {(p.site, p.name): i for i, p in enumerate(grid.pools)}
        sig = [grid.signals_for(p) for p in grid.pools]
        self.speed = np.array([s.speed for s in sig], dtype=float)
        self.power = np.array([s.power_kw for s in sig], dtype=float)
        self.price = np.array([s.price.fen_per_unit_hour for s in sig], dtype=float).reshape(len(sig), HOURS)
        flat = CarbonSignal.flat(0.0)
        ci = np.array([grid.carbon.get(p.site, flat).kg_per_kwh for p in grid.pools], dtype=float)
        self.ci = ci.reshape(len(sig), HOURS)
        self.price_cum = _cumulative(self.price)
        self.ci_cum = _cumulative(self.ci)
        self.both_cum = np.concatenate((self.price_cum, self.ci_cum))
        self.speed_list = self.speed.tolist()  # a plain list: scalar arithmetic without numpy overhead
        self.site_idx = np.array([self.network.index[p.site] for p in grid.pools], dtype=np.int64)
        self.has_devices = np.array([p.capacity.devices > 0 for p in grid.pools])
        self._rules: dict[tuple, np.ndarray] = {}
        nodes = [p.largest_node for p in grid.pools]
        self._arr = {
            "cls": np.array([p.resource_class.value for p in grid.pools]),
            "model": np.array([p.device_model.lower() for p in grid.pools]),
            "devmem": np.array([p.device_memory_gb for p in grid.pools], dtype=float),
            "label_region": np.array([p.labels.get("region", "") for p in grid.pools]),
            "site_region": np.array([self.site_by_name[p.site].region for p in grid.pools]),
            "node_cores": np.array([n.cores for n in nodes], dtype=float),
            "node_mem": np.array([n.memory_gb for n in nodes], dtype=float),
            "node_dev": np.array([n.devices for n in nodes], dtype=float),
        }

    def local_hours(self, t: np.ndarray | float) -> np.ndarray:
        return np.asarray(t, dtype=float) / 3600.0 + self.grid.utc_offset_h

    def hard_rule(self, spec: JobSpec, i: int) -> str | None:
        """Why pool ``i`` can never run ``spec``: placement rules, site region, latency bound."""
        pool = self.pools[i]
        why = rule_out(spec, pool)
        if why:
            return why
        site = self.site_by_name[pool.site]
        if spec.region and site.region != spec.region:
            return f"site {site.name} is in region {site.region}, job must stay in {spec.region}"
        if spec.latency_ms_max is not None:
            if spec.consumer_site not in self.network.index:
                return f"consumer site {spec.consumer_site} is not on the grid"
            lat = self.network.latency(spec.consumer_site, pool.site)
            if lat > spec.latency_ms_max:
                return f"latency {lat:g} ms from {spec.consumer_site} > bound {spec.latency_ms_max:g} ms"
        if spec.data_site and spec.data_gb > 0 and spec.data_site in self.network.index:
            if math.isinf(self.network.latency(spec.data_site, pool.site)):
                return f"no network path from data site {spec.data_site}"
        return None

    def candidates(self, spec: JobSpec) -> np.ndarray:
        """Indices of the pools that could ever run ``spec`` (vectorised ``hard_rule``); cached by shape."""
        key = _shape(spec)
        hit = self._rules.get(key)
        if hit is None:
            if len(self._rules) > 100_000:
                self._rules.clear()
            base = (*key[:6], *key[8:])  # the data site only adds reachability: the rest is shared
            mask = self._rules.get(base)
            if mask is None:
                mask = self._rules[base] = self._rule_mask(spec)
            net = self.network
            if spec.data_site and spec.data_gb > 0 and spec.data_site in net.index:
                mask = mask & np.isfinite(net.latency_ms[net.index[spec.data_site], self.site_idx])
            hit = self._rules[key] = np.flatnonzero(mask)
        return hit

    def ruled_out(self, spec: JobSpec) -> dict[int, str]:
        """Pool index -> why it can never run ``spec``, for every pool that cannot."""
        return {i: r for i in range(len(self.pools)) if (r := self.hard_rule(spec, i))}

    def _rule_mask(self, spec: JobSpec) -> np.ndarray:
        """The hard rules over every pool, but for reachability of the data site (``candidates`` adds it)."""
        a = self._arr
        ok = a["cls"] == spec.resource_class.value
        if spec.device_model:
            ok &= a["model"] == spec.device_model.lower()
        if spec.device_memory_gb_min:
            ok &= a["devmem"] >= spec.device_memory_gb_min
        if spec.region:
            ok &= ((a["label_region"] == "") | (a["label_region"] == spec.region)) & (a["site_region"] == spec.region)
        ok &= (a["node_cores"] >= spec.cores) & (a["node_mem"] >= spec.memory_gb) & (a["node_dev"] >= spec.devices)
        if spec.device_models or spec.exclude_device_models or spec.resource_class is ResourceClass.QUANTUM:
            ok &= extra_rule_mask(spec, self.pools)  # model sets, qubits and gate set (domain.models, .quantum)
        net = self.network
        if spec.latency_ms_max is not None:
            if spec.consumer_site not in net.index:
                return np.zeros(len(self.pools), dtype=bool)
            ok &= net.latency_ms[net.index[spec.consumer_site], self.site_idx] <= spec.latency_ms_max
        return ok

    def evaluate(
        self, spec: JobSpec, idx: np.ndarray, wait: np.ndarray, starts: np.ndarray, now: float, duration: float,
        transfer: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Predicted terms for candidates ``idx`` (rows) and start times ``starts`` (columns)."""
        if transfer is None:
            transfer = np.zeros(len(idx))
            if spec.data_site and spec.data_gb > 0 and spec.data_site in self.network.index:
                transfer = self.network.transfer_row(spec.data_site, spec.data_gb)[self.site_idx[idx]]
        terms = self.evaluate_many(spec, idx, wait, starts, now, np.array([duration]), transfer[None, :])
        return {k: v[0] for k, v in terms.items()}

    def evaluate_many(
        self, spec: JobSpec, idx: np.ndarray, wait: np.ndarray, starts: np.ndarray, now: float,
        durations: np.ndarray, transfer: np.ndarray, units: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """``evaluate`` for jobs with the same candidates at once (run times ``durations``, ``units`` each, else the
        spec's): arrays [job, candidate, start]."""
        n = np.full(len(durations), float(job_units(spec))) if units is None else units
        run = durations[:, None] / self.speed[idx][None, :]
        ready = now + wait[idx][None, :] + transfer
        start = np.maximum(starts[None, None, :], ready[:, :, None])
        finish = start + run[:, :, None]
        rows = np.broadcast_to(idx[None, :, None], start.shape)
        off = self.grid.utc_offset_h
        h0 = start / 3600.0 + off
        h1 = finish / 3600.0 + off
        span = np.maximum(h1 - h0, 1e-12)
        # price rows then carbon rows of one table: one integral call for both
        both = np.concatenate((rows, rows + len(self.pools)))
        diff = (_integral(self.both_cum, both, np.concatenate((h1, h1)))
                - _integral(self.both_cum, both, np.concatenate((h0, h0))))
        j = len(durations)
        cost = (n * durations / 3600.0)[:, None, None] * diff[:j] / span
        carbon = n[:, None, None] * self.power[idx][None, :, None] * (run[:, :, None] / 3600.0) * diff[j:] / span
        latency = np.zeros(len(idx))
        if spec.consumer_site in self.network.index:
            latency = self.network.latency_ms[self.network.index[spec.consumer_site], self.site_idx[idx]]
        zero = np.zeros_like(start)
        return {
            "start": start,
            "finish": finish,
            "cost_fen": cost,
            "carbon_kg": carbon,
            "latency_ms": zero + latency[None, :, None],
            "transfer_s": zero + transfer[:, :, None],
            "run_s": zero + run[:, :, None],
        }


def _shape(spec: JobSpec) -> tuple:
    return (
        spec.resource_class,
        spec.device_model.lower(),
        spec.device_memory_gb_min,
        spec.region,
        spec.consumer_site,
        spec.latency_ms_max,
        spec.data_site,
        spec.data_gb,
        spec.cores,
        spec.memory_gb,
        spec.devices,
        spec.device_models,
        spec.exclude_device_models,
        spec.qubits,
        spec.gates,
    )


def extra_rule_mask(spec: JobSpec, pools: Sequence[Pool]) -> np.ndarray:
    """Device-model sets and the quantum circuit rule over every pool (``placement.rule_out``'s own checks)."""
    out = np.ones(len(pools), dtype=bool)
    for i, pool in enumerate(pools):
        if model_set_rule(spec.device_models, spec.exclude_device_models, pool.device_model):
            out[i] = False
        elif spec.resource_class is ResourceClass.QUANTUM and circuit_rule(spec.qubits, spec.gates, pool.quantum):
            out[i] = False
    return out


def _ratio(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """x / min(x over mask) - 1, or zeros when that minimum is 0 or nothing is masked."""
    if not mask.any():
        return np.zeros_like(x)
    low = float(x[mask].min())
    if low <= 0:
        return np.zeros_like(x) if float(x[mask].max()) <= 0 else x / max(float(x[mask].max()), 1e-12)
    return x / low - 1.0


def _ratio_many(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``_ratio`` for each job (axis 0) separately."""
    axes = tuple(range(1, x.ndim))
    every = bool(mask.all())
    low = (x if every else np.where(mask, x, np.inf)).min(axis=axes, keepdims=True)
    if every and bool((low > 0).all()):
        return x / low - 1.0
    high = np.where(mask, x, -np.inf).max(axis=axes, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(low > 0, x / low - 1.0, np.where(high > 0, x / np.maximum(high, 1e-12), 0.0))
    return np.where(np.isfinite(low), out, 0.0)


def score_terms(terms: dict[str, np.ndarray], spec: JobSpec, now: float, w: Weights) -> tuple[np.ndarray, np.ndarray]:
    """Score (lower is better) and deadline-feasibility mask for evaluated candidates."""
    deadline = np.array([math.nan if spec.deadline is None else spec.deadline])
    score, ok, _ = _score_many({k: v[None] for k, v in terms.items()}, deadline, None, now, w)
    return score[0], ok[0]


def _score_many(
    terms: dict[str, np.ndarray], deadline: np.ndarray, valid: np.ndarray | None, now: float, w: Weights
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``score_terms`` for jobs of one shape at once (deadlines nan for none; ``valid``: [job, start] cells to use).

    Returns the scores, the cells they are relative to (those meeting the deadline where any does; starting now
    where none does), and per job whether any cell meets its deadline.
    """
    finish = terms["finish"]
    ok = np.isfinite(finish)
    if valid is not None:
        ok &= valid[:, None, :]
    has = ~np.isnan(deadline)
    due = np.where(has, deadline, np.inf)[:, None, None] + 1e-6
    meets = ok & (finish <= due)
    if finish.shape[2] > 1:  # a shifted start keeps a margin: its run time again, at least an hour
        margin = np.maximum(terms["run_s"][:, :, 1:], 3600.0)
        meets[:, :, 1:] &= finish[:, :, 1:] + margin <= due
    met = meets.any(axis=(1, 2))
    ok = np.where((has & met)[:, None, None], meets, ok)
    late = has & ~met
    if late.any() and finish.shape[2] > 1:  # it can no longer make it: starting now is all that counts
        ok[late, :, 1:] = False
    timed = has & (np.where(has, deadline, -np.inf) > now)
    best = np.where(ok, finish, np.inf).min(axis=(1, 2), keepdims=True)
    best = np.where(np.isfinite(best), best, now)
    slack = np.where(timed, np.where(has, deadline, now) - now, 1.0)[:, None, None]
    t_time = np.where(timed[:, None, None], (finish - best) / slack, _ratio_many(finish - now, ok))
    score = (
        w.cost * _ratio_many(terms["cost_fen"], ok)
        + w.time * t_time
        + w.carbon * _ratio_many(terms["carbon_kg"], ok)
        + w.latency * _ratio_many(np.asarray(terms["latency_ms"], dtype=float), ok)
    )
    return np.where(ok, score, np.inf), ok, has & met


class _Demand(Protocol):
    cores: int
    memory_gb: float
    devices: int


class _FreeState:
    """Free capacity during one ``plan`` call, as numpy arrays over the grid's pools."""

    def __init__(self, ctx: GridContext, pools: Sequence[PoolState]) -> None:
        n = len(ctx.pools)
        self.cores = np.zeros(n)
        self.mem = np.zeros(n)
        self.dev = np.zeros(n)
        self.wait = np.zeros(n)
        for state in pools:
            i = ctx.index.get((state.pool.site, state.pool.name))
            if i is None or not state.online:
                continue
            self.cores[i], self.mem[i], self.dev[i] = state.free.cores, state.free.memory_gb, state.free.devices
            self.wait[i] = state.wait_s
        self.any_wait = bool(self.wait.any())

    def fits(self, idx: np.ndarray, d: _Demand) -> np.ndarray:
        return (self.cores[idx] >= d.cores) & (self.mem[idx] >= d.memory_gb - 1e-9) & (self.dev[idx] >= d.devices)

    def fits_one(self, i: int, d: _Demand) -> bool:
        return self.cores[i] >= d.cores and self.mem[i] >= d.memory_gb - 1e-9 and self.dev[i] >= d.devices

    def take(self, i: int, d: _Demand) -> None:
        self.cores[i] -= d.cores
        self.mem[i] -= d.memory_gb
        self.dev[i] -= d.devices

    def give(self, i: int, d: _Demand) -> None:
        self.cores[i] += d.cores
        self.mem[i] += d.memory_gb
        self.dev[i] += d.devices


Urgency = Callable[[QueuedJob], bool]


def _order(jobs: Sequence[QueuedJob], urgent: Urgency | None = None) -> list[QueuedJob]:
    """Priority first; within a priority, urgent jobs by latest start (EDF), then submit time."""
    if urgent is None:
        return sorted(jobs, key=lambda j: (-j.spec.priority, j.submitted_at, j.id))

    def key(j: QueuedJob) -> tuple:
        s = j.spec
        if urgent(j):
            return (-s.priority, 0, (s.deadline or 0.0) - s.duration_s, j.submitted_at, j.id)
        return (-s.priority, 1, 0.0, j.submitted_at, j.id)

    return sorted(jobs, key=key)


def _gangs(jobs: Sequence[QueuedJob]) -> list[list[QueuedJob]]:
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


class _PolicyBase:
    """Shared loop: order, gangs all-or-nothing, capacity bookkeeping.  Subclasses pick a pool."""

    keep_order: bool = False

    def __init__(self, grid: GridModel | GridContext) -> None:
        self.ctx = grid if isinstance(grid, GridContext) else GridContext(grid)

    def plan(self, jobs: Sequence[QueuedJob], pools: Sequence[PoolState], *, now: float) -> list[Placement]:
        free = _FreeState(self.ctx, pools)
        self._begin(now)
        ordered = list(jobs) if self.keep_order else _order(jobs, self.urgency(now))
        self._prepare(ordered)
        gangs = {unit[0].gang: unit for unit in _gangs([j for j in ordered if j.gang])}
        out: list[Placement] = []
        for job in ordered:
            if not job.gang:
                placement = self._place_one(job, free, now)
                if placement is not None:
                    out.append(placement)
                continue
            unit = gangs[job.gang]
            if unit[0] is job and len(unit) >= job.gang_size:  # a gang waits until all its members are queued
                out.extend(self._place_unit(unit, free, now))
        self._end()
        return out

    def _place_one(self, job: QueuedJob, free: _FreeState, now: float) -> Placement | None:
        """A job outside any gang (``_place_unit`` without the all-or-nothing bookkeeping)."""
        spec = job.spec
        if spec.not_before is not None and spec.not_before > now:
            return None
        got = self._choose(job, free, now, None, self.price_mask(job))
        if got is None:
            return None
        i, placement = got
        if placement.start_at <= now:
            free.take(i, spec)
        return placement

    def _place_unit(
        self, unit: list[QueuedJob], free: _FreeState, now: float, allow: Allow | None = None
    ) -> list[Placement]:
        taken: list[tuple[int, JobSpec]] = []
        result: list[Placement] = []
        site: SiteId | None = None
        for job in unit:
            spec = job.spec
            if spec.not_before is not None and spec.not_before > now:
                break
            mask = allow(job) if allow is not None else None
            priced = self.price_mask(job)
            if priced is not None:
                mask = priced if mask is None else mask & priced
            got = self._choose(job, free, now, site if job.gang else None, mask)
            if got is None:
                break
            i, placement = got
            if placement.start_at <= now:
                free.take(i, spec)
                taken.append((i, spec))
            site = self.ctx.pools[i].site
            result.append(placement)
        if len(result) < len(unit):
            for i, d in taken:
                free.give(i, d)
            return []
        return result

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

    def _choose(
        self, job: QueuedJob, free: _FreeState, now: float, site: SiteId | None, mask: np.ndarray | None = None
    ) -> tuple[int, Placement] | None:
        raise NotImplementedError

    def _restrict(self, idx: np.ndarray, site: SiteId | None) -> np.ndarray:
        if site is None:
            return idx
        return idx[self.ctx.site_idx[idx] == self.ctx.network.index[site]]

    def _placement(self, job: QueuedJob, i: int, now: float, start: float | None = None) -> Placement:
        pool = self.ctx.pools[i]
        return Placement(job.id, pool.site, pool.name, now if start is None else start)


@dataclass(slots=True)
class _Shape:
    """What the scheduler works out once per job shape (the fields ``_shape`` reads)."""

    idx: np.ndarray  # pools that could ever run it
    group: int  # id of (candidate set, latency origin): all its static terms, ranking and shortlist depend on
    demand: int  # id of (group, cores, memory, devices): what "found full" is remembered for
    data: bool  # input data elsewhere: a transfer time per pool
    bounded: bool  # a latency bound: never deferred
    fastest: float  # the highest speed among the candidates (0 without any)
    idx_list: list[int]


@dataclass(slots=True)
class _Walk:
    """One demand's walk down its group's ranking for one run-time step (the score is the same for every job)."""

    order: list[int]  # positions into idx, best first (finite scores only)
    idx: list[int]
    static: list[float]  # static terms per position
    dead: bytearray  # per position: full for this demand in this plan call (shared with ``_choose_ranked``)
    cursor: int = 0  # order[:cursor] is all full


@dataclass(slots=True)
class _Timed:
    """A deadline job's scores over its shortlist: starting now per pool, and the best later start."""

    idx: np.ndarray
    starts: np.ndarray
    now_score: np.ndarray  # per candidate, starting now (inf: not a candidate for this deadline)
    finish_now: np.ndarray  # per candidate, finish when starting now
    later: tuple[float, int, int]  # best (score, row, column) over later starts (inf: none)
    meets: bool  # some cell meets the deadline


class GridScheduler(_PolicyBase):
    """The multi-objective grid scheduler (see the module docstring for the score)."""

    def __init__(
        self,
        grid: GridModel | GridContext,
        *,
        weights: Weights = Weights(),
        tenant_weights: Mapping[str, Weights] | None = None,
        job_weights: Mapping[str, Weights] | None = None,
        horizon_h: int = 24,
        keep_order: bool = False,
    ) -> None:
        super().__init__(grid)
        self.weights = weights
        self.tenant_weights = dict(tenant_weights or {})
        self.job_weights = dict(job_weights or {})
        self.horizon_h = horizon_h
        self.keep_order = keep_order
        self._static: dict[tuple, np.ndarray] = {}
        self._shortlist: dict[tuple, np.ndarray] = {}
        self._full: dict[tuple, Capacity] = {}
        self._transfer: dict[tuple[str, float], np.ndarray] = {}
        self._shapes: dict[tuple, _Shape] = {}
        self._ids: dict[object, int] = {}  # interned keys: candidate sets, groups, demands
        self._wkeys: dict[int, tuple[Weights, int]] = {}
        self._names = [(p.site, p.name) for p in self.ctx.pools]
        self._begin(0.0)

    def weights_for(self, job: QueuedJob) -> Weights:
        if not self.job_weights and not self.tenant_weights:
            return self.weights
        return self.job_weights.get(job.id) or self.tenant_weights.get(job.tenant) or self.weights

    def _wk(self, w: Weights) -> int:
        """A small key for a weights object (hashing a dataclass per job is slow)."""
        hit = self._wkeys.get(id(w))  # holding ``w`` keeps its id from being reused
        if hit is None:
            hit = self._wkeys[id(w)] = (w, len(self._wkeys))
        return hit[1]

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

    def _intern(self, key: object) -> int:
        hit = self._ids.get(key)
        if hit is None:
            hit = self._ids[key] = len(self._ids)
        return hit

    def _info(self, spec: JobSpec) -> _Shape:
        hit = self._by_spec.get(id(spec))  # per plan call: the same spec object is asked about several times
        if hit is not None and hit[0] is spec:
            return hit[1]
        key = _shape(spec)
        info = self._shapes.get(key)
        if info is None:
            if len(self._shapes) > 100_000:
                self._shapes.clear()
            idx = self.ctx.candidates(spec)
            net = self.ctx.network
            origin = spec.consumer_site if spec.consumer_site in net.index else ""
            group = self._intern(("group", self._intern(idx.tobytes()), origin))
            demand = self._intern(("demand", group, spec.cores, spec.memory_gb, spec.devices))
            data = bool(spec.data_site and spec.data_gb > 0 and spec.data_site in net.index)
            fastest = float(self.ctx.speed[idx].max()) if len(idx) else 0.0
            info = self._shapes[key] = _Shape(idx, group, demand, data, spec.latency_ms_max is not None, fastest,
                                              idx.tolist())
        self._by_spec[id(spec)] = (spec, info)
        return info

    def _begin(self, now: float) -> None:
        if len(self._static) > 50_000 or getattr(self, "_static_waits", False):
            self._static.clear()
        if len(self._ids) > 200_000 or len(self._wkeys) > 10_000:  # the cached tables' keys are renumbered
            self._ids.clear()
            self._wkeys.clear()
            self._shapes.clear()
            self._static.clear()
        self._static_waits = False  # set when a plan call sees engine waits: those make static terms per call
        self._shortlist.clear()
        self._full.clear()
        self._by_spec: dict[int, tuple[JobSpec, _Shape]] = {}
        self._pre: dict[str, np.ndarray] = {}
        self._timed: dict[str, _Timed] = {}
        self._ranks: dict[tuple, tuple] = {}  # per group and weights: orders; per step too: rows as lists
        self._walks: dict[tuple, _Walk] = {}
        self._dead: dict[tuple, bytearray] = {}
        self._ordered: Sequence[QueuedJob] = ()
        self._pos: dict[str, int] = {}
        self._scanned = 0
        self._wk_plain = -1
        self._pending: tuple[list, ...] = ([], [], [], [], [], [])  # terms, spec, pool, begin, transfer, score

    def _prepare(self, ordered: Sequence[QueuedJob]) -> None:
        """Remember the order so scores can be computed for many upcoming jobs at once."""
        self._ordered = ordered
        self._pos = {j.id: k for k, j in enumerate(ordered)}

    def _precompute(self, pos: int, free: _FreeState, now: float, chunk: int = 16384) -> None:
        """Scores of the next ``chunk`` jobs, one matrix per group of jobs with the same candidates and weights.

        Jobs without a deadline whose score is the same for their whole group (no data transfer, no engine
        waits) need none: they walk their group's ranking (``_choose_fast``).
        """
        if pos < self._scanned:
            return
        end = min(len(self._ordered), pos + chunk)
        self._scanned = end
        ranked: dict[tuple, list[QueuedJob]] = {}
        timed: dict[tuple, list[QueuedJob]] = {}
        for job in self._ordered[pos:end]:
            spec = job.spec
            if job.gang or (spec.deadline is None and not free.any_wait and not (spec.data_site and spec.data_gb)):
                continue  # a gang member is scored alone; most jobs walk a ranking
            info = self._info(spec)
            if len(info.idx) == 0:
                continue
            w = self.weights_for(job)
            if spec.deadline is not None:
                timed.setdefault((info.group, self._wk(w), info.bounded, _bucket(spec.duration_s, 2.0)),
                                 []).append(job)
            elif info.data or free.any_wait:
                ranked.setdefault((info.group, self._wk(w)), []).append(job)
        for js in ranked.values():
            rows = self._ranked_rows(js, self._info(js[0].spec), free, now)
            for k, job in enumerate(js):
                self._pre[job.id] = rows[k]
        for js in timed.values():
            for k in range(0, len(js), 256):  # bounded matrices: jobs x candidates x start times
                part = js[k:k + 256]
                for job, t in zip(part, self._timed_rows(part, self._info(part[0].spec), free, now), strict=True):
                    self._timed[job.id] = t

    def _ranked_rows(self, js: Sequence[QueuedJob], info: _Shape, free: _FreeState, now: float) -> np.ndarray:
        """Score rows (jobs x candidates) for starting now: static terms per run-time step, exact time term."""
        w = self.weights_for(js[0])
        idx = info.idx
        dur = np.array([j.spec.duration_s for j in js])
        qs = [_bucket(d, 1.25) for d in dur]
        first: dict[int, int] = {}
        for k, q in enumerate(qs):
            first.setdefault(q, k)
        table = np.stack([self._static_terms(js[k].spec, info, free, now, w) for k in first.values()])
        row_of = {q: r for r, q in enumerate(first)}
        statics = table[np.array([row_of[q] for q in qs])]
        t = free.wait[idx][None, :] + dur[:, None] / self.ctx.speed[idx][None, :]
        if any(self._info(j.spec).data for j in js):
            t = t + np.stack([self._transfer_s(j.spec, idx) for j in js])
        if w.time:
            statics = statics + w.time * (t / np.maximum(t.min(axis=1, keepdims=True), 1e-9) - 1.0)
        statics[~np.isfinite(t)] = np.inf
        return statics

    def _timed_rows(self, js: Sequence[QueuedJob], info: _Shape, free: _FreeState, now: float,
                    idx: np.ndarray | None = None, gang: bool = False) -> list[_Timed]:
        """Scores of deadline jobs with the same candidates, weights and run-time step over their shortlist."""
        spec = js[0].spec
        w = self.weights_for(js[0])
        short = self._short(spec, info, info.idx if idx is None else idx, free, now, w, cache=idx is None)
        starts = self.start_times(spec, now, all_hours=True) if not gang else np.array([now])
        deadline = np.array([j.spec.deadline for j in js], dtype=float)
        dur = np.array([j.spec.duration_s for j in js])
        run = dur / float(self.ctx.speed[short].max())  # a later start meets its deadline only if it keeps
        valid = starts[None, :] + run[:, None] + np.maximum(run, 3600.0)[:, None] <= deadline[:, None] + 1e-6
        valid[:, 0] = True  # its margin even on the fastest pool
        starts = starts[:int(np.flatnonzero(valid.any(axis=0))[-1]) + 1]
        valid = valid[:, :len(starts)]
        units = np.array([job_units(j.spec) for j in js], dtype=float)
        transfer = (np.stack([self._transfer_s(j.spec, short) for j in js])
                    if any(self._info(j.spec).data for j in js) else np.zeros((len(js), len(short))))
        terms = self.ctx.evaluate_many(spec, short, free.wait, starts, now, dur, transfer, units)
        score, _, met = _score_many(terms, deadline, valid, now, w)
        finish = terms["finish"][:, :, 0]
        later: list[tuple[float, int, int]] = [(math.inf, 0, 0)] * len(js)
        if len(starts) > 1:
            rest = score[:, :, 1:].reshape(len(js), -1)
            at = rest.argmin(axis=1)
            best = rest[np.arange(len(js)), at]
            s = len(starts) - 1
            later = list(zip(best.tolist(), (at // s).tolist(), (at % s + 1).tolist(), strict=True))
        return [_Timed(short, starts, score[k, :, 0], finish[k], later[k], bool(met[k])) for k in range(len(js))]

    def start_times(self, spec: JobSpec, now: float, *, all_hours: bool = False) -> np.ndarray:
        """Now, then each local hour boundary within the horizon (deferrable jobs only) before the deadline."""
        if not _is_deferrable(spec):
            return np.array([now])
        first = math.floor(now / 3600.0) * 3600.0 + 3600.0
        hours = first + 3600.0 * np.arange(self.horizon_h)
        if not all_hours:
            hours = hours[hours < (spec.deadline or now)]
        return np.concatenate(([now], hours))

    def _choose(
        self, job: QueuedJob, free: _FreeState, now: float, site: SiteId | None, mask: np.ndarray | None = None
    ) -> tuple[int, Placement] | None:
        spec = job.spec
        info = self._info(spec)
        idx = info.idx
        if len(idx) == 0:
            return None
        allowed = None  # restrictions (gang site, backfill guard) as a mask over idx; scores stay cached
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
            return None  # a no-bigger demand of this shape found no room; free capacity only shrinks
        if spec.deadline is not None:
            got = self._choose_timed(job, info, free, now, allowed)
        elif allowed is None and not info.data and not free.any_wait:
            got = self._choose_fast(job, info, free, now, w, wk)
        else:
            got = self._choose_ranked(job, info, free, now, wk, allowed)
        if got is None and allowed is None and spec.deadline is None:
            self._full[(info.demand, wk)] = spec.demand
        return got

    def _transfer_s(self, spec: JobSpec, idx: np.ndarray) -> np.ndarray:
        if not (spec.data_site and spec.data_gb > 0 and spec.data_site in self.ctx.network.index):
            return np.zeros(len(idx))
        k = (spec.data_site, spec.data_gb)
        row = self._transfer.get(k)
        if row is None:
            row = self._transfer[k] = self.ctx.network.transfer_row(spec.data_site, spec.data_gb)
        return row[self.ctx.site_idx[idx]]

    def _static_terms(self, spec: JobSpec, info: _Shape, free: _FreeState, now: float, w: Weights) -> np.ndarray:
        """w_cost T_cost + w_carbon T_carbon + w_latency T_lat for starting now, run time in 25 % log steps."""
        return self._static_table(spec, info, free, now, w)[_bucket(spec.duration_s, 1.25) - _Q_LOW]

    def _static_table(self, spec: JobSpec, info: _Shape, free: _FreeState, now: float, w: Weights) -> np.ndarray:
        """Static terms of a group for every run-time step (rows), reused within a quarter hour.

        The terms are ratios to the best candidate, so they depend on the candidate set, the latency origin and
        the run time, not on the job's size: one table serves every shape of the group, and the per-pool cost
        and carbon behind it serve every group.
        """
        k = (info.group, self._wk(w), math.floor(now / 900.0))
        hit = self._static.get(k)
        if hit is not None:
            return hit
        cost, carbon, ok = self._pool_table(spec, free, now)
        idx = info.idx
        cost, carbon, ok = cost[:, idx], carbon[:, idx], ok[:, idx]
        table = w.cost * _ratio_many(cost, ok) + w.carbon * _ratio_many(carbon, ok)
        if w.latency and spec.consumer_site in self.ctx.network.index:
            net = self.ctx.network
            latency = net.latency_ms[net.index[spec.consumer_site], self.ctx.site_idx[idx]]
            table = table + w.latency * _ratio_many(np.broadcast_to(latency, cost.shape), ok)
        self._static[k] = table
        return table

    def _pool_table(self, spec: JobSpec, free: _FreeState, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cost and carbon of one unit on every pool for every run-time step, starting now (or mid-quarter hour)."""
        if free.any_wait:
            self._static_waits = True
        k = ("pools", math.floor(now / 900.0))
        hit = self._static.get(k)
        if hit is None:
            at = now if free.any_wait else math.floor(now / 900.0) * 900.0 + 450.0
            every = np.arange(len(self.ctx.pools))
            steps = 1.25 ** np.arange(_Q_LOW, _Q_HIGH + 1, dtype=float)
            terms = self.ctx.evaluate_many(spec, every, free.wait, np.array([at]), at, steps,
                                           np.zeros((len(steps), len(every))), np.ones(len(steps)))
            hit = self._static[k] = (terms["cost_fen"][:, :, 0], terms["carbon_kg"][:, :, 0],
                                     np.isfinite(terms["finish"][:, :, 0]))
        return hit

    def _dead_for(self, info: _Shape, wk: int) -> bytearray:
        """Per demand and weights: candidates found full for that demand in this plan call."""
        dead = self._dead.get((info.demand, wk))
        if dead is None:
            dead = self._dead[(info.demand, wk)] = bytearray(len(info.idx))
        return dead

    def _choose_fast(self, job: QueuedJob, info: _Shape, free: _FreeState, now: float, w: Weights,
                     wk: int) -> tuple[int, Placement] | None:
        """The best candidate with room, walking the group's ranking (its score is the same for every job)."""
        spec = job.spec
        q = round(math.log(min(max(spec.duration_s, 300.0), 172800.0)) / _LOG_STEP[1.25])  # _bucket, inlined
        walk = self._walks.get((info.demand, wk, q))
        if walk is None:
            walk = self._walks[(info.demand, wk, q)] = self._new_walk(spec, info, free, now, w, wk, q)
        order, idx, dead = walk.order, walk.idx, walk.dead
        n = len(order)
        c = walk.cursor
        while c < n and dead[order[c]]:
            c += 1
        walk.cursor = c
        cores, mem, dev = free.cores, free.mem, free.dev
        need_c, need_m, need_d = spec.cores, spec.memory_gb - 1e-9, spec.devices
        for pos in range(c, n):
            r = order[pos]
            if dead[r]:
                continue
            i = idx[r]
            if cores[i] >= need_c and mem[i] >= need_m and dev[i] >= need_d:
                score = walk.static[r]
                if w.time:
                    d = spec.duration_s
                    score += w.time * ((d / self.ctx.speed_list[i]) / max(d / info.fastest, 1e-9) - 1.0)
                terms: dict[str, float] = {}  # ``_pending_placement`` for a start now without transfer or wait
                all_terms, specs, pools, begins, transfers, scores = self._pending
                all_terms.append(terms)
                specs.append(spec)
                pools.append(i)
                begins.append(now)
                transfers.append(0.0)
                scores.append(score)
                site, name = self._names[i]
                return i, Placement(job.id, site, name, now, terms)
            dead[r] = 1
        return None

    def _new_walk(self, spec: JobSpec, info: _Shape, free: _FreeState, now: float, w: Weights, wk: int,
                  q: int) -> _Walk:
        rows = self._ranks.get((info.group, wk, q))
        if rows is None:
            table = self._static_table(spec, info, free, now, w)
            hit = self._ranks.get((info.group, wk))
            if hit is None:  # every run-time step of the group at once
                score = table
                if w.time:  # without waits or transfers the time term is speed_max / speed - 1 for any run time
                    t = 1.0 / self.ctx.speed[info.idx]
                    score = table + w.time * (t / t.min() - 1.0)[None, :]
                hit = self._ranks[(info.group, wk)] = (np.argsort(score, axis=1, kind="stable"),
                                                       np.isfinite(score).sum(axis=1))
            order, finite = hit
            row = q - _Q_LOW
            rows = self._ranks[(info.group, wk, q)] = (order[row, :finite[row]].tolist(), table[row].tolist())
        return _Walk(rows[0], info.idx_list, rows[1], self._dead_for(info, wk))

    def _choose_ranked(
        self, job: QueuedJob, info: _Shape, free: _FreeState, now: float, wk: int, allowed: np.ndarray | None,
    ) -> tuple[int, Placement] | None:
        spec = job.spec
        idx = info.idx
        score = self._pre.pop(job.id, None)
        if score is None and job.id in self._pos:
            self._precompute(self._pos[job.id], free, now)
            score = self._pre.pop(job.id, None)
        if score is None:
            score = self._ranked_rows([job], info, free, now)[0]
        dead = np.frombuffer(self._dead_for(info, wk), dtype=bool)
        if dead.any():
            score = np.where(dead, np.inf, score)
        if allowed is not None:
            score = np.where(allowed, score, np.inf)
        for _ in range(8):
            r = int(np.argmin(score))
            if not np.isfinite(score[r]):
                return None
            i = int(idx[r])
            if free.fits_one(i, spec):
                return i, self._pending_placement(job, i, free, now, now, self._transfer_one(spec, i), float(score[r]))
            score[r] = np.inf
            dead[r] = True  # full for this demand for the rest of this plan call
        fits = free.fits(idx, spec)
        dead |= ~fits
        score = np.where(fits, score, np.inf)
        r = int(np.argmin(score))
        if not np.isfinite(score[r]):
            return None
        i = int(idx[r])
        return i, self._pending_placement(job, i, free, now, now, self._transfer_one(spec, i), float(score[r]))

    def _choose_timed(
        self, job: QueuedJob, info: _Shape, free: _FreeState, now: float, allowed: np.ndarray | None,
    ) -> tuple[int, Placement] | None:
        """A deadline job: the best (pool, start) meeting its deadline; a start now needs room now.

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
        if t is None:  # a restricted set (gang site, backfill guard) gets its own shortlist
            [t] = self._timed_rows([job], info, free, now, None if allowed is None else info.idx[allowed],
                                   gang=bool(job.gang))
        fits = free.fits(t.idx, spec)
        if t.meets:
            now_score = np.where(fits, t.now_score, np.inf)  # starting now needs room now
            r = int(np.argmin(now_score))
            score, c = float(now_score[r]), 0
            later, lr, lc = t.later  # a later start reserves nothing yet; ties go to the earlier cell
            if later < score or (later == score and lr * len(t.starts) + lc < r * len(t.starts)):
                score, r, c = later, lr, lc
            if not math.isfinite(score):
                return None
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

    def _transfer_one(self, spec: JobSpec, i: int) -> float:
        if not (spec.data_site and spec.data_gb > 0 and spec.data_site in self.ctx.network.index):
            return 0.0
        return float(self._transfer_s(spec, np.array([i]))[0])

    def _pending_placement(self, job: QueuedJob, i: int, free: _FreeState, now: float, start: float,
                           transfer: float, score: float) -> Placement:
        """The placement now; its predicted terms are filled in for all placements at once at the end (``_end``)."""
        begin = max(start, now + (float(free.wait[i]) if free.any_wait else 0.0) + transfer)
        terms: dict[str, float] = {}
        all_terms, specs, pools, begins, transfers, scores = self._pending
        all_terms.append(terms)
        specs.append(job.spec)
        pools.append(i)
        begins.append(begin)
        transfers.append(transfer)
        scores.append(score)
        pool = self.ctx.pools[i]
        return Placement(job.id, pool.site, pool.name, start, terms)

    def _end(self) -> None:
        """Exact predicted terms of this call's placements (one vectorised pass instead of one per job)."""
        self._by_spec.clear()
        (all_terms, specs, pools, begins, transfers, scores), self._pending = self._pending, ([], [], [], [], [], [])
        if not all_terms:
            return
        ctx = self.ctx
        net = ctx.network
        m = len(all_terms)
        i = np.array(pools, dtype=np.int64)
        begin = np.array(begins, dtype=float)
        dur = np.fromiter((s.duration_s for s in specs), dtype=float, count=m)
        units = np.fromiter((job_units(s) for s in specs), dtype=float, count=m)
        origin = np.fromiter((net.index.get(s.consumer_site, -1) for s in specs), dtype=np.int64, count=m)
        run = dur / ctx.speed[i]
        finish = begin + run
        off = ctx.grid.utc_offset_h
        h0, h1 = begin / 3600.0 + off, finish / 3600.0 + off
        rows = np.concatenate((i, i + len(ctx.pools)))
        diff = (_integral(ctx.both_cum, rows, np.concatenate((h1, h1)))
                - _integral(ctx.both_cum, rows, np.concatenate((h0, h0))))
        cost = units * dur / 3600.0 * diff[:m] / np.maximum(h1 - h0, 1e-12)
        carbon = units * ctx.power[i] * diff[m:]
        latency = np.where(origin >= 0, net.latency_ms[np.maximum(origin, 0), ctx.site_idx[i]], 0.0)
        for terms, spec, c, k, lat, tr, rn, f, sc in zip(all_terms, specs, cost.tolist(), carbon.tolist(),
                                                          latency.tolist(), transfers, run.tolist(), finish.tolist(),
                                                          scores, strict=True):
            terms.update(cost_fen=c, carbon_kg=k, latency_ms=lat, transfer_s=tr, run_s=rn, finish_at=f, score=sc)
            if spec.deadline is not None:
                terms["deadline_miss"] = 1.0 if f > spec.deadline + 1e-6 else 0.0

    def _short(self, spec: JobSpec, info: _Shape, idx: np.ndarray, free: _FreeState, now: float, w: Weights,
               *, cache: bool, k: int = 8) -> np.ndarray:
        """For deferrable jobs on large grids: the best ``k`` pools at each start hour, and the ``k`` fastest."""
        if len(idx) <= 4 * k:
            return idx
        q = _bucket(spec.duration_s, 2.0)
        ck = (info.group, self._wk(w), q) if cache else None
        hit = self._shortlist.get(ck) if ck is not None else None
        if hit is not None:
            return hit
        starts = now + 3600.0 * np.arange(self.horizon_h + 1)
        terms = self.ctx.evaluate(spec, idx, free.wait, starts, now, 2.0**q, transfer=np.zeros(len(idx)))
        keep = np.zeros(len(idx), dtype=bool)
        ok = np.isfinite(terms["finish"])
        static = (w.cost * _ratio(terms["cost_fen"], ok) + w.carbon * _ratio(terms["carbon_kg"], ok)
                  + w.latency * _ratio(np.asarray(terms["latency_ms"], dtype=float), ok))
        keep[np.argpartition(static, k - 1, axis=0)[:k].ravel()] = True  # best k at each start hour
        keep[np.argpartition(terms["finish"][:, 0], k - 1)[:k]] = True  # and the k fastest
        short = idx[keep]
        if ck is not None:
            self._shortlist[ck] = short
        return short

    # ---- submit-time checks and explanations ---------------------------------------------------

    def candidates(self, job: QueuedJob, pools: Sequence[PoolState], *, now: float) -> list[Candidate]:
        """Every pool that could run ``job``, scored at its best start time, best first."""
        free = _FreeState(self.ctx, pools)
        idx = self.ctx.candidates(job.spec)
        if len(idx) == 0:
            return []
        starts = self.start_times(job.spec, now)
        terms = self.ctx.evaluate(job.spec, idx, free.wait, starts, now, job.spec.duration_s)
        score, _ = score_terms(terms, job.spec, now, self.weights_for(job))
        fits = free.fits(idx, job.spec.demand)
        out = []
        for r, i in enumerate(idx):
            c = int(np.argmin(score[r]))
            flat = {k: float(v[r, c]) for k, v in terms.items()}
            flat["score"] = float(score[r, c])
            pool = self.ctx.pools[int(i)]
            out.append(
                Candidate(pool.site, pool.name, float(starts[c]), float(score[r, c]), _public_terms(flat, job.spec),
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


def _public_terms(flat: dict[str, float], spec: JobSpec) -> dict[str, float]:
    out = {
        "cost_fen": flat["cost_fen"],
        "carbon_kg": flat["carbon_kg"],
        "latency_ms": flat["latency_ms"],
        "transfer_s": flat["transfer_s"],
        "run_s": flat["run_s"],
        "finish_at": flat["finish"],
    }
    if "score" in flat:
        out["score"] = flat["score"]
    if spec.deadline is not None:
        out["deadline_miss"] = 1.0 if flat["finish"] > spec.deadline + 1e-6 else 0.0
    return out


# ---- baselines ------------------------------------------------------------------------------------


class _FirstRoom(_PolicyBase):
    """Baselines: a fixed preference order per job; the first candidate with room wins."""

    def _prefer(self, job: QueuedJob, idx: np.ndarray, now: float) -> np.ndarray:
        raise NotImplementedError

    def _choose(
        self, job: QueuedJob, free: _FreeState, now: float, site: SiteId | None, mask: np.ndarray | None = None
    ) -> tuple[int, Placement] | None:
        idx = self.ctx.candidates(job.spec)
        idx = self._restrict(idx, site)
        if mask is not None:
            idx = idx[mask[idx]]
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


SchedulerFactory = Callable[[GridContext], _PolicyBase]

POLICIES: dict[str, SchedulerFactory] = {
    "grid": lambda ctx: GridScheduler(ctx),
    "random": lambda ctx: RandomPolicy(ctx, seed=0),
    "round-robin": RoundRobin,
    "nearest-site": NearestSite,
    "cheapest-first": CheapestFirst,
}
