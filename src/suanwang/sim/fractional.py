"""Fractional GPU requests in the simulator: the trace format, a replay over one pool of shared cards, and
GPU fragmentation reported next to utilisation.

Trace format: the simulator's generic CSV with ``devices`` as a decimal (``0.25`` is a quarter of a card,
``2`` two whole cards; a fraction above one card is refused) and an optional ``device_memory_gb`` per card.
``replay`` is the event loop the tests and ``bench/fractional.py`` share; ``gpu_fragmentation`` is the
measure the main simulator can report beside its utilisation.
"""

from __future__ import annotations

import csv
import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from suanwang.domain.packing import WHOLE, Packer, Request, Sharing, fragmentation
from suanwang.errors import InvalidSpec

MAX_CARDS = 1024


@dataclass(frozen=True, slots=True)
class FracJob:
    id: str
    submit_s: float
    duration_s: float
    share: int  # milli-cards
    memory_mib: int = 0


def parse_share(text: str) -> int:
    """``devices`` of a trace row as milli-cards: 0 < x < 1 a fraction (to 1/1000), else whole cards."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidSpec(f"devices {text[:30]!r} is not a number") from None
    if not value.is_finite() or value <= 0 or value > MAX_CARDS:
        raise InvalidSpec(f"devices must lie within (0, {MAX_CARDS}] (got {text[:30]})")
    milli = value * WHOLE
    if milli != milli.to_integral_value():
        raise InvalidSpec(f"devices {text[:30]}: at most three decimal places")
    if value > 1 and value != value.to_integral_value():
        raise InvalidSpec(f"devices {text[:30]}: more than one card must be whole cards")
    return int(milli)


def read_fractional_csv(path: str | Path) -> list[FracJob]:
    """Rows ``submit_s, duration_s, devices[, device_memory_gb]``; errors name the line and field."""
    out = []
    with open(path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                submit, duration = float(row["submit_s"]), float(row["duration_s"])
                if not (math.isfinite(submit) and math.isfinite(duration)) or submit < 0 or duration <= 0:
                    raise InvalidSpec("submit_s must be >= 0 and duration_s > 0, both finite")
                mem_gb = float(row.get("device_memory_gb") or 0)
                if not math.isfinite(mem_gb) or not 0 <= mem_gb <= 4096:
                    raise InvalidSpec("device_memory_gb must lie within 0..4096")
                out.append(FracJob(f"j{line}", submit, duration, parse_share(row["devices"]), int(mem_gb * 1024)))
            except KeyError as exc:
                raise InvalidSpec(f"{path}:{line}: missing column {exc}") from exc
            except (InvalidSpec, ValueError) as exc:
                raise InvalidSpec(f"{path}:{line}: {getattr(exc, 'message', exc)}") from exc
    return out


def gpu_fragmentation(used_per_card: Iterable[int]) -> float:
    """Fragmentation of a set of cards from the milli-cards held on each (see ``domain.packing``)."""
    return fragmentation(used_per_card)


@dataclass(frozen=True, slots=True)
class FractionalReport:
    placements: int
    allocated_share: float  # time-weighted share of the cards held, 0..1
    requested_share: float  # time-weighted share the running jobs asked for (below allocated without sharing)
    fragmentation: float  # time-weighted, 0..1
    mean_wait_s: float
    max_whole_wait_s: float  # longest wait of a whole-card job
    makespan_s: float
    unplaced: int  # jobs that could never fit (e.g. more memory than a card has)


def replay(jobs: Sequence[FracJob], *, cards: int, memory_mib: int, sharing: Sharing | None = None,
           drain_after_s: float = 60.0, best_fit: bool = True, drain: bool = True,
           check: bool = False, whole_cards_only: bool = False) -> FractionalReport:
    """Run ``jobs`` through one pool of ``cards`` shared cards; at each event the waiting jobs are offered
    capacity in arrival order.  ``check`` asserts after every step that no card is overcommitted.
    ``whole_cards_only``: the baseline without sharing (a fraction holds a whole card)."""
    packer = Packer(cards, memory_mib, sharing, drain_after_s=drain_after_s, best_fit=best_fit, drain=drain)
    order = sorted(jobs, key=lambda j: (j.submit_s, j.id))
    ends: list[tuple[float, str]] = []
    waiting: list[FracJob] = []
    waits: list[float] = []
    whole_wait = 0.0
    i = placements = unplaced = 0
    now = last = 0.0
    share_area = frag_area = asked_area = 0.0
    asked = 0  # milli-cards the running jobs asked for
    asked_of: dict[str, int] = {}
    wakes: list[float] = []  # drain deadlines: a whole job waiting that long must be offered capacity again
    while i < len(order) or ends or waiting:
        nxt = min(order[i].submit_s if i < len(order) else math.inf, ends[0][0] if ends else math.inf,
                  wakes[0] if wakes else math.inf)
        if math.isinf(nxt):
            unplaced += len(waiting)  # nothing will ever change: these never fit
            break
        share_area += packer.allocated_share() * (nxt - last)
        asked_area += asked / (WHOLE * cards) * (nxt - last)
        frag_area += packer.fragmentation() * (nxt - last)
        now = last = nxt
        while ends and ends[0][0] <= now:
            done = heapq.heappop(ends)[1]
            packer.release(done)
            asked -= asked_of.pop(done)
        while wakes and wakes[0] <= now:
            heapq.heappop(wakes)
        while i < len(order) and order[i].submit_s <= now:
            job = order[i]
            if job.memory_mib > memory_mib or (job.share >= WHOLE and job.share // WHOLE > cards):
                unplaced += 1
            else:
                waiting.append(job)
                if job.share >= WHOLE and drain:
                    heapq.heappush(wakes, job.submit_s + drain_after_s)
            i += 1
        still = []
        for job in waiting:
            share = max(WHOLE, job.share) if whole_cards_only else job.share
            grant = packer.place(Request(job.id, share, job.memory_mib, job.submit_s), now=now)
            if grant is None:
                still.append(job)
                continue
            placements += 1
            asked += job.share
            asked_of[job.id] = job.share
            waits.append(now - job.submit_s)
            if job.share >= WHOLE:
                whole_wait = max(whole_wait, now - job.submit_s)
            heapq.heappush(ends, (now + job.duration_s, job.id))
        waiting = still
        if check:
            for c in packer.cards:
                assert 0 <= c.used <= WHOLE and 0 <= c.mem_used <= c.memory_mib, c
    span = max(now, 1e-9)
    return FractionalReport(placements, share_area / span, asked_area / span, frag_area / span,
                            sum(waits) / len(waits) if waits else 0.0, whole_wait, now, unplaced)
