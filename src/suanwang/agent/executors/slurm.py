"""Slurm engine: the agent's tasks become Slurm batch jobs; Slurm picks the node.

The agent holds only the Slurm job id (the handle).  Everything else comes back from
Slurm's own records, so a restarted agent can adopt its jobs by id:

* start:   ``sbatch --parsable`` with a small bash script on stdin, which ``exec``s the
           task's command; partition from the pool mapping, ``--cpus-per-task``,
           ``--mem``, ``--gres=gpu:N``, ``--output`` at ``<log_dir>/slurm-<jobid>.out``.
* poll:    ``sacct`` (slurmdbd), falling back to ``squeue`` while accounting has not
           seen a just-submitted job yet.  PENDING (and the other waiting states) is
           QUEUED; RUNNING carries sacct's Start, which makes the platform's job running.
           Running jobs add ``sstat``'s MaxRSS.
           ``poll_many`` does the same for all the agent's tasks in one call of each.
* usage:   ElapsedRaw (wall), TotalCPU (cpu), MaxRSS over steps (peak memory),
           AllocTRES ``gres/gpu`` x ElapsedRaw (device seconds).  All cumulative.
* cancel:  ``scancel``.  detect_pools: ``scontrol show node -o`` grouped by partition.

Memory limits enforced by ``jobacct_gather`` (``OverMemoryKill``, no cgroups) end as
FAILED with signal 9, not OUT_OF_MEMORY; we call a job out of memory when either Slurm
says so or a step's MaxRSS reached the job's ReqMem.

Commands run through a ``Runner`` (argv, stdin -> stdout), the one seam tests replace.
sbatch gets a clean environment (PATH, HOME, locale, SLURM_CONF and the task's env),
so the agent's own secrets never reach a job.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from suanwang.agent.executors.base import PoolInfo, Task, TaskPhase, TaskStatus, Usage
from suanwang.agent.executors.errors import EngineError
from suanwang.domain.packing import slurm_gres
from suanwang.errors import InvalidSpec

Runner = Callable[[Sequence[str], str | None, Mapping[str, str]], str]

_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME")
# Not finished.  Of these, the queued ones have not started the job's process (nodes not yet given or booting).
_RUNNING_STATES = frozenset(
    {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED",
     "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
)
_QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING", "RESV_DEL_HOLD",
                            "SPECIAL_EXIT"})
_FAILED_REASONS = {
    "FAILED": "non-zero exit",
    "OUT_OF_MEMORY": "out of memory",
    "TIMEOUT": "time limit reached",
    "NODE_FAIL": "node failure",
    "BOOT_FAIL": "node boot failure",
    "DEADLINE": "deadline reached",
    "PREEMPTED": "preempted",
}
_UNUSABLE_NODE = frozenset({"DOWN", "DRAIN", "DRAINED", "DRAINING", "FAIL", "FAILING", "INVAL", "FUTURE", "NO_RESPOND"})
_DBD_PLACEHOLDER_NAME = "allocation"
_SACCT_FIELDS = "JobID,JobName,State,ExitCode,ElapsedRaw,TotalCPU,MaxRSS,ReqMem,AllocTRES,Start"


@dataclass(frozen=True, slots=True)
class PartitionPool:
    """How one Slurm partition is offered to the platform."""

    partition: str
    pool: str
    resource_class: str = "super"
    device_model: str = ""  # overrides the gres type (e.g. "A100-80G" for gres gpu:a100)
    device_memory_gb: float = 0.0
    cpu_model: str = ""
    gres_type: str = ""  # if set, ask --gres=gpu:<type>:N instead of gpu:N
    shards: int = 0  # GRES shards per card on the partition's nodes: a fraction of a card asks for shard:K
    sharing: dict[str, object] | None = None  # the pool's sharing as declared to the platform (domain.packing)


def subprocess_runner(timeout_s: float = 30.0) -> Runner:
    """Run a Slurm client; non-zero exit raises EngineError carrying its stderr."""

    def run(argv: Sequence[str], stdin: str | None, env: Mapping[str, str]) -> str:
        try:
            done = subprocess.run(
                list(argv), input=stdin, env=dict(env), capture_output=True, text=True, timeout=timeout_s
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineError(f"{argv[0]} failed: {exc}", argv=list(argv)) from exc
        if done.returncode != 0:
            raise EngineError(f"{argv[0]} exit {done.returncode}: {done.stderr.strip()}", argv=list(argv))
        return done.stdout

    return run


# ---------------------------------------------------------------- parsing (pure)


def parse_duration(text: str) -> float:
    """Slurm's [D-][HH:]MM:SS[.fff] (TotalCPU, Elapsed) to seconds."""
    text = text.strip()
    if not text or text in {"INVALID", "UNLIMITED", "Partition_Limit"}:
        return 0.0
    days, _, clock = text.rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds + (int(days) * 86400 if days else 0)


def parse_size(text: str) -> int:
    """Slurm sizes ('63828K', '200M', '1.5G', '512Mn', '1024') to bytes; bare numbers are bytes."""
    match = re.fullmatch(r"([0-9.]+)([KMGTP]?)[nc]?", text.strip())
    if not match:
        return 0
    power = " KMGTP".index(match.group(2) or " ")
    return int(float(match.group(1)) * 1024**power)


def parse_tres(text: str) -> dict[str, str]:
    """'cpu=2,gres/gpu=1,mem=200M' -> {'cpu': '2', 'gres/gpu': '1', 'mem': '200M'}."""
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def gpu_count(tres: Mapping[str, str]) -> int:
    """GPUs in a TRES map: 'gres/gpu', else the sum of typed 'gres/gpu:<type>' entries."""
    if "gres/gpu" in tres:
        return int(tres["gres/gpu"])
    return sum(int(v) for k, v in tres.items() if k.startswith("gres/gpu:"))


def parse_gres(text: str) -> tuple[int, str]:
    """Node Gres 'gpu:a100:2(S:0),gpu:2' -> (4, 'a100'); '(null)' -> (0, '')."""
    count, model = 0, ""
    for item in text.split(","):
        fields = re.sub(r"\(.*?\)", "", item).split(":")
        if fields[0] != "gpu" or len(fields) < 2:
            continue
        count += int(fields[-1]) if fields[-1].isdigit() else 1
        if len(fields) == 3 and not model:
            model = fields[1]
    return count, model


@dataclass(frozen=True, slots=True)
class SacctRow:
    job_id: str
    name: str
    state: str
    exit_code: str
    elapsed_s: float
    cpu_s: float
    max_rss: int
    req_mem: int
    alloc_tres: dict[str, str]
    start: float | None = None  # Unix s the job started on its node; None while it waits


def parse_start(text: str) -> float | None:
    """sacct's Start ('2026-12-06T05:12:33', in the host's local time) to Unix seconds; 'Unknown'/'None' -> None."""
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def parse_sacct(text: str) -> list[SacctRow]:
    rows = []
    for line in text.splitlines():
        f = line.split("|")
        if len(f) < 9:
            continue
        rows.append(
            SacctRow(f[0], f[1], f[2], f[3], float(f[4] or 0), parse_duration(f[5]), parse_size(f[6]),
                     parse_size(f[7]), parse_tres(f[8]), parse_start(f[9]) if len(f) > 9 else None)
        )
    return rows


def status_from_sacct(handle: str, rows: Sequence[SacctRow]) -> TaskStatus | None:
    """The task's status from its sacct rows (job row + steps); None if the job is absent."""
    job = next((r for r in rows if r.job_id == handle), None)
    if job is None:
        return None
    peak = max((r.max_rss for r in rows), default=0)
    usage = Usage(
        wall_s=job.elapsed_s,
        cpu_s=max(job.cpu_s, sum(r.cpu_s for r in rows if r is not job)),
        peak_memory_bytes=peak,
        device_s=gpu_count(job.alloc_tres) * job.elapsed_s,
    )
    state = job.state.split()[0].rstrip("+")
    if state in _QUEUED_STATES:
        return TaskStatus(TaskPhase.QUEUED, usage)
    if state in _RUNNING_STATES:
        return TaskStatus(TaskPhase.RUNNING, usage, started_at=job.start)
    return dataclasses.replace(_final_status(job, rows, state, usage), started_at=job.start)


def _final_status(job: SacctRow, rows: Sequence[SacctRow], state: str, usage: Usage) -> TaskStatus:
    peak = usage.peak_memory_bytes
    code, _, signal = job.exit_code.partition(":")
    exit_code = int(code) if code.isdigit() else None
    if state == "COMPLETED":
        return TaskStatus(TaskPhase.SUCCEEDED, usage, exit_code=exit_code)
    limit = job.req_mem or max((parse_size(r.alloc_tres.get("mem", "")) for r in rows), default=0)
    if (limit and peak >= limit) or state == "OUT_OF_MEMORY":
        reason = f"out of memory: peak {peak} bytes, limit {limit} bytes"
        return TaskStatus(TaskPhase.FAILED, usage, exit_code=exit_code, reason=reason)
    if state == "CANCELLED":
        return TaskStatus(TaskPhase.CANCELLED, usage, exit_code=exit_code, reason=job.state.lower())
    reason = _FAILED_REASONS.get(state, state.lower())
    if state == "FAILED":
        reason = f"killed by signal {signal}" if code == "0" and signal not in {"", "0"} else f"exit code {code}"
    return TaskStatus(TaskPhase.FAILED, usage, exit_code=exit_code, reason=reason)


def parse_nodes(text: str) -> list[dict[str, str]]:
    """``scontrol show node -o``: one dict per node of the space-free key=value fields."""
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in text.splitlines() if line.startswith("NodeName=")]


def node_usable(state: str) -> bool:
    words = {w.rstrip("*~#!%$@^-") for w in state.split("+")}
    return not (words & _UNUSABLE_NODE) and not state.endswith("*")


def pools_from_nodes(nodes: Sequence[Mapping[str, str]], mapping: Sequence[PartitionPool]) -> list[PoolInfo]:
    """Sum usable nodes' CPUs, memory and GPUs per mapped partition (a missing partition is an error)."""
    by_partition: dict[str, list[Mapping[str, str]]] = {}
    for node in nodes:
        for part in node.get("Partitions", "").split(","):
            by_partition.setdefault(part, []).append(node)
    pools = []
    for entry in mapping:
        if entry.partition not in by_partition:
            raise InvalidSpec(f"Slurm has no partition {entry.partition!r} (pool {entry.pool!r})", field="partition")
        members = [n for n in by_partition[entry.partition] if node_usable(n.get("State", ""))]
        pools.append(_pool_info(entry, members))
    return pools


def _pool_info(entry: PartitionPool, nodes: Sequence[Mapping[str, str]]) -> PoolInfo:
    cores = [int(n.get("CPUTot", "0")) for n in nodes]
    memory = [int(n.get("RealMemory", "0")) / 1024 for n in nodes]
    gres = [parse_gres(n.get("Gres", "")) for n in nodes]
    model = entry.device_model or next((m for _, m in gres if m), "")
    if not model:  # GPUs are offered only under a model the platform can rate
        gres = [(0, "") for _ in gres]
    return PoolInfo(
        name=entry.pool,
        resource_class=entry.resource_class,
        cores=sum(cores),
        memory_gb=sum(memory),
        devices=sum(c for c, _ in gres),
        device_model=model if any(c for c, _ in gres) else "",
        device_memory_gb=entry.device_memory_gb,
        cpu_model=entry.cpu_model,
        node_cores=max(cores, default=None),
        node_memory_gb=max(memory, default=None),
        node_devices=max((c for c, _ in gres), default=None),
        sharing=entry.sharing if any(c for c, _ in gres) else None,
    )


def job_name(task: Task) -> str:
    """The Slurm job name adopt() checks, so a reused job id is never taken for ours."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"sw-{task.job_id}-{task.attempt}")


# ---------------------------------------------------------------- the executor


class SlurmExecutor:
    """Executor on a Slurm cluster reached through its client commands on this host."""

    engine = "slurm"
    parallel_starts = 8  # the agent may sbatch this many tasks at once: slurmctld serves RPCs concurrently

    def __init__(
        self,
        pools: Sequence[PartitionPool],
        *,
        log_dir: str | os.PathLike[str],
        slurm_conf: str | None = None,
        bin_dir: str | None = None,
        time_limit_factor: float | None = None,
        sbatch_args: Sequence[str] = (),
        pass_env: Sequence[str] = (),
        runner: Runner | None = None,
        recheck_s: float = 1.0,
        adopt_checks: int = 8,
    ) -> None:
        """``log_dir`` must be visible from the compute nodes and from the agent (shared FS).

        ``time_limit_factor``: if set, ``--time`` is duration_s x factor (minutes, rounded up).
        ``pass_env``: extra agent environment variables handed to jobs (default: none).
        """
        if not pools:
            raise InvalidSpec("a Slurm executor needs at least one partition -> pool mapping", field="pools")
        self.pools = tuple(pools)
        self.log_dir = Path(log_dir)
        self.slurm_conf = slurm_conf
        self.bin_dir = bin_dir
        self.time_limit_factor = time_limit_factor
        self.sbatch_args = tuple(sbatch_args)
        self.pass_env = tuple(pass_env)
        self._run = runner or subprocess_runner()
        self.recheck_s = recheck_s
        self.adopt_checks = adopt_checks

    # -- plumbing

    def _cmd(self, name: str) -> str:
        return str(Path(self.bin_dir) / name) if self.bin_dir else name

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: os.environ[k] for k in (*_BASE_ENV, *self.pass_env) if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        elif "SLURM_CONF" in os.environ:
            env["SLURM_CONF"] = os.environ["SLURM_CONF"]
        return {**env, **(extra or {})}

    def _client(self, name: str, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None) -> str:
        return self._run([self._cmd(name), *args], stdin, env if env is not None else self._env())

    def _entry(self, pool: str) -> PartitionPool:
        for entry in self.pools:
            if entry.pool == pool:
                return entry
        raise InvalidSpec(f"pool {pool!r} is not mapped to a Slurm partition", field="pool")

    def log_path(self, handle: str) -> Path:
        return self.log_dir / f"slurm-{handle}.out"

    # -- Executor

    def detect_pools(self) -> list[PoolInfo]:
        return pools_from_nodes(parse_nodes(self._client("scontrol", "show", "node", "-o")), self.pools)

    def sbatch_argv(self, task: Task) -> list[str]:
        entry = self._entry(task.pool)
        argv = [
            "--parsable", f"--job-name={job_name(task)}", f"--partition={entry.partition}",
            "--ntasks=1", f"--cpus-per-task={task.cores}", f"--mem={max(1, math.ceil(task.memory_gb * 1024))}M",
            f"--output={self.log_dir}/slurm-%j.out", f"--chdir={task.workdir or self.log_dir}",
            "--no-requeue", "--export=ALL",
        ]
        if task.device_share and entry.shards:  # Slurm counts shards; it does not limit the job's use of the card
            argv.append(f"--gres={slurm_gres(task.device_share, entry.shards)}")
        elif task.devices:  # whole cards (a fraction where the partition has no shards holds its whole card)
            gres = f"gpu:{entry.gres_type}:{task.devices}" if entry.gres_type else f"gpu:{task.devices}"
            argv.append(f"--gres={gres}")
        if self.time_limit_factor:
            argv.append(f"--time={max(1, math.ceil(task.duration_s * self.time_limit_factor / 60))}")
        return [*argv, *self.sbatch_args]

    def start(self, task: Task) -> str:
        if not task.command:
            raise InvalidSpec("task has an empty command", field="command")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        script = f"#!/bin/bash\nexec {shlex.join(task.command)}\n"
        out = self._client("sbatch", *self.sbatch_argv(task), stdin=script, env=self._env(task.env))
        handle = out.strip().split(";")[0]
        if not handle.isdigit():
            raise EngineError(f"sbatch returned no job id: {out!r}")
        return handle

    def _sacct(self, handle: str) -> list[SacctRow]:
        out = self._client("sacct", "-j", handle, "-n", "-P", f"--format={_SACCT_FIELDS}")
        return parse_sacct(out)

    def _queued_name(self, handle: str) -> str | None:
        """The job's name if slurmctld still holds it, else None."""
        try:
            out = self._client("squeue", "-h", "-j", handle, "-o", "%j").strip()
        except EngineError as exc:
            if "Invalid job id" in str(exc):
                return None  # purged from slurmctld (or never there)
            raise
        return out or None

    def _running_rss(self, handle: str) -> int:
        try:
            out = self._client("sstat", "-n", "-P", "-a", "-j", handle, "-o", "JobID,MaxRSS")
        except EngineError:
            return 0
        return max((parse_size(line.split("|")[1]) for line in out.splitlines() if "|" in line), default=0)

    def poll(self, handle: str) -> TaskStatus:
        for attempt in range(2):
            status = status_from_sacct(handle, self._sacct(handle))
            if status is not None:
                break
            # slurmdbd may not have the job yet while slurmctld does; or slurmctld purged a
            # finished job (MinJobAge) before slurmdbd caught up: ask accounting once more.
            if self._queued_name(handle) is not None:  # too new for accounting: not started, as far as we know
                return TaskStatus(TaskPhase.QUEUED, Usage())
            if attempt == 0:
                time.sleep(self.recheck_s)
        else:
            return TaskStatus(TaskPhase.LOST, Usage(), reason="Slurm does not know this job")
        if status.phase is TaskPhase.FAILED and status.reason == "killed by signal 9" and self._log_says_oom(handle):
            reason = "out of memory: job memory limit exceeded"
            status = dataclasses.replace(status, reason=reason)
        if status.phase is TaskPhase.RUNNING:
            rss = self._running_rss(handle)
            if rss > status.usage.peak_memory_bytes:
                u = status.usage
                status = dataclasses.replace(status, usage=Usage(u.wall_s, u.cpu_s, rss, u.device_s))
        return status

    def poll_many(self, handles: Sequence[str]) -> dict[str, TaskStatus]:
        """Every handle's status from one ``sacct`` (and at most one ``squeue``, one ``sstat``).

        A per-task poll costs a client process per task per agent step, which caps an agent
        at a few dozen tasks; this one is what keeps a busy partition fed.  Handles that
        neither daemon lists fall back to :meth:`poll`, which rechecks before calling them lost.
        """
        if not handles:
            return {}
        by_job: dict[str, list[SacctRow]] = {}
        for row in self._sacct(",".join(handles)):
            by_job.setdefault(row.job_id.split(".")[0], []).append(row)
        out: dict[str, TaskStatus] = {}
        missing = []
        for handle in handles:
            status = status_from_sacct(handle, by_job.get(handle, []))
            if status is None:
                missing.append(handle)
            else:
                out[handle] = status
        queued = self._queued_ids() if missing else set()
        for handle in missing:
            out[handle] = TaskStatus(TaskPhase.QUEUED, Usage()) if handle in queued else self.poll(handle)
        self._fix_failures(out)
        self._add_running_rss(out, by_job)
        return out

    def _queued_ids(self) -> set[str]:
        """Every job slurmctld holds, finished ones included (until MinJobAge purges them)."""
        return set(self._client("squeue", "-h", "-t", "all", "-o", "%i").split())

    def _fix_failures(self, out: dict[str, TaskStatus]) -> None:
        for handle, status in out.items():
            signal9 = status.phase is TaskPhase.FAILED and status.reason == "killed by signal 9"
            if signal9 and self._log_says_oom(handle):
                out[handle] = dataclasses.replace(status, reason="out of memory: job memory limit exceeded")

    def _add_running_rss(self, out: dict[str, TaskStatus], by_job: Mapping[str, list[SacctRow]]) -> None:
        running = [h for h, s in out.items() if s.phase is TaskPhase.RUNNING
                   and any(r.state.startswith("RUNNING") for r in by_job.get(h, []) if r.job_id == h)]
        if not running:
            return
        try:
            text = self._client("sstat", "-n", "-P", "-a", "-j", ",".join(running), "-o", "JobID,MaxRSS")
        except EngineError:
            return
        rss: dict[str, int] = {}
        for line in text.splitlines():
            if "|" in line:
                job, size = line.split("|")[:2]
                key = job.split(".")[0]
                rss[key] = max(rss.get(key, 0), parse_size(size))
        for handle in running:
            u = out[handle].usage
            if rss.get(handle, 0) > u.peak_memory_bytes:
                out[handle] = dataclasses.replace(out[handle], usage=Usage(u.wall_s, u.cpu_s, rss[handle], u.device_s))

    def _log_says_oom(self, handle: str) -> bool:
        """slurmstepd writes its memory-limit kill into the job's output file."""
        try:
            with self.log_path(handle).open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
                tail = f.read()
        except OSError:
            return False
        return b"Exceeded job memory limit" in tail or b"oom-kill" in tail

    def cancel(self, handle: str) -> None:
        try:
            self._client("scancel", handle)
        except EngineError as exc:
            if "Invalid job id" not in str(exc) and "already completing" not in str(exc):
                raise

    def read_log(self, handle: str, offset: int) -> bytes:
        try:
            with self.log_path(handle).open("rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def find(self, task: Task) -> str | None:
        """The id of the Slurm job submitted for ``task`` (by its unique job name), or None.

        An agent killed after ``sbatch`` but before saving the id finds its job this way, so
        the job is adopted rather than given up and run twice.
        """
        name = job_name(task)
        ids = self._client("squeue", "-h", "-n", name, "-o", "%i").split()
        if not ids:
            out = self._client("sacct", "-n", "-P", "-X", f"--name={name}", "-S", "now-7days", "-o", "JobID")
            ids = [line.strip() for line in out.splitlines() if line.strip().isdigit()]
        return ids[-1] if ids else None

    def adopt(self, handle: str, task: Task) -> bool:
        """True if Slurm still knows job ``handle`` under this task's name (running or finished).

        slurmctld's name wins while it holds the job.  After that only slurmdbd can tell, and it
        lags: under load it first records a job as "allocation" (its start overtook its submit
        message) and learns the real name seconds later.  So that placeholder, or no record at
        all, is asked again a few times; any other name is not ours.
        """
        for attempt in range(self.adopt_checks):
            queued = self._queued_name(handle)
            if queued is not None:
                return queued == job_name(task)
            job = next((r for r in self._sacct(handle) if r.job_id == handle), None)
            if job is not None and job.name != _DBD_PLACEHOLDER_NAME:
                return job.name == job_name(task)
            if job is None and attempt >= 1:
                return False  # neither daemon knows it, twice: gone
            if attempt + 1 < self.adopt_checks:
                time.sleep(self.recheck_s)
        return False
