"""cgroup v2 limits for local jobs: memory.max, cpu.max and pids.max from what the job asked for.

Why a cgroup per attempt: a job's children (and children that leave its process group) stay
inside it, so the limits bind the whole tree and ``cgroup.kill`` ends it at once.  The agent
needs a writable subtree of a cgroup v2 hierarchy with the memory, cpu and pids controllers
(root on a cgroup v2 host, or a subtree delegated to the agent's user); where the host has
none (cgroup v1 or hybrid, a read-only mount in a container), ``probe`` says which limits are
not enforced and why, and jobs run without them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "cpu", "pids")
LIMIT_FILE = {"memory": "memory.max", "cpu": "cpu.max", "pids": "pids.max"}
MIN_MEMORY_BYTES = 64 * 2**20  # a job asking for 0 GiB still gets a bound, not the whole machine
CPU_PERIOD_US = 100_000


def cgroup2_mount(mountinfo: str | None = None) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup``, or ``.../unified`` on hybrid hosts)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return Path(left.split(" ")[4])
    return None


@dataclass(frozen=True, slots=True)
class Cgroups:
    """A writable cgroup v2 directory under which each attempt gets its own child."""

    root: Path
    controllers: tuple[str, ...]  # the ones that could be enabled: their limits are enforced
    pids_max: int = 4096

    def limits(self, *, cores: int, memory_gb: float) -> dict[str, str]:
        """The interface files and values for one job (only for the enforced controllers)."""
        values = {
            "memory.max": str(max(MIN_MEMORY_BYTES, int(memory_gb * 2**30))),
            "cpu.max": f"{max(1, cores) * CPU_PERIOD_US} {CPU_PERIOD_US}",
            "pids.max": str(self.pids_max),
        }
        return {LIMIT_FILE[c]: values[LIMIT_FILE[c]] for c in self.controllers}

    def create(self, name: str, *, cores: int, memory_gb: float) -> Path:
        """Make the attempt's cgroup and write its limits; raises OSError when the host refuses."""
        path = self.root / name
        path.mkdir(exist_ok=True)
        for file, value in self.limits(cores=cores, memory_gb=memory_gb).items():
            (path / file).write_text(value)
        if "memory" in self.controllers and (path / "memory.swap.max").exists():
            (path / "memory.swap.max").write_text("0")  # memory.max alone would let the job swap past it
        return path


def end(path: str | os.PathLike[str] | None) -> None:
    """Kill whatever is left in an attempt's cgroup and remove it (best effort, idempotent)."""
    if not path:
        return
    p = Path(path)
    try:
        (p / "cgroup.kill").write_text("1")
    except OSError:
        pass
    try:
        p.rmdir()
    except OSError:
        pass


def probe(root: Path | None, *, pids_max: int = 4096, mountinfo: str | None = None) -> tuple[Cgroups | None, str]:
    """The cgroups jobs can get here, and a reason naming the limits that are not enforced ("" if none).

    ``root`` defaults to ``suanwang`` under the cgroup v2 mount.  The parent must offer the
    controllers; they are enabled for ``root``'s children through its ``cgroup.subtree_control``.
    """
    not_enforced = ", ".join(LIMIT_FILE[c] for c in CONTROLLERS)
    if root is None:
        mount = cgroup2_mount(mountinfo)
        if mount is None:
            return None, f"{not_enforced} not enforced: no cgroup v2 hierarchy is mounted"
        root = mount / "suanwang"
    try:
        offered = (root.parent / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return None, f"{not_enforced} not enforced: cannot read {root.parent}/cgroup.controllers ({exc.strerror})"
    usable = [c for c in CONTROLLERS if c in offered]
    if not usable:
        return None, (f"{not_enforced} not enforced: the cgroup v2 hierarchy at {root.parent} offers none of the "
                      f"{'/'.join(CONTROLLERS)} controllers (a cgroup v1 or hybrid host?)")
    try:
        root.mkdir(exist_ok=True)
    except OSError as exc:
        return None, f"{not_enforced} not enforced: cannot create {root} ({exc.strerror}); run as root or delegate it"
    enabled = []
    for c in usable:
        try:
            (root / "cgroup.subtree_control").write_text(f"+{c}")
            enabled.append(c)
        except OSError:
            pass
    if not enabled:
        return None, f"{not_enforced} not enforced: cannot enable controllers in {root}/cgroup.subtree_control"
    missing = [c for c in CONTROLLERS if c not in enabled]
    reason = ""
    if missing:
        reason = (f"{', '.join(LIMIT_FILE[c] for c in missing)} not enforced: controller(s) {', '.join(missing)} "
                  f"unavailable in {root}")
    return Cgroups(root=root, controllers=tuple(enabled), pids_max=pids_max), reason
