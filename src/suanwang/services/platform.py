"""The platform process: database, scheduler and the background control loop.

The loop requeues lapsed leases, marks silent sites offline and places
waiting jobs.  A submit wakes it at once, so placement latency is not bound
to the tick.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from suanwang.domain.job import JobSpec
from suanwang.domain.placement import Scheduler
from suanwang.services import billing, scheduling
from suanwang.services.planner import GridPlanner
from suanwang.store.db import Database

log = logging.getLogger("suanwang.platform")


@dataclass(frozen=True, slots=True)
class Settings:
    lease_s: float = 15.0  # an agent that misses heartbeats this long loses its jobs
    site_timeout_s: float = 30.0  # a site silent this long shows offline
    tick_s: float = 0.5  # control-loop period when nothing wakes it
    restart_grace_s: float = 30.0  # after a platform restart, agents get this long to reconnect
    min_tick_s: float = 0.05  # at most this often, so a burst of submits is placed in batches
    loop_share: float = 0.33  # under load, the control loop pauses twice as long as its last pass took
    engine_queue: float = 1.0  # Slurm/Ray pools may hold this multiple of their capacity (their own queue)
    rating_batch: int = 1000  # usage records rated per transaction
    usage_clock_skew_s: float = 120.0  # usage may start this long before its lease and end this long after now


class Platform:
    def __init__(self, db: Database, settings: Settings | None = None, scheduler: Scheduler | None = None) -> None:
        """``scheduler`` fixes the policy (tests, benchmarks); by default the grid planner builds one per pass."""
        self.db = db
        self.settings = settings or Settings()
        self.planner = GridPlanner()
        self.fixed_scheduler = scheduler
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._next_reap = 0.0

    def check_submit(self, session: Session, specs: Sequence[JobSpec]) -> None:
        """Tell the consumer at submit when no pool can meet a job's deadline (others are checked by the store)."""
        if any(spec.deadline is not None for spec in specs):
            now = time.time()
            for spec in specs:
                if spec.deadline is not None:
                    self.planner.check_submit(session, spec, now=now)

    def wake(self) -> None:
        self._wake.set()

    def tick(self, *, reap: bool = False) -> None:
        """One pass of the control loop, each step in its own transaction.

        Lapsed leases are reaped at most once per ``tick_s`` unless ``reap`` forces it.
        """
        with self._lock:
            now = time.time()
            if reap or now >= self._next_reap:  # leases are coarse; placement is what a wake-up is for
                self._next_reap = now + self.settings.tick_s
                with self.db.transaction() as s:
                    scheduling.reap_expired_leases(s, now=now)
                    scheduling.mark_offline_sites(s, now=now, timeout_s=self.settings.site_timeout_s)
            with self.db.transaction() as s:
                if scheduling.claim_scheduling_pass(s):
                    scheduler = self.fixed_scheduler or functools.partial(self.planner.scheduler, s)
                    scheduling.place_waiting_jobs(s, scheduler, now=now, engine_queue=self.settings.engine_queue)
            billing.rate_all(self.db, limit=self.settings.rating_batch, max_batches=10)  # own transactions

    def start(self) -> None:
        with self.db.transaction() as s:
            scheduling.extend_leases_after_restart(s, now=time.time(), lease_s=self.settings.restart_grace_s)
        self._thread = threading.Thread(target=self._run, name="suanwang-control-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        last_pass_s = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.settings.tick_s)
            # Let a burst of wake-ups coalesce into one pass.  The pause grows with the last pass, so under
            # load the loop takes at most ``loop_share`` of the process and the API keeps the rest: a pass
            # over a bigger batch costs less per job than many small ones.
            share = min(max(self.settings.loop_share, 0.01), 1.0)
            time.sleep(max(self.settings.min_tick_s, last_pass_s * (1 - share) / share))
            self._wake.clear()
            if self._stop.is_set():
                break
            started = time.perf_counter()
            try:
                self.tick()
            except Exception:  # keep the loop alive; the next tick retries from committed state
                log.exception("control loop tick failed")
            last_pass_s = time.perf_counter() - started
