"""Which system uid runs a tenant's jobs on this machine.

Each tenant gets a uid of its own from a configured range (its gid is the same number), so one
tenant's jobs cannot read another's files, signal its processes or read the agent's state.
No passwd entry is created: numbers from a range need no ``useradd`` (absent from many images),
leave ``/etc/passwd`` alone and cannot run out of system uids.  The tenant → uid map is kept in
the jobs root itself (``.uids.json``, root only), beside the files whose ownership it decides:
while they exist the mapping stays, and several agents sharing a jobs root agree on it (the
file is updated under a lock).  A uid held by a real account (passwd or group entry) is skipped.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import json
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

# Far above login accounts (UID_MAX 60000), system uids and the usual /etc/subuid ranges.
DEFAULT_UID_RANGE = (1_900_000_000, 1_900_999_999)


@dataclass(frozen=True, slots=True)
class JobUser:
    uid: int
    gid: int
    name: str  # a label for USER/LOGNAME and logs: sw-<short hash of the tenant id>


def label(tenant: str) -> str:
    return "sw-" + hashlib.sha256(tenant.encode()).hexdigest()[:10]


def _mapped(first: int, last: int, map_text: str) -> bool:
    """Whether [first, last] lies inside one line of a /proc/self/{uid,gid}_map."""
    for line in map_text.splitlines():
        inside, _, count = (int(x) for x in line.split())
        if inside <= first and last < inside + count:
            return True
    return False


def check_range(first: int, last: int) -> None:
    """Refuse a range that includes root, is empty, or this user namespace cannot map."""
    if not 0 < first <= last < 2**32 - 1:
        raise ValueError(f"uid range {first}-{last}: need 0 < first <= last < 4294967295")
    for kind in ("uid", "gid"):
        try:
            text = Path(f"/proc/self/{kind}_map").read_text()
        except OSError:
            continue
        if not _mapped(first, last, text):
            raise ValueError(f"uid range {first}-{last} is not mapped in this user namespace ({kind}_map: "
                             f"{' | '.join(text.split(chr(10))[:3]).strip()}); set local.uid_range to a mapped one")


def _taken(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        pass
    try:
        grp.getgrgid(uid)
        return True
    except KeyError:
        return False


class JobUsers:
    """Allocates and remembers one uid per tenant under ``jobs_root``."""

    def __init__(self, jobs_root: Path, uid_range: tuple[int, int] = DEFAULT_UID_RANGE) -> None:
        check_range(*uid_range)
        self.first, self.last = uid_range
        self.file = jobs_root / ".uids.json"
        self._lock = jobs_root / ".uids.lock"
        self._known: dict[str, int] = {}

    def user_for(self, tenant: str) -> JobUser:
        if not tenant:
            raise ValueError("the task does not say whose job it is (no tenant): refusing to run it")
        uid = self._known.get(tenant)
        if uid is None:
            uid = self._known[tenant] = self._allocate(tenant)
        return JobUser(uid=uid, gid=uid, name=label(tenant))

    def _allocate(self, tenant: str) -> int:
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                table: dict[str, int] = json.loads(self.file.read_text())
            except FileNotFoundError:
                table = {}
            if tenant in table:
                return int(table[tenant])
            used = set(table.values())
            span = self.last - self.first + 1
            start = int(hashlib.sha256(tenant.encode()).hexdigest()[:12], 16) % span
            for i in range(span):
                uid = self.first + (start + i) % span
                if uid not in used and not _taken(uid):
                    break
            else:
                raise ValueError(f"uid range {self.first}-{self.last} is used up")
            table[tenant] = uid
            tmp = self.file.with_suffix(".tmp")
            tmp.write_text(json.dumps(table))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.file)
            return uid
        finally:
            os.close(fd)
