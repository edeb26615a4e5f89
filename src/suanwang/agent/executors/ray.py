"""Ray engine: the agent's tasks become Ray jobs, submitted through the Ray Jobs API.

The handle is the Ray submission id; the job's metadata carries suanwang's job id and
attempt so a restarted agent adopts only its own jobs.

Ray records when a job started and ended, its exit code and its logs, but not what the
job consumed.  So the entrypoint is a small stdlib-only wrapper (``WRAPPER``, run by the
cluster's ``python3``) around the task's command.  It

* starts the command in its own session, in the task's workdir;
* samples the session's resident memory every half second and, if the task's
  ``memory_gb`` is exceeded, kills it and reports "out of memory" (Ray itself only
  counts ``entrypoint_memory``, it does not enforce it);
* forwards SIGTERM/SIGINT from ``stop_job`` to the command, SIGKILL after 2 s;
* at the end prints one line ``__SUANWANG_USAGE__ {json}`` with the command's wall
  time, CPU seconds (``getrusage(RUSAGE_CHILDREN)``: user + system of the command and
  every descendant it waited for), peak memory and exit status.  ``read_log`` hides it.

Usage while a job runs is wall time only (from Ray's start time), cpu and memory 0;
the final figures come from the marker.  If the marker is missing (the wrapper was
SIGKILLed), wall comes from Ray's start/end times and cpu from nothing (0).
device seconds = entrypoint GPUs x wall.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from suanwang.agent.executors.base import PoolInfo, Task, TaskPhase, TaskStatus, Usage
from suanwang.agent.executors.errors import EngineError
from suanwang.errors import InvalidSpec

MARKER = "__SUANWANG_USAGE__"
_MARKER_LINE = re.compile(re.escape(MARKER) + r" (\{[^\n]*\})\n?")
_RAY_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\tINFO job_manager\.py:\d+ -- [^\n]*\n", re.M)

WRAPPER = r"""
import json, os, resource, signal, subprocess, sys, time
limit, cwd, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[4:]
t0 = time.time()
p = subprocess.Popen(cmd, cwd=cwd or None, start_new_session=True)
stop_at = []
def forward(sig, frame):
    stop_at.append(time.time())
    try: os.killpg(p.pid, sig)
    except OSError: pass
signal.signal(signal.SIGTERM, forward); signal.signal(signal.SIGINT, forward)
def session_rss(sid):
    total = 0
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open('/proc/%s/stat' % name) as f: s = f.read().rsplit(')', 1)[1].split()
            except OSError: continue
            if int(s[3]) == sid: total += int(s[21]) * os.sysconf('SC_PAGE_SIZE')
    return total
peak, oom = 0, False
while True:
    try: p.wait(timeout=0.5); break
    except subprocess.TimeoutExpired: pass
    if stop_at and time.time() - stop_at[0] > 2:
        try: os.killpg(p.pid, signal.SIGKILL)
        except OSError: pass
    rss = session_rss(p.pid); peak = max(peak, rss)
    if limit and rss > limit and not oom:
        oom = True
        try: os.killpg(p.pid, signal.SIGKILL)
        except OSError: pass
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
rc = p.returncode
usage = dict(wall_s=time.time() - t0, cpu_s=ru.ru_utime + ru.ru_stime, peak_bytes=max(peak, ru.ru_maxrss * 1024),
             exit_code=rc if rc >= 0 else None, signal=-rc if rc < 0 else 0, oom=oom, limit=limit)
sys.stdout.flush()
sys.stderr.write('%s %s\n' % (sys.argv[3], json.dumps(usage))); sys.stderr.flush()
sys.exit(rc if rc >= 0 else 128 - rc)
"""


@dataclass(frozen=True, slots=True)
class RayPool:
    """How a Ray cluster (or the nodes holding one custom resource) is offered as a pool."""

    pool: str
    resource_class: str = "general"
    node_resource: str = ""  # only nodes with this custom resource; the job asks for a sliver of it
    device_model: str = ""
    device_memory_gb: float = 0.0
    cpu_model: str = ""


def wrap(task: Task, python: str, enforce_memory: bool) -> str:
    """The shell entrypoint: the usage wrapper around the task's command."""
    limit = math.ceil(task.memory_gb * 2**30) if enforce_memory else 0
    return shlex.join([python, "-c", WRAPPER, str(limit), task.workdir, MARKER, *task.command])


def split_log(text: str, handle: str = "", entrypoint: str = "") -> tuple[str, dict[str, Any] | None]:
    """The task's own output, and the marker's figures (None if not there yet).

    Ray adds its own lines to a job's log ("Runtime env is setting up.", and "Running
    entrypoint for job <id>: <the whole wrapper>"); they and the marker are removed.
    """
    found = _MARKER_LINE.findall(text)
    usage = json.loads(found[-1]) if found else None
    if handle and entrypoint:
        text = text.replace(f"Running entrypoint for job {handle}: {entrypoint}\n", "")
    return _RAY_LINE.sub("", _MARKER_LINE.sub("", text)), usage


def status_from_info(info: Any, marker: Mapping[str, Any] | None, gpus: float, now_ms: float) -> TaskStatus:
    """Map a Ray JobDetails (status, start/end ms, driver_exit_code, message) to a TaskStatus."""
    state = str(getattr(info.status, "value", info.status))
    start, end = info.start_time or 0, info.end_time or 0
    ray_wall = max(0.0, ((end or now_ms) - start) / 1000) if start else 0.0
    if marker:
        usage = Usage(float(marker["wall_s"]), float(marker["cpu_s"]), int(marker["peak_bytes"]),
                      gpus * float(marker["wall_s"]))
    else:
        usage = Usage(wall_s=ray_wall, device_s=gpus * ray_wall)
    started_at = start / 1000 if start and state != "PENDING" else None
    if state == "PENDING":
        return TaskStatus(TaskPhase.QUEUED, usage)
    if state == "RUNNING":
        return TaskStatus(TaskPhase.RUNNING, usage, started_at=started_at)
    return dataclasses.replace(_final_status(state, info, marker, usage), started_at=started_at)


def _final_status(state: str, info: Any, marker: Mapping[str, Any] | None, usage: Usage) -> TaskStatus:
    exit_code = getattr(info, "driver_exit_code", None)
    if marker and marker.get("exit_code") is not None:
        exit_code = int(marker["exit_code"])
    if state == "SUCCEEDED":
        return TaskStatus(TaskPhase.SUCCEEDED, usage, exit_code=exit_code)
    if state == "STOPPED":
        return TaskStatus(TaskPhase.CANCELLED, usage, exit_code=exit_code, reason="stopped")
    if marker and marker.get("oom"):
        reason = f"out of memory: peak {marker['peak_bytes']} bytes, limit {marker['limit']} bytes"
    elif marker and marker.get("signal"):
        reason = f"killed by signal {marker['signal']}"
    elif exit_code is not None:
        reason = f"exit code {exit_code}"
    else:
        reason = (info.message or "failed").splitlines()[0]
    return TaskStatus(TaskPhase.FAILED, usage, exit_code=exit_code, reason=reason)


def pools_from_nodes(nodes: Sequence[Mapping[str, Any]], mapping: Sequence[RayPool]) -> list[PoolInfo]:
    """Sum alive nodes' CPU, memory and GPU resources per pool."""
    alive = [n for n in nodes if n.get("state") == "ALIVE"]
    pools = []
    for entry in mapping:
        members = [n["resources_total"] for n in alive if not entry.node_resource
                   or entry.node_resource in n.get("resources_total", {})]
        if entry.node_resource and not members:
            raise InvalidSpec(f"no Ray node has resource {entry.node_resource!r} (pool {entry.pool!r})",
                              field="node_resource")
        cores = [int(r.get("CPU", 0)) for r in members]
        memory = [r.get("memory", 0) / 2**30 for r in members]
        # GPUs are offered only under a model the platform can rate; Ray does not know the model
        gpus = [int(r.get("GPU", 0)) if entry.device_model else 0 for r in members]
        pools.append(PoolInfo(
            name=entry.pool, resource_class=entry.resource_class, cores=sum(cores), memory_gb=sum(memory),
            devices=sum(gpus), device_model=entry.device_model if sum(gpus) else "",
            device_memory_gb=entry.device_memory_gb, cpu_model=entry.cpu_model,
            node_cores=max(cores, default=None), node_memory_gb=max(memory, default=None),
            node_devices=max(gpus, default=None),
        ))
    return pools


def _client_factory(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient  # imported late: ray is an optional extra

    return JobSubmissionClient(address)


class RayExecutor:
    """Executor on a Ray cluster reached through its dashboard's Jobs API (``http://host:8265``)."""

    engine = "ray"

    def __init__(
        self,
        pools: Sequence[RayPool],
        *,
        address: str,
        python: str = "python3",
        enforce_memory: bool = True,
        client_factory: Callable[[str], Any] = _client_factory,
        http_timeout_s: float = 10.0,
    ) -> None:
        """``python``: the interpreter on the cluster's nodes that runs the usage wrapper."""
        if not pools:
            raise InvalidSpec("a Ray executor needs at least one pool", field="pools")
        self.pools = tuple(pools)
        self.address = address.rstrip("/")
        self.python = python
        self.enforce_memory = enforce_memory
        self.http_timeout_s = http_timeout_s
        self._client_factory = client_factory
        self._client_obj: Any = None

    @property
    def _client(self) -> Any:
        if self._client_obj is None:
            try:
                self._client_obj = self._client_factory(self.address)
            except Exception as exc:  # ray raises ConnectionError / RuntimeError
                raise EngineError(f"cannot reach Ray at {self.address}: {exc}") from exc
        return self._client_obj

    def _entry(self, pool: str) -> RayPool:
        for entry in self.pools:
            if entry.pool == pool:
                return entry
        raise InvalidSpec(f"pool {pool!r} is not served by this Ray executor", field="pool")

    def detect_pools(self) -> list[PoolInfo]:
        try:
            resp = httpx.get(f"{self.address}/api/v0/nodes", params={"detail": "1", "limit": "10000"},
                             timeout=self.http_timeout_s)
            resp.raise_for_status()
            nodes = resp.json()["data"]["result"]["result"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise EngineError(f"Ray node list from {self.address} failed: {exc}") from exc
        return pools_from_nodes(nodes, self.pools)

    def submit_kwargs(self, task: Task) -> dict[str, Any]:
        entry = self._entry(task.pool)
        kwargs: dict[str, Any] = {
            "entrypoint": wrap(task, self.python, self.enforce_memory),
            "submission_id": f"sw-{re.sub(r'[^A-Za-z0-9_-]', '_', task.job_id)}-{task.attempt}-{uuid.uuid4().hex[:8]}",
            "runtime_env": {"env_vars": dict(task.env)} if task.env else None,
            "metadata": {"suanwang_job": task.job_id, "suanwang_attempt": str(task.attempt),
                      "suanwang_gpus": str(task.devices)},
            "entrypoint_num_cpus": task.cores,
            "entrypoint_num_gpus": task.devices,
            "entrypoint_memory": math.ceil(task.memory_gb * 2**30),
        }
        if entry.node_resource:
            kwargs["entrypoint_resources"] = {entry.node_resource: 0.001}
        return kwargs

    def start(self, task: Task) -> str:
        if not task.command:
            raise InvalidSpec("task has an empty command", field="command")
        kwargs = self.submit_kwargs(task)
        try:
            return str(self._client.submit_job(**kwargs))
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"Ray refused the job: {exc}") from exc

    def _info(self, handle: str) -> Any | None:
        try:
            return self._client.get_job_info(handle)
        except RuntimeError as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                return None
            raise EngineError(f"Ray job {handle}: {exc}") from exc
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"Ray job {handle}: {exc}") from exc

    def _logs(self, handle: str) -> str:
        try:
            return str(self._client.get_job_logs(handle))
        except Exception as exc:
            raise EngineError(f"Ray logs of {handle}: {exc}") from exc

    def poll(self, handle: str) -> TaskStatus:
        info = self._info(handle)
        if info is None:
            return TaskStatus(TaskPhase.LOST, Usage(), reason="Ray does not know this job")
        state = str(getattr(info.status, "value", info.status))
        marker = split_log(self._logs(handle))[1] if state not in {"PENDING", "RUNNING"} else None
        gpus = float((info.metadata or {}).get("suanwang_gpus", 0))
        return status_from_info(info, marker, gpus, time.time() * 1000)

    def cancel(self, handle: str) -> None:
        try:
            self._client.stop_job(handle)
        except RuntimeError as exc:
            if "does not exist" not in str(exc):
                raise EngineError(f"Ray stop of {handle}: {exc}") from exc

    def read_log(self, handle: str, offset: int) -> bytes:
        """The task's output from ``offset``; while the job runs, only up to the last full line.

        The filter removes whole lines (Ray's own, the marker), so a line still being written
        is held back until it is complete: offsets into the filtered log never shift.
        """
        info = self._info(handle)
        if info is None:
            return b""
        text = split_log(self._logs(handle), handle, info.entrypoint)[0]
        if str(getattr(info.status, "value", info.status)) in {"PENDING", "RUNNING"}:
            text = text[: text.rfind("\n") + 1]
        return text.encode()[offset:]

    def adopt(self, handle: str, task: Task) -> bool:
        info = self._info(handle)
        if info is None:
            return False
        meta = info.metadata or {}
        return meta.get("suanwang_job") == task.job_id and meta.get("suanwang_attempt") == str(task.attempt)
