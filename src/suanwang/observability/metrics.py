"""The platform's own Prometheus series.

Counters and histograms are process-wide (the control loop and the API bump
them as things happen).  Gauges that describe the database (queue depth,
rating lag) are read at scrape time by ``PlatformCollector`` with a few
grouped queries, so they are true across replicas and cost nothing between
scrapes.  ``suanwang_auth_failures_total`` belongs to the auth module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("suanwang.metrics")

PLACEMENTS = Counter("suanwang_placements_total", "Jobs placed on a site and pool by the control loop")
SCHEDULING_PASS = Histogram("suanwang_scheduling_pass_seconds", "Time of one scheduling pass (load, plan, apply)",
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LEASE_EXPIRIES = Counter("suanwang_lease_expiries_total", "Running attempts whose agent's lease lapsed")
LOOP_FAILURES = Counter("suanwang_control_loop_failures_total", "Control-loop passes that raised")
RECONCILE_OK = Gauge("suanwang_ledger_reconciliation_ok",
                     "1 when the last ledger reconciliation found no problem, 0 when it found one, -1 before any")
RECONCILE_AT = Gauge("suanwang_ledger_reconciliation_timestamp_seconds", "When the last reconciliation ran (Unix s)")
RECONCILE_OK.set(-1)
REQUESTS = Counter("suanwang_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram("suanwang_http_request_seconds", "HTTP request duration", ["method", "route"],
                            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30))


def record_reconciliation(ok: bool, *, at: float | None = None) -> None:
    RECONCILE_OK.set(1 if ok else 0)
    RECONCILE_AT.set(time.time() if at is None else at)


# One row of a gauge read at scrape time: label values, value.
Sample = tuple[tuple[str, ...], float]


class PlatformCollector(Collector):
    """Gauges read from the database at scrape time.  ``read`` returns (queue rows, rating backlog, oldest age)."""

    def __init__(self, read: Callable[[], tuple[Sequence[Sample], int, float]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        try:
            queue, backlog, oldest_s = self.read()
        except Exception as exc:  # the process's own series still answer while the database is down
            log.warning("metrics: database gauges unavailable (%s)", type(exc).__name__)
            yield GaugeMetricFamily("suanwang_database_up", "1 when the scrape could read the database", value=0)
            return
        yield GaugeMetricFamily("suanwang_database_up", "1 when the scrape could read the database", value=1)
        depth = GaugeMetricFamily("suanwang_queue_jobs", "Jobs waiting or holding capacity, by class, site and state",
                                  labels=["resource_class", "site", "state"])
        for labels, value in queue:
            depth.add_metric(list(labels), value)
        yield depth
        yield GaugeMetricFamily("suanwang_rating_backlog", "Usage records not yet rated", value=backlog)
        yield GaugeMetricFamily("suanwang_rating_lag_seconds", "Age of the oldest usage record not yet rated",
                                value=oldest_s)
