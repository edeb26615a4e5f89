"""What every billing use case shares: the system actor, the clock's UTC now, refusals as errors, and
retrying a transaction that lost a race."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.ledger import result_error
from suanwang.domain.rating_batch import utc
from suanwang.errors import StoreBusy, StoreConflict
from suanwang.services.auth import Principal

log = logging.getLogger("suanwang.billing")
SYSTEM = "system"
T = TypeVar("T")


def now_utc(clock: Clock = SYSTEM_CLOCK) -> datetime:
    return utc(clock.time())


def _actor(principal: Principal | None) -> str:
    return principal.token_id if principal else SYSTEM


def _raise_if_refused(result: Any, transfer: Any) -> None:
    error = result_error(result, transfer)
    if error is not None:
        raise error


def retrying(fn: Callable[[], T], attempts: int = 5) -> T:
    """Run a transaction function again on a lost race: a unique key stored meanwhile (StoreConflict), a
    deadlock or serialization failure (StoreBusy); the store translates the driver's errors into these."""
    for i in range(attempts):
        try:
            return fn()
        except (StoreConflict, StoreBusy):
            if i == attempts - 1:
                raise
            time.sleep(0.01 * (i + 1))  # a real back-off between two writers, not a clock to fake
    raise AssertionError("unreachable")
