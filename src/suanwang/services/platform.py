"""The platform process: database, scheduler and the background control loop.

The loop requeues lapsed leases, marks silent sites offline, places
waiting jobs, rates usage and seals committed audit rows and transfers into
their hash chains.  It runs when work arrives (a submit, a pool registered, a
job ended, usage stored: ``wake``) and otherwise only on a slow safety tick
(``tick_s``), so an idle platform is idle.  Jobs it places wake the long-polls of
their sites' agents (``Wakeups``; across replicas by PostgreSQL NOTIFY).
``LoopHealth`` keeps what /health needs to say whether the loop is alive:
consecutive failed passes and when the last pass succeeded.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from suanwang.domain.job import JobSpec
from suanwang.domain.market.session import Schedule
from suanwang.domain.placement import Scheduler
from suanwang.observability import metrics
from suanwang.services import (
    billing,
    chain,
    job_data,
    market,
    market_reservations,
    replica_gc,
    scheduling,
    workflows,
)
from suanwang.services.planner import GridPlanner
from suanwang.services.wakeups import Listener, Wakeups, channel_for, lease_topic, notify_sql
from suanwang.settings import LoopSettings as Settings  # the loop's knobs live with the operator's settings
from suanwang.store.db import Database, is_postgres
from suanwang.store.sql_ledger import reconcile

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
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        """``scheduler`` fixes the policy (tests, benchmarks); by default the grid planner builds one per pass.
        ``clock`` (monotonic seconds) times the loop's health; ``wall_clock`` (epoch seconds) dates what the
        loop and the agent protocol write."""
        self.db = db
        self.now = wall_clock
        self.wakeups = Wakeups()
        self.channel = channel_for(db.url) if is_postgres(db.engine) else None
        self.listener: Listener | None = None
        self.settings = settings or Settings()
        self.market_schedule = Schedule(**dict(self.settings.market))  # the market's sessions (docs/market.md)
        self.planner = GridPlanner()
        self.fixed_scheduler = scheduler
        self._wake = threading.Event()  # set by _due: the loop has work, which of it in the flags below
        self._due_lock = threading.Lock()
        self._place_due = self._books_due = True  # the first passes of a started loop run at once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._next_reap = 0.0
        self.health = LoopHealth(clock)
        self.pass_count = 0  # passes run by the loop (tests see that an idle loop sleeps)
        self._next_reconcile = clock()  # the first pass reconciles, so the metric is known from the start

    def check_submit(self, session: Session, specs: Sequence[JobSpec]) -> None:
        """Tell the consumer at submit when no pool can meet a job's deadline (others are checked by the store)."""
        if any(spec.deadline is not None for spec in specs):
            now = self.now()
            for spec in specs:
                if spec.deadline is not None:
                    self.planner.check_submit(session, spec, now=now)

    def wake(self, *, place: bool = True, books: bool = True) -> None:
        """There is work for the control loop (a submit, a freed slot, usage to rate): run a pass soon.

        A caller that knows which half has work says so (a submit: ``books=False``), so a submit's
        placement and its agent's lease do not wait behind a books pass that had nothing to do; what the
        other half would have found (an audit row to seal) waits at most for the safety tick.
        """
        self._due(place=place, books=books)

    def lease_poll_s(self, wait_s: float) -> float:
        """How long an agent's long-poll waits for a wake-up before it looks at the database by itself.

        SQLite: the whole call (one process, whose own placements wake it).  PostgreSQL with this
        process's listener connected: the whole call too, since every placement's NOTIFY wakes it and
        a listener that loses its connection wakes every waiter, which then looks again on the safety
        timer; without a connected listener, every ``lease_poll_s``.
        """
        if self.channel is None or (self.listener is not None and self.listener.connected.is_set()):
            return wait_s
        return min(wait_s, self.settings.lease_poll_s)

    def _notify_replicas(self, session: Session, sites: set[str]) -> None:
        """Wake the long-polls of these sites' agents on every replica once ``session`` commits.

        The NOTIFY rides in the placing transaction (PostgreSQL sends it only on commit); this
        process's own long-polls are woken after the commit (``tick``), without a round trip.
        """
        if sites and self.channel is not None:
            notify_sql(session, self.channel, {lease_topic(site) for site in sites})

    def tick(self, *, reap: bool = False) -> None:
        """One whole pass of the control loop (placement, then the books), each step in its own transaction.

        Lapsed leases are reaped at most once per ``tick_s`` unless ``reap`` forces it.
        """
        self.place_pass(reap=reap)
        self.books_pass()

    def place_pass(self, *, reap: bool = False) -> None:
        """Reap lapsed leases when due, place waiting jobs and wake their sites' long-polls."""
        with self._lock:
            now = self.now()
            if reap or now >= self._next_reap:  # leases are coarse; placement is what a wake-up is for
                self._next_reap = now + self.settings.tick_s
                with self.db.transaction() as s:
                    expired = scheduling.reap_expired_leases(s, now=now)
                    scheduling.mark_offline_sites(s, now=now, timeout_s=self.settings.site_timeout_s)
                    market_reservations.settle_failed_contracts(s, now=now)  # refund + penalty, once per line
                metrics.LEASE_EXPIRIES.inc(len(expired))
                with self.db.transaction() as s:  # staged replicas: storage hours metered, the unneeded collected
                    replica_gc.sweep(s, now=now, grace_s=self.settings.replica_grace_s)
            with self.db.transaction() as s:  # before placement: a step started now is placed in this same pass
                job_data.settle(s)  # declared outputs of ended jobs become dataset versions
                workflows.advance_all(s)  # steps whose inputs now exist start; ended steps retry or fail
            placed = []
            with metrics.SCHEDULING_PASS.time(), self.db.transaction() as s:
                if scheduling.claim_scheduling_pass(s):
                    scheduler = self.fixed_scheduler or functools.partial(self.planner.scheduler, s)
                    placed = scheduling.place_waiting_jobs(s, scheduler, now=now,
                                                           engine_queue=self.settings.engine_queue)
                    self._notify_replicas(s, {p.site for p in placed})
                else:
                    self._due(place=True)  # another replica is placing: look again after it, not a tick later
            for site in {p.site for p in placed}:  # committed: this process's long-polls find the jobs
                self.wakeups.notify(lease_topic(site))
            metrics.PLACEMENTS.inc(len(placed))

    def books_pass(self) -> None:
        """Rate usage, seal the chains and clear market sessions (outputs and workflows move with placement)."""
        with self._lock:
            now = self.now()
            batches = 10
            rated = billing.rate_all(self.db, limit=self.settings.rating_batch, max_batches=batches)  # own transactions
            if rated >= self.settings.rating_batch * batches:
                self._due(books=True)  # a backlog: the next pass goes on with it
            chain.seal_all(self.db)  # after rating, off its path: hash-chain what has committed (own transactions)
            # sessions whose gate closed, once each (own transactions)
            market.clear_due(self.db, now=now, schedule=self.market_schedule)

    def _due(self, *, place: bool = False, books: bool = False, signal: bool = True) -> None:
        with self._due_lock:
            self._place_due |= place
            self._books_due |= books
        if signal:
            self._wake.set()

    def run_pass(self) -> None:
        """One whole pass of the loop as the loop runs it: a failure is logged and counted, never raised."""
        self._guarded(self.tick)

    def _guarded(self, step: Callable[[], None]) -> None:
        self.pass_count += 1
        try:
            step()
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
            scheduling.extend_leases_after_restart(s, now=self.now(), lease_s=self.settings.restart_grace_s)
        if self.channel is not None:
            self.listener = Listener(self.db.url, self.wakeups, self.channel)
            self.listener.start()
        self._thread = threading.Thread(target=self._run, name="suanwang-control-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self.listener is not None:
            self.listener.stop()

    def _run(self) -> None:
        """Placement and the books are paced apart, so a submit is placed at once after a long rating pass.

        Each runs when it is due (woken, or the safety tick), at most once per pause, and the pause grows
        with its own last run: under load each takes at most ``loop_share`` of the process and the API keeps
        the rest, and a burst of wake-ups coalesces into one pass over a bigger batch (cheaper per job than
        many small ones).  A wake-up after a quiet spell runs at once: a lone submit is not delayed.
        Placement goes first when both may run; a submit waits at most for one books pass to end.
        """
        share = min(max(self.settings.loop_share, 0.01), 1.0)
        paces = {"place": _Pace(), "books": _Pace()}
        while not self._stop.is_set():
            now = time.monotonic()
            # The safety tick, per half: a half not run for ``tick_s`` runs, however often the other is woken
            # (placement reaps lapsed leases while only usage keeps waking the books).
            self._due(place=now - paces["place"].end >= self.settings.tick_s,
                      books=now - paces["books"].end >= self.settings.tick_s, signal=False)
            with self._due_lock:
                due = {"place": self._place_due, "books": self._books_due}
            ready = {k: paces[k].ready_at(share, self.settings.min_tick_s) for k, d in due.items() if d}
            if not ready:
                self._wake.wait(min(p.end for p in paces.values()) + self.settings.tick_s - now)
                self._wake.clear()
                continue
            kind = min(ready, key=lambda k: (ready[k] > now, k != "place"))  # placement first among the ready
            if ready[kind] > now:
                if self._stop.wait(min(ready.values()) - now):
                    break
                continue
            with self._due_lock:
                if kind == "place":
                    self._place_due = False
                else:
                    self._books_due = False
            self._wake.clear()  # what is due is in the flags; a wake-up from here on sets them again
            if self._stop.is_set():
                break
            started = time.perf_counter()
            self._guarded(self.place_pass if kind == "place" else self.books_pass)
            paces[kind].ran(time.perf_counter() - started)


class _Pace:
    """When one kind of loop work may run again: a pause after its last run that grows with that run."""

    def __init__(self) -> None:
        self.last_s, self.end = 0.0, float("-inf")

    def ran(self, took_s: float) -> None:
        self.last_s, self.end = took_s, time.monotonic()

    def ready_at(self, share: float, min_pause_s: float) -> float:
        return self.end + max(min_pause_s, self.last_s * (1 - share) / share)
