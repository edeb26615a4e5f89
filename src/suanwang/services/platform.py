"""The platform process: database, scheduler and the background control loop.

The loop requeues lapsed leases, marks silent sites offline and places
waiting jobs.  A submit wakes it at once, so placement latency is not bound
to the tick.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from suanwang.domain.placement import FirstFit, Scheduler
from suanwang.services import billing, scheduling
from suanwang.store.db import Database

log = logging.getLogger("suanwang.platform")


@dataclass(frozen=True, slots=True)
class Settings:
    lease_s: float = 15.0  # an agent that misses heartbeats this long loses its jobs
    site_timeout_s: float = 30.0  # a site silent this long shows offline
    tick_s: float = 0.5  # control-loop period when nothing wakes it
    min_tick_s: float = 0.05  # at most this often, so a burst of submits is placed in batches
    rating_batch: int = 1000  # usage records rated per transaction


class Platform:
    def __init__(self, db: Database, settings: Settings | None = None, scheduler: Scheduler | None = None) -> None:
        self.db = db
        self.settings = settings or Settings()
        self.scheduler: Scheduler = scheduler or FirstFit()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._next_reap = 0.0

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
                    scheduling.place_waiting_jobs(s, self.scheduler, now=now)
            billing.rate_all(self.db, limit=self.settings.rating_batch, max_batches=10)  # own transactions

    def start(self) -> None:
        with self.db.transaction() as s:
            scheduling.extend_leases_after_restart(s, now=time.time(), lease_s=2 * self.settings.lease_s)
        self._thread = threading.Thread(target=self._run, name="suanwang-control-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.tick_s)
            time.sleep(self.settings.min_tick_s)  # let a burst of wake-ups coalesce into one pass
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.tick()
            except Exception:  # keep the loop alive; the next tick retries from committed state
                log.exception("control loop tick failed")
