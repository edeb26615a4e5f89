"""The evaluation matrix: every policy on many workloads, and where ours loses.

Why: a policy shaped on one trace can lose on the next.  The matrix replays
windows of every shipped trace through the simulator (pure: no database, no
clock) at several offered loads, in variants that stress what a grid sees,
with several seeds, and counts the (cell, metric) pairs where our policy
(``grid``) is worse than the best baseline beyond a tolerance.

Cells: ``trace x variant x load x seed``.

* traces: NASA iPSC/860 1993 (SWF, CPU), Alibaba DLRM 2025 (GPU and CPU
  instances, long-running), Azure LLM inference 2023 code and conversation
  (sub-second requests, bursty); a window of ``jobs`` consecutive jobs whose
  start the seed draws.
* variants: ``base`` as recorded; ``gpu-heavy`` every job needs cards
  (CPU jobs take ``ceil(cores/16)`` cards, at most 8) and half the tenants
  (hash of tenant and seed) are pinned to one of the grid's device models;
  ``long-running`` run times x 8; ``bursty`` the window's jobs arrive in 4
  bursts, each squeezed into the first 5 % of its quarter of the span.
* loads: 50, 70, 90, 100 % offered load (``sizing.at_load``).
* seeds: which window, synthetic deadlines for 30 % of jobs, consumer and
  data sites (``traces.with_placement_hints``).

*Halves.*  A cell is in the *tuning* half when the first byte of
BLAKE2b(cell name) is even, else *held out*; the rule depends on nothing but
the name, so no one picks the cells.  Change the policy looking at the
tuning half only, and report both.

*Losses.*  Per cell: ``deadline_misses`` is lost when ours misses more than
the best baseline; ``wait_p99_no_deadline_s`` when ours is above 1.2 x the
best baseline's.  Cost (ratio to the HiGHS bound where the cell is small
enough, ``quality.BOUND_JOBS``), carbon and the p99 wait of deadline jobs
are reported beside, not counted.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from suanwang.domain.scheduler import POLICIES, GridContext, GridModel
from suanwang.sim.engine import run_simulation
from suanwang.sim.grid_file import load_grid
from suanwang.sim.quality import cost_bound_fen, with_bound_ratio
from suanwang.sim.sizing import at_load, offered_load
from suanwang.sim.traces import Trace, load_trace, with_placement_hints

OURS = "grid"
DATA = resources.files("suanwang") / "data"
GRID = resources.files("suanwang") / "grids" / "east_data_west.yaml"
TRACES: dict[str, str] = {
    "nasa": "pwa_nasa_ipsc_1993_swf/NASA-iPSC-1993-3.1-cln.swf.gz",
    "dlrm": "alibaba_gpu_disagg_dlrm_2025/dlrm_trace_timed.csv",
    "azure-code": "azure_llm_inference_2023/AzureLLMInferenceTrace_code.csv",
    "azure-conv": "azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv",
}
VARIANTS = ("base", "gpu-heavy", "long-running", "bursty")
LOADS = (0.5, 0.7, 0.9, 1.0)
P99_TOLERANCE = 1.2
DEADLINE_FRACTION = 0.3

Progress = Callable[[int, int, str], None]  # (cells done, cells total, cell name)


@dataclass(frozen=True)
class Cell:
    trace: str
    variant: str
    load: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.trace}/{self.variant}/load{round(self.load * 100)}/seed{self.seed}"

    @property
    def half(self) -> str:
        return half_of(self.name)


def half_of(name: str) -> str:
    """``tuning`` or ``heldout``: the parity of the first byte of BLAKE2b(name)."""
    return "tuning" if hashlib.blake2b(name.encode(), digest_size=8).digest()[0] % 2 == 0 else "heldout"


@dataclass(frozen=True)
class Plan:
    """What a matrix run covers."""

    cells: tuple[Cell, ...]
    jobs: int
    bound: bool


def plan(quick: bool) -> Plan:
    """Quick (a smoke run): 3 traces x every variant at two loads, 70 % or 100 % and one of 50 % or 90 %
    (rotating, so each trace sees every load), one seed per cell rotating over 3 seeds, 40 jobs a cell, no
    bound: 24 cells.  Full: 4 traces x 4 variants x 4 loads x 3 seeds, 300 jobs a cell, the bound where
    computable."""
    traces = ("nasa", "dlrm", "azure-code") if quick else tuple(TRACES)
    cells = []
    k = 0
    for t in traces:
        for j, v in enumerate(VARIANTS):
            loads = (LOADS[j % 2], LOADS[2 + (j // 2 + j) % 2]) if quick else LOADS
            for load in loads:
                seeds = (1 + k % 3,) if quick else (1, 2, 3)
                k += 1
                cells += [Cell(t, v, load, s) for s in seeds]
    return Plan(tuple(cells), 40 if quick else 300, not quick)


@cache
def _trace(name: str) -> Trace:
    return load_trace(Path(str(DATA / TRACES[name])))


def _window(trace: Trace, jobs: int, seed: int, name: str) -> Trace:
    if len(trace) <= jobs:
        return trace
    h = int.from_bytes(hashlib.blake2b(f"{name}:{seed}".encode(), digest_size=8).digest(), "big")
    start = h % (len(trace) - jobs)
    w = trace.take(np.arange(start, start + jobs))
    t = float(w.submit_s.min())
    return replace(w, submit_s=w.submit_s - t, deadline_s=w.deadline_s - t, t0=w.t0 + t)


def variant(trace: Trace, kind: str, model: GridModel, seed: int) -> Trace:
    """The trace in one of ``VARIANTS`` (see the module docstring)."""
    if kind == "base":
        return trace
    if kind == "long-running":
        return replace(trace, duration_s=trace.duration_s * 8.0)
    if kind == "bursty":
        if len(trace) < 2:
            return trace
        span = float(trace.submit_s.max() - trace.submit_s.min()) or 1.0
        t0 = float(trace.submit_s.min())
        rel = (trace.submit_s - t0) / span
        block = np.minimum(np.floor(rel * 4), 3)
        submit = t0 + span * (block / 4 + (rel - block / 4) * 0.05)
        return replace(trace, submit_s=submit)
    if kind == "gpu-heavy":
        names = list(trace.names)
        table = {s: i for i, s in enumerate(names)}

        def code(s: str) -> int:
            if s not in table:
                table[s] = len(names)
                names.append(s)
            return table[s]

        models = sorted({p.device_model for p in model.pools if p.capacity.devices > 0 and p.device_model})
        devices = np.where(trace.devices > 0, trace.devices, np.clip(np.ceil(trace.cores / 16), 1, 8)).astype(np.int32)
        pinned = trace.device_model.copy()
        for i, t in enumerate(trace.tenant):
            h = hashlib.blake2b(f"{seed}:{trace.names[t]}".encode(), digest_size=8).digest()
            if models and h[0] % 2 == 0 and trace.names[pinned[i]] == "":
                pinned[i] = code(models[h[1] % len(models)])
        return replace(trace, devices=devices, device_model=pinned, names=tuple(names))
    raise ValueError(f"unknown variant {kind!r}")


def run_cell(cell: Cell, jobs: int, *, bound: bool, policies: Sequence[str] | None = None) -> dict[str, Any]:
    """Replay one cell with every policy; its figures, and the (cell, metric) pairs ours loses."""
    grid = load_grid(Path(str(GRID))).model
    edges = [s.name for s in grid.sites][-3:]
    tr = _window(_trace(cell.trace), jobs, cell.seed, cell.trace)
    tr = variant(tr, cell.variant, grid, cell.seed)
    tr = with_placement_hints(tr, consumer_sites=edges, data_sites=edges, data_gb=5.0,
                              deadline_fraction=DEADLINE_FRACTION, seed=cell.seed)
    model, tr, compression = at_load(grid, tr, cell.load)
    ctx = GridContext(model)
    tick = float(np.clip(np.median(tr.duration_s), 1.0, 60.0))  # plan at least once per typical job
    bound_fen = cost_bound_fen(ctx, tr) if bound else None
    rows: dict[str, dict[str, Any]] = {}
    for name in policies or list(POLICIES):
        r = run_simulation(ctx, tr, name, tick_s=tick)
        with_bound_ratio([r], bound_fen)
        s = r.summary()
        rows[name] = {k: s[k] for k in ("deadline_misses", "wait_p99_no_deadline_s", "wait_p99_deadline_s",
                                        "wait_p50_s", "cost_fen", "cost_ratio_to_bound", "carbon_kg", "refused",
                                        "never_started", "util_cards_mean", "util_cores_mean")}
    return {"cell": cell.name, "half": cell.half, "trace": cell.trace, "variant": cell.variant, "load": cell.load,
            "seed": cell.seed, "jobs": len(tr), "offered_load": round(offered_load(model, tr), 3),
            "arrivals_compressed_by": round(compression, 2), "plan_interval_s": tick,
            "bound_cost_fen": None if bound_fen is None else round(bound_fen, 1),
            "policies": rows, "losses": losses(rows)}


def losses(rows: dict[str, dict[str, Any]], ours: str = OURS) -> list[str]:
    """The metrics of one cell where ``ours`` is worse than the best baseline beyond the tolerances."""
    if ours not in rows:
        return []
    base = [v for k, v in rows.items() if k != ours]
    if not base:
        return []
    me = rows[ours]
    out = []
    if me["deadline_misses"] > min(b["deadline_misses"] for b in base):
        out.append("deadline_misses")
    best = min(b["wait_p99_no_deadline_s"] for b in base)
    if me["wait_p99_no_deadline_s"] > P99_TOLERANCE * best + 1e-9:
        out.append("wait_p99_no_deadline_s")
    return out


def run_matrix(quick: bool, *, progress: Progress | None = None, cells: Sequence[Cell] | None = None,
               jobs: int | None = None, bound: bool | None = None) -> dict[str, Any]:
    """Run the matrix; per-cell table, ``matrix_losses`` and the losses of each half.

    ``quick`` is the plan of ``plan(True)``; ``cells``, ``jobs`` and ``bound`` override it.
    """
    p = plan(quick)
    todo = tuple(cells) if cells is not None else p.cells
    n = jobs or p.jobs
    table = []
    for k, cell in enumerate(todo):
        table.append(run_cell(cell, n, bound=p.bound if bound is None else bound))
        if progress:
            progress(k + 1, len(todo), cell.name)
    by_half = {h: sum(len(c["losses"]) for c in table if c["half"] == h) for h in ("tuning", "heldout")}
    policies = sorted({p for c in table for p in c["policies"]})
    totals = {pol: _totals([c["policies"][pol] for c in table if pol in c["policies"]]) for pol in policies}
    return {"quick": quick, "jobs_per_cell": n, "cells": table, "seeds": sorted({c.seed for c in todo}),
            "policies": totals,
            "matrix_losses": by_half["tuning"] + by_half["heldout"],
            "matrix_losses_tuning": by_half["tuning"], "matrix_losses_heldout": by_half["heldout"],
            "cells_tuning": sum(1 for c in table if c["half"] == "tuning"),
            "cells_heldout": sum(1 for c in table if c["half"] == "heldout")}


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["cost_ratio_to_bound"] for r in rows if r["cost_ratio_to_bound"] is not None]
    return {"deadline_misses": sum(r["deadline_misses"] for r in rows),
            "cost_fen": sum(r["cost_fen"] for r in rows),
            "carbon_kg": round(sum(r["carbon_kg"] for r in rows), 1),
            "cost_ratio_to_bound_median": round(float(np.median(ratios)), 4) if ratios else None,
            "wait_p99_no_deadline_s_median": round(float(np.median([r["wait_p99_no_deadline_s"] for r in rows])), 1)
            if rows else 0.0,
            "finite": all(math.isfinite(r["wait_p99_no_deadline_s"]) for r in rows)}
