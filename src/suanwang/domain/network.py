"""Network paths between sites: latency, bottleneck bandwidth, transfer time (算力路由).

The scheduler needs, for every pair of sites, how long a byte takes to get
there and how fast a bulk copy runs.  A path is the lowest-latency route over
the grid's links (Dijkstra); its latency is the sum of its links' latencies
and its bandwidth the smallest link bandwidth on it (the bottleneck).  A
direct east-west link (一跳直达) is just a link with ``direct=True``: when it
is shorter than the backbone route it wins, and ``Path.direct`` says so.

Transfer time of ``gb`` gigabytes::

    transfer_s = latency_ms / 1000 + gb * 8 / bandwidth_gbps

(one-way latency once, then the copy at the bottleneck rate).  Same-site
transfers are free; unreachable sites have infinite latency and time.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from suanwang.domain.grid import Link, SiteId
from suanwang.errors import InvalidSpec


@dataclass(frozen=True, slots=True)
class Path:
    """The best route from one site to another."""

    sites: tuple[SiteId, ...]
    latency_ms: float
    bandwidth_gbps: float
    direct: bool  # every hop is a direct link (or the path is one hop on one)

    def transfer_s(self, gb: float) -> float:
        return transfer_time_s(gb, self.latency_ms, self.bandwidth_gbps)


def transfer_time_s(gb: float, latency_ms: float, bandwidth_gbps: float) -> float:
    """Seconds to move ``gb`` GB over a path: latency + size / bandwidth."""
    if gb <= 0:
        return 0.0 if latency_ms == 0 else latency_ms / 1000.0
    if bandwidth_gbps <= 0 or math.isinf(latency_ms):
        return math.inf
    return latency_ms / 1000.0 + gb * 8.0 / bandwidth_gbps


class Network:
    """All-pairs best paths over a set of sites and links, computed once."""

    def __init__(self, sites: Iterable[SiteId], links: Sequence[Link]) -> None:
        self.sites: tuple[SiteId, ...] = tuple(dict.fromkeys(sites))
        self.index = {s: i for i, s in enumerate(self.sites)}
        for link in links:
            for end in (link.a, link.b):
                if end not in self.index:
                    raise InvalidSpec(f"link {link.a}-{link.b} names unknown site {end}", site=end)
        self._adj: dict[SiteId, list[Link]] = {s: [] for s in self.sites}
        for link in links:
            self._adj[link.a].append(link)
            self._adj[link.b].append(link)
        n = len(self.sites)
        self.latency_ms: np.ndarray = np.full((n, n), np.inf)
        self.bandwidth_gbps: np.ndarray = np.zeros((n, n))
        self._paths: dict[tuple[SiteId, SiteId], Path] = {}
        for src in self.sites:
            self._from(src)

    def _from(self, src: SiteId) -> None:
        """Dijkstra by latency from ``src``; ties broken towards wider bottlenecks."""
        best: dict[SiteId, tuple[float, float, tuple[SiteId, ...], bool]] = {src: (0.0, math.inf, (src,), True)}
        heap: list[tuple[float, float, int, SiteId]] = [(0.0, -math.inf, 0, src)]
        seq = 0
        done: set[SiteId] = set()
        while heap:
            lat, _neg_bw, _, site = heapq.heappop(heap)
            if site in done:
                continue
            done.add(site)
            _, bw, path, direct = best[site]
            for link in self._adj[site]:
                nxt = link.b if link.a == site else link.a
                cand = (lat + link.latency_ms, min(bw, link.bandwidth_gbps), (*path, nxt), direct and link.direct)
                old = best.get(nxt)
                if old is None or (cand[0], -cand[1]) < (old[0], -old[1]):
                    best[nxt] = cand
                    seq += 1
                    heapq.heappush(heap, (cand[0], -cand[1], seq, nxt))
        i = self.index[src]
        for dst, (lat, bw, path, direct) in best.items():
            j = self.index[dst]
            self.latency_ms[i, j] = lat
            self.bandwidth_gbps[i, j] = bw
            self._paths[(src, dst)] = Path(path, lat, bw, direct and len(path) == 2)

    def path(self, a: SiteId, b: SiteId) -> Path:
        """Best path from ``a`` to ``b``; an unreachable pair gives infinite latency."""
        if a not in self.index or b not in self.index:
            raise InvalidSpec(f"unknown site {a if a not in self.index else b}")
        return self._paths.get((a, b)) or Path((a, b), math.inf, 0.0, False)

    def latency(self, a: SiteId, b: SiteId) -> float:
        return float(self.latency_ms[self.index[a], self.index[b]])

    def transfer_s(self, a: SiteId, b: SiteId, gb: float) -> float:
        if a == b:
            return 0.0
        return self.path(a, b).transfer_s(gb)

    def transfer_row(self, src: SiteId, gb: float) -> np.ndarray:
        """Transfer seconds from ``src`` to every site (index order), vectorised."""
        i = self.index[src]
        lat = self.latency_ms[i]
        bw = self.bandwidth_gbps[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            t: np.ndarray = lat / 1000.0 + np.where(bw > 0, gb * 8.0 / np.where(bw > 0, bw, 1.0), np.inf)
        t[i] = 0.0
        out: np.ndarray = t
        return out
