"""Datasets at sites: what a dataset is, where it may live, and what a job needs staged.

A dataset is named and versioned per tenant (``name@version``), has a size in bytes and a
SHA-256 content hash, replicas at sites, and an optional data-sovereignty region: a replica may
be made, and a job reading it placed, only at a site of that region.  Pure: no database,
network or clock; the services apply what these functions decide.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from suanwang.errors import InvalidSpec

MAX_SIZE_BYTES = 2**50  # 1 PiB: more than any one dataset this platform moves, and within BIGINT
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
GB = 10**9  # transfers are metered in decimal gigabytes, as links are rated


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A reference to one dataset version: ``name@version``, or ``name`` for the latest."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def parse_ref(text: str) -> DatasetRef:
    """``"corpus@3"`` → DatasetRef("corpus", 3); ``"corpus"`` → the latest version."""
    name, sep, version = text.partition("@")
    check_name(name)
    if not sep:
        return DatasetRef(name)
    if not version.isdigit() or not 1 <= int(version) <= 2**31 - 1:
        raise InvalidSpec(f"dataset reference {text!r}: the version after '@' must be 1..2147483647")
    return DatasetRef(name, int(version))


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidSpec(f"dataset name {name!r}: 1-100 letters, digits, '.', '_' or '-', starting with a "
                          "letter or digit")
    return name


@dataclass(frozen=True, slots=True)
class Dataset:
    """One registered version.  ``region`` "" means the data may go anywhere."""

    name: str
    version: int
    size_bytes: int
    sha256: str
    region: str = ""

    def __post_init__(self) -> None:
        check_name(self.name)
        if not 1 <= self.version <= 2**31 - 1:
            raise InvalidSpec(f"dataset {self.name}: version must be 1..2147483647")
        if not 0 <= self.size_bytes <= MAX_SIZE_BYTES:
            raise InvalidSpec(f"dataset {self.name}: size_bytes must be 0..{MAX_SIZE_BYTES}")
        if not SHA256_RE.match(self.sha256):
            raise InvalidSpec(f"dataset {self.name}: sha256 must be 64 lower-case hex digits")

    @property
    def gb(self) -> float:
        return self.size_bytes / GB


def site_allowed(dataset_region: str, site_region: str) -> bool:
    """Data sovereignty: a dataset pinned to a region may only sit, or be read, at a site of that region."""
    return not dataset_region or dataset_region == site_region


@dataclass(frozen=True, slots=True)
class StagingNeed:
    """What a job placed at ``site`` needs before it may start: one transfer per missing input."""

    dataset_id: str
    source: str  # a site that holds a verified replica
    target: str
    size_bytes: int


def staging_plan(
    inputs: Iterable[tuple[str, str, int]], replicas: Mapping[str, frozenset[str]], site: str,
    online: frozenset[str], *, latency_ms: Mapping[tuple[str, str], float] | None = None,
) -> tuple[list[StagingNeed], list[str]]:
    """For a job at ``site`` reading ``inputs`` (dataset id, region-checked name, size), which transfers to
    order, and which inputs cannot be staged now (with the reason a user can read).

    The source is the online replica nearest by latency (ties by name, so the choice is deterministic).
    """
    needs: list[StagingNeed] = []
    blocked: list[str] = []
    lat = latency_ms or {}
    for dataset_id, label, size in inputs:
        held = replicas.get(dataset_id, frozenset())
        if site in held:
            continue
        sources = sorted(s for s in held if s in online)
        if not sources:
            where = ", ".join(sorted(held)) or "no site"
            blocked.append(f"input {label} is held only at {where}, and no holding site's agent is online")
            continue
        best = min(sources, key=lambda s: (lat.get((s, site), float("inf")), s))
        needs.append(StagingNeed(dataset_id, best, site, size))
    return needs, blocked


def predicted_transfer_s(size_bytes: int, bandwidth_gbps: float, latency_ms: float) -> float:
    """What the scheduler's network model predicts for moving ``size_bytes`` over a link."""
    if bandwidth_gbps <= 0:
        return float("inf")
    return latency_ms / 1000.0 + size_bytes * 8 / (bandwidth_gbps * 1e9)


HOUR_S = 3600.0  # staged replicas' storage is metered in hours from their arrival


@dataclass(frozen=True, slots=True)
class StoragePeriod:
    """One metered stretch of a staged replica's storage: hour ``hour`` from its arrival, ``[start, end)``."""

    hour: int
    start: float
    end: float


def storage_periods(arrived_at: float, metered_until: float, now: float, end_at: float | None, *,
                    limit: int = 1000) -> list[StoragePeriod]:
    """The storage hours to meter now, after ``metered_until`` (where the last sweep stopped).

    Hour ``n`` is ``[arrived_at + n h, arrived_at + (n+1) h)``; it is metered once it has ended by ``now``.
    ``end_at`` (the time the replica's deletion was ordered) cuts the last hour short, and nothing after it is
    metered.  The hours are computed from the arrival, never from the sweeps' times, so the same hour has the
    same bounds however often, or late, the sweeps run (the ledger key of hour ``n`` names one fixed amount).
    """
    out: list[StoragePeriod] = []
    if end_at is not None and metered_until >= end_at:
        return out  # metered to the end (the last, short hour included)
    n = max(0, round((metered_until - arrived_at) / HOUR_S))  # metered_until sits on an hour's boundary
    while len(out) < limit:
        start, end = arrived_at + n * HOUR_S, arrived_at + (n + 1) * HOUR_S
        if end_at is not None:
            if end_at <= start:
                break
            end = min(end, end_at)
        if end > now:
            break
        out.append(StoragePeriod(n, start, end))
        n += 1
    return out


def collectable(last_used_at: float, now: float, grace_s: float, *, needed: bool) -> bool:
    """A staged replica nobody needs is collected once ``grace_s`` has passed since it was last needed."""
    return not needed and now - last_used_at >= grace_s
