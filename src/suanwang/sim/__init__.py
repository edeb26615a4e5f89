"""Simulation: replay workloads against a described grid through the live scheduler code."""

from suanwang.domain.scheduler import POLICIES
from suanwang.sim.engine import SimClock, SimResult, run_simulation
from suanwang.sim.grid_file import GridFile, load_grid, parse_grid
from suanwang.sim.report import write_report
from suanwang.sim.traces import (
    Trace,
    load_alibaba_dlrm,
    load_azure_llm,
    load_csv,
    load_jsonl,
    load_swf,
    load_trace,
    with_placement_hints,
)

__all__ = [
    "POLICIES",
    "GridFile",
    "SimClock",
    "SimResult",
    "Trace",
    "load_alibaba_dlrm",
    "load_azure_llm",
    "load_csv",
    "load_grid",
    "load_jsonl",
    "load_swf",
    "load_trace",
    "parse_grid",
    "run_simulation",
    "with_placement_hints",
    "write_report",
]
