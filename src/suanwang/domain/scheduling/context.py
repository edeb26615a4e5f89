"""``GridContext``: static arrays over the grid's pools, the hard rules, and the predicted terms of a placement.

Hard rules come first and no score overrides them (``hard_rule``): class,
device model, device memory, node size (``placement.rule_out``),
data-sovereignty region (the site's region), and the network latency bound
from the consumer's site.  ``evaluate`` predicts, for job j with ``n`` units
(devices, or cores on CPU pools) and reference run time ``D`` seconds, on
candidate pool p starting at ``s``::

    run_p     = D / speed_p
    start     = max(s, now + wait_p + transfer_p)      transfer: network.transfer_time_s
    finish    = start + run_p
    cost_p    = n * D/3600 * mean(price_p over [start, finish])      (SCU·h x fen)
    carbon_p  = n * power_p * run_p/3600 * mean(ci_site over [start, finish])
    latency_p = path latency consumer_site -> site (ms), 0 without a consumer
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from suanwang.domain.grid import Pool
from suanwang.domain.job import JobSpec
from suanwang.domain.models import model_set_rule
from suanwang.domain.network import Network
from suanwang.domain.placement import rule_out, share_rule
from suanwang.domain.quantum import circuit_rule
from suanwang.domain.resources import ResourceClass
from suanwang.domain.scheduling.signals import HOURS, CarbonSignal, GridModel, PoolKey, job_units


def integral(cum: np.ndarray, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Integral of periodic hourly series (rows of ``cum``) from hour 0 to hour ``x`` (vectorised)."""
    days = np.floor(x / HOURS)
    rem = x - days * HOURS
    h = np.minimum(rem.astype(np.int64), HOURS - 1)
    flat = cum.ravel()
    at = rows * (HOURS + 1) + h  # 1-D take is much faster than 2-D fancy indexing
    lo = flat.take(at)
    out: np.ndarray = days * flat.take(rows * (HOURS + 1) + HOURS) + lo + (rem - h) * (flat.take(at + 1) - lo)
    return out



def cumulative(series: np.ndarray) -> np.ndarray:
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
        self.price_cum = cumulative(self.price)
        self.ci_cum = cumulative(self.ci)
        self.both_cum = np.concatenate((self.price_cum, self.ci_cum))
        self.speed_list = self.speed.tolist()  # a plain list: scalar arithmetic without numpy overhead
        self.site_idx = np.array([self.network.index[p.site] for p in grid.pools], dtype=np.int64)
        self.has_devices = np.array([p.capacity.devices > 0 for p in grid.pools])
        self._rules: dict[tuple[Any, ...], np.ndarray] = {}
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
        if (spec.data_site and spec.data_gb > 0 and spec.data_site in self.network.index
                and math.isinf(self.network.latency(spec.data_site, pool.site))):
            return f"no network path from data site {spec.data_site}"
        return None

    def candidates(self, spec: JobSpec) -> np.ndarray:
        """Indices of the pools that could ever run ``spec`` (vectorised ``hard_rule``); cached by shape."""
        key = shape_key(spec)
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
        if (spec.device_models or spec.exclude_device_models or spec.resource_class is ResourceClass.QUANTUM
                or spec.device_share):
            ok &= extra_rule_mask(spec, self.pools)  # model sets, qubits and gate set (domain.models, .quantum)
        net = self.network
        if spec.latency_ms_max is not None:
            if spec.consumer_site not in net.index:
                return np.zeros(len(self.pools), dtype=bool)
            ok &= net.latency_ms[net.index[spec.consumer_site], self.site_idx] <= spec.latency_ms_max
        out: np.ndarray = ok
        return out

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
        diff = (integral(self.both_cum, both, np.concatenate((h1, h1)))
                - integral(self.both_cum, both, np.concatenate((h0, h0))))
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



def shape_key(spec: JobSpec) -> tuple[Any, ...]:
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
        spec.device_share,
        spec.device_memory_gb,
    )


def extra_rule_mask(spec: JobSpec, pools: Sequence[Pool]) -> np.ndarray:
    """Device-model sets, the quantum circuit rule and card sharing over every pool (``placement.rule_out``'s
    own checks)."""
    quantum = spec.resource_class is ResourceClass.QUANTUM
    return np.array([
        not model_set_rule(spec.device_models, spec.exclude_device_models, pool.device_model)
        and not (quantum and circuit_rule(spec.qubits, spec.gates, pool.quantum))
        and not (spec.device_share and share_rule(spec, pool))
        for pool in pools
    ], dtype=bool).reshape(len(pools))
