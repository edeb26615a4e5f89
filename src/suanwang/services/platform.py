"""The platform process: database, scheduler and the background control loop.

The loop requeues lapsed leases, marks silent sites offline, places
waiting jobs, rates usage and seals committed audit rows and transfers into
their hash chains.  A submit wakes it at once, so placement latency is not bound
to the tick.  ``LoopHealth`` keeps what /health needs to say whether the loop
is alive: consecutive failed passes and when the last pass succeeded.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from suanwang.domain.job import JobSpec
from suanwang.domain.placement import Scheduler
from suanwang.observability import metrics
from suanwang.services import billing, chain, market, scheduling
from suanwang.services.ledger_store import reconcile
from suanwang.services.planner import GridPlanner
from suanwang.settings import LoopSettings as Settings  # the loop's knobs live with the operator's settings
from suanwang.store.db import Database

log = logging.getLogger("suanwang.platform")


class LoopHealth:
    """What the control loop did lately, on an injected clock (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started_at: float | None = None  # None: no loop runs in this process (tests step it by hand)
        self.last_ok_at: float | None = None
        self.failures = 0  # consecutive failed passes
        self.last_error = ""

    def ok(self) -> None:
        self.last_ok_at = self.clock()
        self.failures = 0
        self.last_error = ""

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = type(exc).__name__  # /health is public: the message (SQL, hosts) stays in the log

    def problem(self, settings: Settings) -> str | None:
        """Why the loop is unwell, or None."""
        if self.failures >= settings.loop_failures_max:
            return f"control loop failed {self.failures} passes in a row (last: {self.last_error})"
        if self.started_at is None:
            return None
        since = self.last_ok_at if self.last_ok_at is not None else self.started_at
        idle_s = self.clock() - since
        if idle_s > settings.loop_stale_s:
            what = "no control-loop pass succeeded" if self.last_ok_at is None else "the control loop has not run"
            return f"{what} for {idle_s:.0f} s (limit {settings.loop_stale_s:g} s)"
        return None


class Platform:
    def __init__(self, db: Database, settings: Settings | None = None, scheduler: Scheduler | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``scheduler`` fixes the policy (tests, benchmarks); by default the grid planner builds one per pass.
        ``clock`` (monotonic seconds) times the loop's health."""
        self.db = db
        self.settings = settings or Settings()
        self.planner = GridPlanner()
        self.fixed_scheduler = scheduler
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._next_reap = 0.0
        self.health = LoopHealth(clock)
        self._next_reconcile = clock()  # the first pass reconciles, so the metric is known from the start

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
                    expired = scheduling.reap_expired_leases(s, now=now)
                    scheduling.mark_offline_sites(s, now=now, timeout_s=self.settings.site_timeout_s)
                metrics.LEASE_EXPIRIES.inc(len(expired))
            with metrics.SCHEDULING_PASS.time(), self.db.transaction() as s:
                if scheduling.claim_scheduling_pass(s):
                    scheduler = self.fixed_scheduler or functools.partial(self.planner.scheduler, s)
                    placed = scheduling.place_waiting_jobs(s, scheduler, now=now,
                                                           engine_queue=self.settings.engine_queue)
                    metrics.PLACEMENTS.inc(len(placed))
            billing.rate_all(self.db, limit=self.settings.rating_batch, max_batches=10)  # own transactions
            chain.seal_all(self.db)  # after rating, off its path: hash-chain what has committed (own transactions)
            market.clear_due(self.db, now=now)  # sessions whose gate closed, once each (own transactions)

    def run_pass(self) -> None:
        """One pass of the loop as the loop runs it: a failure is logged and counted, never raised."""
        try:
            self.tick()
            if self.settings.reconcile_s and self.health.clock() >= self._next_reconcile:
                self._next_reconcile = self.health.clock() + self.settings.reconcile_s
                self.reconcile_ledger()
        except Exception as exc:  # keep the loop alive; the next pass retries from committed state
            self.health.failed(exc)
            metrics.LOOP_FAILURES.inc()
            log.exception("control loop pass failed (%d in a row)", self.health.failures)
        else:
            self.health.ok()

    def reconcile_ledger(self) -> bool:
        """Reconcile the ledger now and publish the result as a metric; True when consistent."""
        with self.db.sessions() as s:
            result = reconcile(s)
        metrics.record_reconciliation(result.ok)
        if not result.ok:
            log.error("ledger reconciliation found problems", extra={"reconciliation": result.as_json()})
        return result.ok

    def check_database(self) -> str | None:
        """Why the database cannot be reached, or None.  The reason names the error class, not the URL."""
        try:  # the DBAPI connection itself: no BEGIN, so never waiting behind SQLite's writer
            conn = self.db.engine.raw_connection()
            try:
                conn.cursor().execute("SELECT 1")
            finally:
                conn.close()
        except Exception as exc:
            return f"database unreachable ({type(exc).__name__})"
        return None

    def start(self) -> None:
        self.health.started_at = self.health.clock()
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
            self.run_pass()
            last_pass_s = time.perf_counter() - started
