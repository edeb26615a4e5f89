"""Workload traces: real logs and a generic CSV format, as one compact columnar ``Trace``.

A trace holds one row per job in numpy columns (a million jobs take tens of
MB); ``Trace.spec(i)`` builds the ``JobSpec`` only when the simulator submits
the job.  Times in a trace are seconds from its start; ``t0`` (Unix seconds)
anchors them so time-of-use hours and carbon hours mean something (default:
2024-01-01 00:00 China time).

Generic format, CSV (header row required; one job per line) or JSON Lines
(``*.jsonl``: one object per line with the same keys; see docs/traces.md)::

    submit_s      required  seconds from trace start (>= 0)
    duration_s    required  run time on the reference device (> 0)
    cores         required  CPU cores (>= 0)
    devices       optional  accelerators (default 0)
    device_model  optional  "" = any
    memory_gb     optional  default 1
    tenant        optional  default "default"
    data_site     optional  where the input data is
    data_gb       optional  input size, default 0
    deadline_s    optional  seconds from trace start; empty = none
    consumer_site optional  where requests come from
    latency_ms_max optional latency bound from consumer_site; empty = none
    region        optional  data-sovereignty region
    service_level optional  guaranteed | standard | spot (default standard)
    priority      optional  integer, default 0

Missing required columns, or a bad value, raise ``InvalidSpec`` naming the
column and the line.

Real traces (none states a deadline, a data site or a consumer; where these are
needed they are added by ``with_placement_hints`` from a seed, documented as
synthetic):

* ``load_swf``: Standard Workload Format (Parallel Workloads Archive), e.g.
  NASA Ames iPSC/860 1993: CPU jobs, processors -> cores, user -> tenant.
* ``load_alibaba_dlrm``: Alibaba GPU-disaggregated DLRM inference (2025):
  instances with creation and deletion times; HN rows -> GPU jobs, CN rows ->
  CPU jobs.
* ``load_azure_llm``: Azure LLM inference 2023: one request per job, one
  device; service time modelled as ``context/prefill_tps + generated*tpot``
  on the reference device (defaults 8,000 tokens/s prefill, 25 ms per
  output token: an A100-class assumption, not a measurement).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from suanwang.domain.job import JobSpec, parse_devices
from suanwang.domain.placement import QueuedJob
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.errors import InvalidSpec

T0_DEFAULT = 1704038400.0  # 2024-01-01 00:00 UTC+8
_COMMAND = ("run",)


@dataclass(frozen=True)
class Trace:
    """Columns of a workload; ``codes`` index into the ``names`` string table."""

    name: str
    submit_s: np.ndarray
    duration_s: np.ndarray
    cores: np.ndarray
    devices: np.ndarray
    memory_gb: np.ndarray
    data_gb: np.ndarray
    deadline_s: np.ndarray  # nan = none
    latency_ms_max: np.ndarray  # nan = none
    priority: np.ndarray
    # string columns as codes into ``names``
    tenant: np.ndarray
    device_model: np.ndarray
    data_site: np.ndarray
    consumer_site: np.ndarray
    region: np.ndarray
    service_level: np.ndarray
    names: tuple[str, ...]
    t0: float = T0_DEFAULT

    def __len__(self) -> int:
        return len(self.submit_s)

    def spec(self, i: int) -> JobSpec:
        n = self.names
        devices, share = parse_devices(float(self.devices[i]))
        deadline = float(self.deadline_s[i])
        lat = float(self.latency_ms_max[i])
        consumer = n[self.consumer_site[i]]
        return JobSpec(
            command=_COMMAND,
            resource_class=ResourceClass.INTELLIGENT if devices > 0 else ResourceClass.GENERAL,
            device_model=n[self.device_model[i]],
            devices=devices,
            device_share=share,
            cores=int(self.cores[i]),
            memory_gb=float(self.memory_gb[i]),
            duration_s=float(self.duration_s[i]),
            data_site=n[self.data_site[i]],
            data_gb=float(self.data_gb[i]),
            deadline=None if math.isnan(deadline) else self.t0 + deadline,
            service_level=ServiceLevel(n[self.service_level[i]]),
            region=n[self.region[i]],
            consumer_site=consumer,
            latency_ms_max=None if math.isnan(lat) or not consumer else lat,
            priority=int(self.priority[i]),
            name=f"{self.name}-{i}",
        )

    def job(self, i: int, attempt: int = 0) -> QueuedJob:
        return QueuedJob(f"j{i}", self.spec(i), self.names[self.tenant[i]], self.t0 + float(self.submit_s[i]), attempt)

    def jobs(self) -> Iterator[QueuedJob]:
        for i in range(len(self)):
            yield self.job(i)

    def head(self, n: int) -> Trace:
        return self.take(np.arange(min(n, len(self))))

    def take(self, rows: np.ndarray) -> Trace:
        cols = {k: getattr(self, k)[rows] for k in _COLUMNS}
        return replace(self, **cols)

    def window(self, start_s: float, end_s: float) -> Trace:
        """Jobs submitted in [start_s, end_s), re-based to start at 0."""
        rows = np.flatnonzero((self.submit_s >= start_s) & (self.submit_s < end_s))
        t = self.take(rows)
        deadline = t.deadline_s - start_s
        return replace(t, submit_s=t.submit_s - start_s, deadline_s=deadline, t0=self.t0 + start_s)


_COLUMNS = ("submit_s", "duration_s", "cores", "devices", "memory_gb", "data_gb", "deadline_s", "latency_ms_max",
            "priority", "tenant", "device_model", "data_site", "consumer_site", "region", "service_level")


class _Builder:
    """Accumulates rows and interns strings."""

    def __init__(self) -> None:
        self.rows: dict[str, list] = {k: [] for k in _COLUMNS}
        self.table: dict[str, int] = {"": 0}

    def code(self, s: str) -> int:
        return self.table.setdefault(s, len(self.table))

    def add(self, *, submit_s: float, duration_s: float, cores: int, devices: float = 0, memory_gb: float = 1.0,
            data_gb: float = 0.0, deadline_s: float = math.nan, latency_ms_max: float = math.nan,
            priority: int = 0, tenant: str = "default", device_model: str = "", data_site: str = "",
            consumer_site: str = "", region: str = "", service_level: str = "standard") -> None:
        r = self.rows
        for k, v in (("submit_s", submit_s), ("duration_s", duration_s), ("cores", cores), ("devices", devices),
                     ("memory_gb", memory_gb), ("data_gb", data_gb), ("deadline_s", deadline_s),
                     ("latency_ms_max", latency_ms_max), ("priority", priority)):
            r[k].append(v)
        for k, name in (("tenant", tenant), ("device_model", device_model), ("data_site", data_site),
                        ("consumer_site", consumer_site), ("region", region), ("service_level", service_level)):
            r[k].append(self.code(name))

    def build(self, name: str, t0: float = T0_DEFAULT) -> Trace:
        r = self.rows
        f32 = {"duration_s": np.float64, "submit_s": np.float64, "deadline_s": np.float64}
        cols = {}
        for k in _COLUMNS:
            if k == "devices":  # whole cards, or a fraction of one card (0.25)
                cols[k] = np.asarray(r[k], dtype=np.float64)
            elif k in ("cores", "priority", "tenant", "device_model", "data_site", "consumer_site", "region",
                     "service_level"):
                cols[k] = np.asarray(r[k], dtype=np.int32)
            else:
                cols[k] = np.asarray(r[k], dtype=f32.get(k, np.float32))
        order = np.argsort(cols["submit_s"], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        names = tuple(sorted(self.table, key=self.table.__getitem__))
        return Trace(name=name, names=names, t0=t0, **cols)


# ---- generic CSV ---------------------------------------------------------------------------------

REQUIRED = ("submit_s", "duration_s", "cores")
MAX_VALUE = 1e12  # no field of a job is larger: about 31,700 years in seconds
_NUMERIC = {"submit_s", "duration_s", "cores", "devices", "memory_gb", "data_gb", "deadline_s", "latency_ms_max",
            "priority"}
_TEXT = {"tenant", "device_model", "data_site", "consumer_site", "region", "service_level"}


def load_csv(path: str | Path, *, t0: float = T0_DEFAULT) -> Trace:
    """Read the generic CSV trace format (see the module docstring)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InvalidSpec(f"{path}:1: missing required column '{missing[0]}'", column=missing[0], line=1)
        b = _Builder()
        for lineno, row in enumerate(reader, start=2):
            b.add(**_csv_row(path, lineno, row))
    return b.build(path.stem, t0)


def load_jsonl(path: str | Path, *, t0: float = T0_DEFAULT) -> Trace:
    """Read the generic format as JSON Lines: one object per line, the CSV's columns as keys."""
    path = Path(path)
    b = _Builder()
    with path.open(encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise InvalidSpec(f"{path}:{lineno}: not JSON: {exc}", line=lineno) from None
            if not isinstance(obj, dict):
                raise InvalidSpec(f"{path}:{lineno}: a line must be a JSON object", line=lineno)
            missing = [c for c in REQUIRED if c not in obj]
            if missing:
                raise InvalidSpec(f"{path}:{lineno}: missing required key '{missing[0]}'", column=missing[0],
                                  line=lineno)
            row: dict[str | None, str | None] = {}
            for k, v in obj.items():
                if isinstance(v, (dict, list, bool)):
                    raise InvalidSpec(f"{path}:{lineno}: key '{k}' must be a number or a string", column=str(k),
                                      line=lineno)
                row[str(k)] = "" if v is None else str(v)
            b.add(**_csv_row(path, lineno, row))
    return b.build(path.stem, t0)


def _csv_row(path: Path, line: int, row: Mapping[str | None, str | None]) -> dict[str, Any]:
    """The keyword arguments of ``_Builder.add`` (numbers checked, text as given)."""
    out: dict[str, Any] = {}
    for col, raw in row.items():
        if col is None:
            raise InvalidSpec(f"{path}:{line}: more values than columns", line=line)
        raw = (raw or "").strip()
        if col in _NUMERIC:
            if raw == "":
                if col in REQUIRED:
                    raise InvalidSpec(f"{path}:{line}: column '{col}' is empty", column=col, line=line)
                continue
            try:
                v = float(raw)
            except ValueError:
                raise InvalidSpec(f"{path}:{line}: column '{col}' is not a number: {raw!r}", column=col,
                                  line=line) from None
            if not math.isfinite(v) or abs(v) > MAX_VALUE:
                raise InvalidSpec(f"{path}:{line}: column '{col}' out of range: {raw}", column=col, line=line)
            if col == "devices" and 0 < v < 1:  # a fraction of one card, in thousandths
                try:
                    parse_devices(v)
                except InvalidSpec as exc:
                    raise InvalidSpec(f"{path}:{line}: column 'devices': {exc}", column=col, line=line) from None
            elif col in ("cores", "devices", "priority"):
                if v != int(v):
                    raise InvalidSpec(f"{path}:{line}: column '{col}' must be a whole number", column=col, line=line)
                v = int(v)
            if (col != "priority" and v < 0) or (col == "duration_s" and v <= 0):
                raise InvalidSpec(f"{path}:{line}: column '{col}' out of range: {raw}", column=col, line=line)
            out[col] = v
        elif col in _TEXT and raw:
            if col == "service_level" and raw not in {s.value for s in ServiceLevel}:
                raise InvalidSpec(f"{path}:{line}: column 'service_level' must be guaranteed, standard or spot",
                                  column=col, line=line)
            out[col] = raw
    if out.get("cores", 0) == 0 and out.get("devices", 0) == 0:
        raise InvalidSpec(f"{path}:{line}: a job needs cores or devices", column="cores", line=line)
    return out


# ---- real traces ----------------------------------------------------------------------------------


def load_swf(path: str | Path, *, limit: int | None = None, t0: float = T0_DEFAULT) -> Trace:
    """Standard Workload Format: CPU jobs; allocated (else requested) processors -> cores."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    b = _Builder()
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:  # type: ignore[operator]
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.lstrip().startswith(";"):
                continue
            f = line.split()
            if len(f) < 18:
                raise InvalidSpec(f"{path}:{lineno}: SWF needs 18 fields, found {len(f)}", line=lineno)
            submit, run, procs, req = float(f[1]), float(f[3]), int(f[4]), int(f[7])
            cores = procs if procs > 0 else req
            if run <= 0 or cores <= 0:
                continue
            mem_kb = float(f[6])
            mem = max(1.0, mem_kb * cores / 1024 / 1024) if mem_kb > 0 else float(cores)
            b.add(submit_s=submit, duration_s=run, cores=cores, memory_gb=mem, tenant=f"user{f[11]}",
                  priority=1 if f[14] == "0" else 0)
            if limit is not None and len(b.rows["submit_s"]) >= limit:
                break
    return b.build(path.name.split(".")[0], t0)


def load_alibaba_dlrm(path: str | Path, *, limit: int | None = None, t0: float = T0_DEFAULT) -> Trace:
    """Alibaba DLRM inference instances with both creation and deletion times."""
    path = Path(path)
    b = _Builder()
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row["creation_time"] or not row["deletion_time"]:
                continue
            start, end = float(row["creation_time"]), float(row["deletion_time"])
            if end <= start:
                continue
            gpus = int(float(row["gpu_request"] or 0))
            b.add(submit_s=start, duration_s=end - start, cores=max(1, int(float(row["cpu_request"] or 1))),
                  devices=gpus, memory_gb=float(row["memory_request"] or 1), tenant=row["app_name"],
                  service_level="guaranteed" if row["role"] == "HN" else "standard")
            if limit is not None and len(b.rows["submit_s"]) >= limit:
                break
    return b.build("alibaba_dlrm", t0)


def load_azure_llm(path: str | Path, *, limit: int | None = None, prefill_tps: float = 8000.0,
                   tpot_s: float = 0.025, t0: float = T0_DEFAULT) -> Trace:
    """Azure LLM inference requests as one-device jobs (service-time model in the module docstring)."""
    path = Path(path)
    b = _Builder()
    first: datetime | None = None
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            ts = datetime.fromisoformat(row["TIMESTAMP"][:26])
            first = first or ts
            ctx, gen = int(row["ContextTokens"]), int(row["GeneratedTokens"])
            b.add(submit_s=(ts - first).total_seconds(), duration_s=max(0.01, ctx / prefill_tps + gen * tpot_s),
                  cores=4, devices=1, memory_gb=16.0, tenant=path.stem.rsplit("_", 1)[-1],
                  service_level="standard")
            if limit is not None and len(b.rows["submit_s"]) >= limit:
                break
    return b.build(path.stem, t0)


def load_trace(path: str | Path, *, limit: int | None = None, t0: float = T0_DEFAULT) -> Trace:
    """Pick the loader by file name: ``*.swf[.gz]`` SWF, ``AzureLLMInference*`` Azure, ``*dlrm*`` Alibaba, else CSV."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".swf", ".swf.gz")):
        return load_swf(path, limit=limit, t0=t0)
    if name.endswith((".jsonl", ".ndjson")):
        trace = load_jsonl(path, t0=t0)
        return trace if limit is None else trace.head(limit)
    if name.startswith("azurellminference"):
        return load_azure_llm(path, limit=limit, t0=t0)
    if "dlrm" in name:
        return load_alibaba_dlrm(path, limit=limit, t0=t0)
    trace = load_csv(path, t0=t0)
    return trace if limit is None else trace.head(limit)


def _pick(key: str, options: Sequence[str], salt: str) -> str:
    h = int.from_bytes(hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest(), "big")
    return options[h % len(options)]


def with_placement_hints(
    trace: Trace,
    *,
    consumer_sites: Sequence[str] = (),
    data_sites: Sequence[str] = (),
    data_gb: float = 0.0,
    deadline_fraction: float = 0.0,
    deadline_slack: tuple[float, float] = (1.2, 4.0),
    deadline_pad_h: tuple[float, float] = (0.0, 12.0),
    latency_ms_max: float | None = None,
    spot_fraction: float = 0.0,
    seed: int = 0,
) -> Trace:
    """Add what real traces lack, from a seed (synthetic, documented in results):

    each tenant gets a consumer and a data site (hash of tenant and seed)
    where the trace states none; a ``deadline_fraction`` of jobs without a
    stated deadline gets ``deadline = submit + slack * duration
    + pad`` with slack and pad drawn uniformly from ``deadline_slack`` and
    ``deadline_pad_h`` (hours): some deadlines leave room to shift into valley
    hours, some do not, and some rule out slow devices; ``spot_fraction`` of
    jobs run as spot.
    """
    rng = np.random.default_rng(seed)
    names = list(trace.names)
    table = {s: i for i, s in enumerate(names)}

    def code(s: str) -> int:
        if s not in table:
            table[s] = len(names)
            names.append(s)
        return table[s]

    tenants = [trace.names[c] for c in trace.tenant]
    consumer = trace.consumer_site.copy()
    data = trace.data_site.copy()
    stated = trace.data_site != 0  # what the trace states is kept
    if consumer_sites:
        drawn = np.array([code(_pick(t, consumer_sites, f"c{seed}")) for t in tenants], dtype=np.int32)
        consumer = np.where(trace.consumer_site != 0, trace.consumer_site, drawn).astype(np.int32)
    if data_sites:
        drawn = np.array([code(_pick(t, data_sites, f"d{seed}")) for t in tenants], dtype=np.int32)
        data = np.where(stated, trace.data_site, drawn).astype(np.int32)
    gb = np.where(stated, trace.data_gb, data_gb).astype(np.float32) if data_gb else trace.data_gb
    deadline = trace.deadline_s.copy()
    pick = (rng.random(len(trace)) < deadline_fraction) & np.isnan(deadline)
    slack = rng.uniform(*deadline_slack, len(trace))
    pad = rng.uniform(*deadline_pad_h, len(trace)) * 3600.0
    deadline[pick] = trace.submit_s[pick] + slack[pick] * trace.duration_s[pick] + pad[pick]
    lat = trace.latency_ms_max if latency_ms_max is None else np.full(len(trace), latency_ms_max, np.float32)
    level = trace.service_level.copy()
    level[rng.random(len(trace)) < spot_fraction] = code("spot")
    return replace(trace, consumer_site=consumer, data_site=data, data_gb=gb, deadline_s=deadline,
                   latency_ms_max=lat, service_level=level, names=tuple(names))
