"""The live platform's scheduler: the grid scheduler with fair share and preemption, rebuilt when the grid changes.

Building the scheduler's context (price and carbon signals, network paths,
vectorised pool tables) is worth caching; the cache key is the grid's shape
(sites, pools, links) and the price book in force, so a registered pool, a new
link or a new book takes effect on the next pass.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from suanwang.domain.fairness import FairScheduler, FairShare, TenantPolicy
from suanwang.domain.grid import Capacity
from suanwang.domain.job import JobSpec
from suanwang.domain.scheduler import GridModel, GridScheduler, Weights
from suanwang.services.billing import load_books
from suanwang.services.grid_model import GridShape, book_in_force, build_grid_model, load_grid_shape


class GridPlanner:
    def __init__(self, *, weights: Weights | None = None, tenants: Mapping[str, TenantPolicy] | None = None) -> None:
        self.weights = weights or Weights()
        self.tenants = dict(tenants or {})
        self._key: str | None = None
        self._fair: FairScheduler | None = None
        self._lock = threading.Lock()

    def scheduler(self, session: Session, shape: GridShape | None = None) -> FairScheduler:
        """The scheduler for the grid as it is now; ``shape`` when the caller has just read it."""
        shape = shape if shape is not None else load_grid_shape(session)
        book = book_in_force(load_books(session), datetime.now(UTC))
        key = repr((shape, book.key if book else None))  # which owners' books, composed
        with self._lock:
            if self._fair is None or key != self._key:
                self._fair = self._build(build_grid_model(shape, book))
                self._key = key
            return self._fair

    def _build(self, model: GridModel) -> FairScheduler:
        total = sum((p.capacity for p in model.pools), Capacity())
        return FairScheduler(GridScheduler(model, weights=self.weights), FairShare(total, self.tenants))

    def grid_scheduler(self, session: Session) -> GridScheduler:
        inner = self.scheduler(session).inner
        assert isinstance(inner, GridScheduler)
        return inner

    def check_submit(self, session: Session, spec: JobSpec, *, now: float) -> None:
        """Raise ``Unplaceable`` when no pool can ever run ``spec`` or none can meet its deadline."""
        self.grid_scheduler(session).check_submit(spec, now=now)
