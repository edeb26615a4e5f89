"""The local executor: each task is a process on this machine, isolated from the agent and other tenants.

Layout: the agent's state directory holds ``tasks/<job>-<attempt>/`` (0700, the agent's only):
``job.json`` (what the wrapper runs), ``output.log`` (stdout and stderr, copied from a pipe by
the wrapper), ``result.json`` (written by the wrapper at exit), ``pid`` (the wrapper's),
``pid-created`` (that process's start time) and ``job.pid`` (the job's process group).  The handle is
that directory's name, so a restarted agent can adopt, or kill, a task from its files alone; the start
time keeps it from signalling a process that merely reuses the pid.  A task runs once spawned.

Isolation (the agent runs as root): each tenant's jobs run as a uid of their own (``_jobusers``),
each attempt in its own 0700 working directory ``<jobs root>/<job>-<attempt>``, owned by that uid
and removed when the attempt ends.  The jobs root lies outside the agent's state directory (by
default ``/var/lib/suanwang/jobs``), so no relative path from a job reaches the platform's files,
and the job's environment is built afresh (nothing of the agent's, such as its token, is passed).
cgroup v2 limits apply where the host offers them (``_cgroup``).  An agent that is not root cannot
switch users: it refuses to run jobs unless told they may share its own user (``shared_user``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil

from suanwang.agent.executors import _cgroup
from suanwang.agent.executors._jobusers import DEFAULT_UID_RANGE, JobUser, JobUsers
from suanwang.agent.executors._localwrap import write_result
from suanwang.agent.executors.base import PoolInfo, Task, TaskPhase, TaskStatus, Usage
from suanwang.agent.sysinfo import detect_local_pools
from suanwang.domain.job import carry_problems
from suanwang.domain.packing import Sharing, SharingMode, share_env
from suanwang.errors import InvalidSpec
from suanwang.store.files import private_dir

log = logging.getLogger("suanwang.agent")

KILL_GRACE_S = 1.0  # SIGTERM first, SIGKILL this long after
ROOT_JOBS_ROOT = Path("/var/lib/suanwang/jobs")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")  # all a job gets from the agent's environment
SHARED_USER_WARNING = ("jobs run as this agent's own user, NOT isolated: any job can read the agent's files "
                       "(its token, the platform's data directory) and other jobs' output; run the agent as root "
                       "to give each tenant its own uid")


class IsolationUnavailable(InvalidSpec):
    """The local executor cannot give jobs their own users here and was not told it may share its own."""

    code = "isolation_unavailable"


def default_jobs_root(state_dir: Path) -> Path:
    """``/var/lib/suanwang/jobs`` for root, else a sibling of the agent's state directory."""
    if os.geteuid() == 0:
        return ROOT_JOBS_ROOT
    state_dir = Path(state_dir).absolute()
    return state_dir.parent / f"{state_dir.name}-jobs"


def _is_within(path: Path, parent: Path) -> bool:
    path, parent = path.resolve(), parent.resolve()
    return path == parent or parent in path.parents


class LocalExecutor:
    engine = "local"

    def __init__(self, workdir: Path, pools: list[PoolInfo] | None = None, *, jobs_root: Path | None = None,
                 shared_user: bool = False, uid_range: tuple[int, int] | None = None,
                 cgroup_root: Path | None = None, pids_max: int = 4096, outside: tuple[Path, ...] = ()) -> None:
        """``outside``: further directories (the platform's data directory) the jobs root must not lie in."""
        self.isolated = os.geteuid() == 0
        if not self.isolated and not shared_user:
            raise IsolationUnavailable(
                "the local executor runs each tenant's jobs as a user of its own, which needs root; run the agent "
                "as root, or pass --insecure-shared-user (site config local.insecure_shared_user: true) to run "
                "jobs as this agent's own user, where any job can read the agent's files")
        if self.isolated and shared_user:
            log.warning("local executor: insecure_shared_user ignored: the agent runs as root, so each tenant's "
                        "jobs get a user of their own")
        elif shared_user:
            log.warning("local executor: %s", SHARED_USER_WARNING)
        self.state = private_dir(Path(workdir))
        self.root = private_dir(self.state / "tasks")
        self.jobs_root = Path(jobs_root) if jobs_root is not None else default_jobs_root(self.state)
        for d in (self.state, *outside):
            if _is_within(self.jobs_root, Path(d)) or _is_within(Path(d), self.jobs_root):
                raise InvalidSpec(f"local.jobs_root: {self.jobs_root} must lie outside {d}, whose files jobs "
                                  f"must not reach", field="local.jobs_root")
        self.jobs_root.mkdir(parents=True, exist_ok=True)
        st = self.jobs_root.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o1002:
            # A shared directory (/tmp) or one another user controls could be swapped under us: refuse it.
            raise InvalidSpec(f"local.jobs_root: {self.jobs_root} must be a directory of this agent's user, "
                              f"not world-writable, not a link", field="local.jobs_root")
        os.chmod(self.jobs_root, 0o711 if self.isolated else 0o700)  # tenants may enter their own dirs, not list
        try:
            self.users = JobUsers(self.jobs_root, uid_range or DEFAULT_UID_RANGE) if self.isolated else None
        except ValueError as exc:
            raise InvalidSpec(f"local.uid_range: {exc}", field="local.uid_range") from exc
        self.cgroups, why = _cgroup.probe(cgroup_root, pids_max=pids_max)
        if why:
            log.warning("local executor: %s", why)
        self._pools = pools
        self._started: dict[str, float] = {}
        self._devices: dict[str, float] = {}
        self._peak: dict[str, int] = {}
        self._cpu: dict[str, float] = {}
        self._kill_at: dict[str, float] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def detect_pools(self) -> list[PoolInfo]:
        return self._pools if self._pools is not None else detect_local_pools()

    def start(self, task: Task) -> str:
        handle = f"{task.job_id}-{task.attempt}"
        d = self.root / handle
        d.mkdir(exist_ok=True, mode=0o700)
        home = self.jobs_root / handle
        started = time.time()
        meta = {"devices": task.devices, "started": started, "home": str(home), "cgroup": None}
        (d / "task.json").write_text(json.dumps(meta))
        self._remember(handle, task.devices, started)
        try:
            problems = carry_problems(task.command, task.env, task.workdir)
            if problems:  # the platform refuses these at submit; a task that still carries one fails alone
                raise ValueError("; ".join(problems))
            user = self.users.user_for(task.tenant) if self.users is not None else None
            self._make_home(home, user)
            cgroup = self._cgroup(handle, task)
        except (OSError, ValueError) as exc:
            write_result(d / "result.json", {"exit_code": 127, "wall_s": 0.0, "cpu_s": 0.0, "peak_memory_bytes": 0,
                                             "reason": f"cannot start: {exc}"[:500]})
            return handle
        meta["cgroup"] = cgroup
        (d / "task.json").write_text(json.dumps(meta))
        env = self._environment(task, home, user) | self._share_env(task)
        job = {"command": list(task.command), "env": env, "cwd": os.path.join(home, task.workdir),
               "uid": user.uid if user else None, "gid": user.gid if user else None, "cgroup": cgroup}
        fd = os.open(d / "job.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(job, f)
        wrapper = [sys.executable, "-m", "suanwang.agent.executors._localwrap", str(d)]
        with open(d / "output.log", "ab") as out:
            proc = subprocess.Popen(wrapper, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        (d / "pid-created").write_text(str(_create_time(proc.pid)))  # first: a pid file always has its check
        (d / "pid").write_text(str(proc.pid))
        self._procs[handle] = proc
        return handle

    def job_owner(self, task: Task) -> tuple[int, int] | None:
        """(uid, gid) the task will run as; None when it runs as this agent's own user (not root)."""
        if self.users is None:
            return None
        try:
            user = self.users.user_for(task.tenant)
        except ValueError:  # no tenant: start() refuses the task with the reason
            return None
        return user.uid, user.gid

    def _make_home(self, home: Path, user: JobUser | None) -> None:
        """The attempt's own 0700 working directory, owned by the job's user."""
        home.mkdir(mode=0o700, exist_ok=True)
        if home.is_symlink():
            raise ValueError(f"{home} is a link")
        if user is not None:
            os.chown(home, user.uid, user.gid, follow_symlinks=False)
        os.chmod(home, 0o700)

    def _cgroup(self, handle: str, task: Task) -> str | None:
        if self.cgroups is None:
            return None
        try:
            return str(self.cgroups.create(handle, cores=task.cores, memory_gb=task.memory_gb))
        except OSError as exc:
            log.warning("local executor: no cgroup for %s: %s", handle, exc)
            return None

    def _environment(self, task: Task, home: Path, user: JobUser | None) -> dict[str, str]:
        """A fresh environment: a few locale and path variables, the job's own, and who and where it is."""
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.setdefault("PATH", DEFAULT_PATH)
        name = user.name if user is not None else os.environ.get("USER", "")
        env |= {"HOME": str(home), "USER": name, "LOGNAME": name}
        return env | task.env | {"SUANWANG_JOB_ID": task.job_id, "SUANWANG_ATTEMPT": str(task.attempt)}

    def _share_env(self, task: Task) -> dict[str, str]:
        """A fraction of a card: pinned to the card the platform placed it on, with its MPS share.

        The platform's card numbers are this machine's GPU indices.  Time-slicing only pins (share and device
        memory are accounted, not enforced); MIG would need the slice's UUID, which is not read here yet, so a
        MIG fraction is pinned to its card like time-slicing (docs/quantum_and_shared_gpus.md)."""
        if not task.device_share or task.card < 0:
            return {}
        pool = next((p for p in self._pools or () if p.name == task.pool), None)
        sharing = Sharing.from_json(pool.sharing if pool is not None else None)
        mode = SharingMode.TIME_SLICING if sharing.mode in (SharingMode.MIG, SharingMode.NONE) else sharing.mode
        return share_env(mode, [task.card], task.device_share)

    def _remember(self, handle: str, devices: float, started: float) -> None:
        self._started[handle] = started
        self._devices[handle] = devices

    def adopt(self, handle: str, task: Task) -> bool:
        d = self.root / handle
        if not (d / "task.json").exists():
            return False
        meta = json.loads((d / "task.json").read_text())
        self._remember(handle, int(meta.get("devices", 0)), float(meta.get("started", time.time())))
        return (d / "result.json").exists() or self._alive(handle)

    def _pid(self, handle: str) -> int | None:
        """The wrapper, which leads the task's process group, or None when that pid now belongs to another process."""
        try:
            pid = int((self.root / handle / "pid").read_text())
        except (OSError, ValueError):
            return None
        now = _create_time(pid)
        try:
            if now is not None and abs(now - float((self.root / handle / "pid-created").read_text())) > 0.05:
                return None  # the leader exited and the pid was reused
        except (OSError, ValueError):
            pass  # no start time (an older agent, or the process was gone at once): nothing to check against
        return pid

    def _alive(self, handle: str) -> bool:
        proc = self._procs.get(handle)
        if proc is not None:
            return proc.poll() is None
        pid = self._pid(handle)
        if pid is None:
            return False
        try:
            p = psutil.Process(pid)
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _sample(self, handle: str) -> None:
        """Add the live process tree's CPU time and memory to what we know."""
        pid = self._pid(handle)
        if pid is None:
            return
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
            cpu = sum(sum(p.cpu_times()[:2]) for p in procs[1:])
            rss = sum(p.memory_info().rss for p in procs[1:])
        except psutil.Error:
            return
        self._cpu[handle] = max(self._cpu.get(handle, 0.0), cpu)
        self._peak[handle] = max(self._peak.get(handle, 0), rss)

    def poll(self, handle: str) -> TaskStatus:
        started = self._started.get(handle, time.time())
        devices = self._devices.get(handle, 0)
        result_file = self.root / handle / "result.json"
        if result_file.exists():
            r = json.loads(result_file.read_text())
            self._reap(handle)
            self._clean(handle)
            usage = Usage(wall_s=r["wall_s"], cpu_s=r["cpu_s"], peak_memory_bytes=int(r["peak_memory_bytes"]),
                          device_s=devices * r["wall_s"])
            cancelled = handle in self._kill_at
            finished = TaskPhase.SUCCEEDED if r["exit_code"] == 0 else TaskPhase.FAILED
            phase = TaskPhase.CANCELLED if cancelled else finished
            return TaskStatus(phase, usage, exit_code=r["exit_code"], reason=r.get("reason", ""),
                              started_at=started)
        wall = time.time() - started
        if self._alive(handle):
            self._sample(handle)
            if handle in self._kill_at and time.time() >= self._kill_at[handle]:
                self._signal(handle, signal.SIGKILL)
            return TaskStatus(TaskPhase.RUNNING, self._usage(handle, wall, devices), started_at=started)
        self._reap(handle)
        self._clean(handle)
        usage = self._usage(handle, wall, devices)
        if handle in self._kill_at:
            return TaskStatus(TaskPhase.CANCELLED, usage, reason="killed on cancel", started_at=started)
        return TaskStatus(TaskPhase.LOST, usage, reason="process vanished without a result", started_at=started)

    def _usage(self, handle: str, wall: float, devices: float) -> Usage:
        return Usage(wall_s=wall, cpu_s=self._cpu.get(handle, 0.0), peak_memory_bytes=self._peak.get(handle, 0),
                     device_s=devices * wall)

    def _reap(self, handle: str) -> None:
        proc = self._procs.pop(handle, None)
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass

    def _clean(self, handle: str) -> None:
        """The attempt is over: end its cgroup and remove its working directory (idempotent)."""
        try:
            meta = json.loads((self.root / handle / "task.json").read_text())
        except (OSError, ValueError):
            return
        _cgroup.end(meta.get("cgroup"))
        home = meta.get("home")
        if home and Path(home).parent == self.jobs_root:
            shutil.rmtree(home, ignore_errors=True)

    def _signal(self, handle: str, sig: int) -> None:
        """Signal the job's process group (the wrapper's, before the job exists)."""
        wrapper = self._pid(handle)
        if wrapper is None:
            return
        pid = wrapper
        try:  # the job's own group while the wrapper (its parent, checked) still waits for it
            job = int((self.root / handle / "job.pid").read_text())
            if psutil.Process(job).ppid() == wrapper:
                pid = job
        except (OSError, ValueError, psutil.Error):
            pass
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def cancel(self, handle: str) -> None:
        """Terminate the whole process group; escalate to SIGKILL after a grace period."""
        self._kill_at.setdefault(handle, time.time() + KILL_GRACE_S)
        self._signal(handle, signal.SIGTERM)

    def read_log(self, handle: str, offset: int) -> bytes:
        try:
            with open(self.root / handle / "output.log", "rb") as f:
                f.seek(offset)
                return f.read(256 * 1024)
        except FileNotFoundError:
            return b""


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
