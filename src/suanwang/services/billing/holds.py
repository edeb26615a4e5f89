"""Quotes and holds: what a job would cost per eligible pool, the hold a submit places, and its release
at a terminal state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.grid import Pool
from suanwang.domain.job import JobSpec, JobState
from suanwang.domain.ledger import (
    AccountKind,
    HoldState,
    hold_account,
    plan_hold,
    plan_release,
    wallet,
)
from suanwang.domain.money import Fen, format_yuan
from suanwang.domain.placement import QueuedJob, rule_out
from suanwang.domain.price_horizon import (
    QUEUE_HORIZON,
    PriceRange,
    changes_of,
    first_within,
    has_tou,
    quote_range,
    window_starts,
)
from suanwang.domain.pricing import (
    OPERATOR,
    PoolQuote,
    PriceBook,
    PriceUnit,
    QuoteRequest,
    price_book_in_force,
    quote,
)
from suanwang.domain.rating_batch import utc
from suanwang.errors import InsufficientFunds, InvalidSpec
from suanwang.services.attempts import may_still_report
from suanwang.services.auth import Principal
from suanwang.services.billing.books import _any_book, load_books
from suanwang.services.billing.codec import quote_json
from suanwang.services.billing.common import SYSTEM, _actor, _raise_if_refused, now_utc
from suanwang.services.billing.vouchers import load_programmes
from suanwang.store.ledger_tables import (
    HoldRow,
)
from suanwang.store.sql_ledger import (
    SqlLedger,
    cached_balances,
    credit_limit_of,
)
from suanwang.store.tables import JobRow, UnratedUsageRow, UsageRow


def _job_quantities(spec: JobSpec, pool: Pool) -> dict[PriceUnit, Decimal]:
    """What ``spec`` would consume on ``pool`` over its expected duration, per price unit."""
    from suanwang.services.agents import held_device_s, units_nano

    core_s = spec.cores * spec.duration_s
    device_s = spec.devices * spec.duration_s
    share = spec.device_share or 1000  # a fraction of a card is held and charged by the fraction
    scu_nano = units_nano(pool, core_s=core_s, device_s=device_s, share=share)  # type: ignore[arg-type]
    quantities = {PriceUnit.SCU: Decimal(scu_nano).scaleb(-9)}
    if spec.cores:
        quantities[PriceUnit.CORE_HOUR] = Decimal(str(core_s)) / 3600
    if spec.devices:
        quantities[PriceUnit.CARD_HOUR] = held_device_s(device_s, share) / 3600
    if spec.shots:
        quantities[PriceUnit.SHOT] = Decimal(spec.shots)
    return quantities


class Quoter:
    """Quotes for many jobs in one transaction: books, programmes and voucher state are read once.

    ``quotes`` prices a job at each eligible pool with the books in force
    (providers' for their own sites first, then the operator's); ``ranges`` its cheapest and dearest
    window over the queueing horizon, also with the operator's book alone (``listed``: the list price).
    """

    def __init__(self, session: Session, at: datetime) -> None:
        self.session, self.at = session, at
        self.books = load_books(session)
        self.operator_books = [b for b in self.books if b.owner == OPERATOR]
        in_force = _in_force(self.books, at)
        self.priced = in_force is not None
        self.operator_priced = _in_force(self.operator_books, at) is not None
        self.programmes = load_programmes(session) if self.priced else []
        self._vouchers: dict[str, tuple[dict[str, Fen], dict[str, Fen]]] = {}
        self._cache: dict[tuple[object, ...], list[PoolQuote] | None] = {}
        self._ranges: dict[tuple[object, ...], list[PriceRange]] = {}
        ahead = [b for b in self.books if at < b.effective_from <= at + QUEUE_HORIZON]
        self._changes = changes_of(ahead)  # the books that may price a start within the horizon
        self._tou = has_tou([*ahead, *([in_force] if in_force is not None else [])])

    def quotes(self, consumer: str, spec: JobSpec, pools: Sequence[Pool]) -> list[PoolQuote] | None:
        """Per eligible priced pool, what ``spec`` would cost now; None when no book is in force (free)."""
        return self._quote(consumer, spec, pools, self.books) if self.priced else None

    def _quote(self, consumer: str, spec: JobSpec, pools: Sequence[Pool],
               books: list[PriceBook]) -> list[PoolQuote] | None:
        key = (consumer, _signature(spec), id(books), len(pools))
        if key not in self._cache:
            if consumer not in self._vouchers:
                self._vouchers[consumer] = _voucher_state(self.session, consumer)
            used, fund = self._vouchers[consumer]
            quotes: list[PoolQuote] = []
            for pool in pools:
                if rule_out(spec, pool) is not None:
                    continue
                request = QuoteRequest(consumer, spec.resource_class, spec.service_level, self.at,
                                       timedelta(seconds=spec.duration_s), {pool.name: _job_quantities(spec, pool)})
                quotes.extend(quote(request, [pool], books, programmes=self.programmes, voucher_used_fen=used,
                                    voucher_fund_fen=fund))
            self._cache[key] = sorted(quotes, key=lambda q: (q.total_fen, q.site, q.pool))
        return self._cache[key]

    def starts(self, spec: JobSpec) -> list[datetime]:
        """Where ``spec``'s window may be dearest or cheapest within the queueing horizon
        (``price_horizon.window_starts``)."""
        return window_starts(self.at, timedelta(seconds=spec.duration_s), horizon=QUEUE_HORIZON,
                             changes=self._changes, tou=self._tou)

    def ranges(self, consumer: str, spec: JobSpec, pools: Sequence[Pool], *,
               listed: bool = False) -> list[PriceRange]:
        """Per eligible priced pool, the cheapest and dearest quote of ``spec`` for a start within the
        queueing horizon (under the operator's book alone with ``listed``); empty when no book is in force."""
        if listed and len(self.operator_books) == len(self.books):  # the operator's book alone is all there is
            listed = False
        books = self.operator_books if listed else self.books
        if not (self.operator_priced if listed else self.priced):
            return []
        key = (consumer, _signature(spec), listed, len(pools))
        if key not in self._ranges:
            if consumer not in self._vouchers:
                self._vouchers[consumer] = _voucher_state(self.session, consumer)
            used, fund = self._vouchers[consumer]
            starts = self.starts(spec)
            found: list[PriceRange] = []
            for pool in pools:
                if rule_out(spec, pool) is not None:
                    continue
                request = QuoteRequest(consumer, spec.resource_class, spec.service_level, self.at,
                                       timedelta(seconds=spec.duration_s), {pool.name: _job_quantities(spec, pool)})
                found.extend(quote_range(request, [pool], books, starts, programmes=self.programmes,
                                         voucher_used_fen=used, voucher_fund_fen=fund).values())
            self._ranges[key] = sorted(found, key=lambda r: (r.dearest.site, r.dearest.pool))
        return self._ranges[key]

    def within_from(self, spec: JobSpec, pool: Pool, limit_fen: Fen) -> datetime | None:
        """When, within the queueing horizon, ``pool`` first prices ``spec`` within ``limit_fen`` (gross)."""
        request = QuoteRequest("", spec.resource_class, spec.service_level, self.at,
                               timedelta(seconds=spec.duration_s), {pool.name: _job_quantities(spec, pool)})
        return first_within(request, pool, self.books, self.starts(spec), limit_fen)


def _in_force(books: list[PriceBook], at: datetime) -> PriceBook | None:
    try:
        return price_book_in_force(books, at)
    except InvalidSpec:
        return None


def _signature(spec: JobSpec) -> tuple[object, ...]:
    """What of a spec decides its quotes and its hold (the fields ``rule_out``, the quantities and the
    bound read): jobs alike in these share one quote."""
    return (spec.resource_class, spec.service_level, spec.device_model, spec.device_memory_gb_min, spec.region,
            spec.cores, spec.memory_gb, spec.devices, spec.duration_s, spec.max_price_fen, spec.device_models,
            spec.exclude_device_models, spec.qubits, spec.gates, spec.shots)


def quote_spec(session: Session, consumer: str, spec: JobSpec, pools: Sequence[Pool], *,
               at: datetime) -> list[PoolQuote] | None:
    """Per eligible pool, what ``spec`` would cost; None when no price book is in force (free)."""
    return Quoter(session, at).quotes(consumer, spec, pools)


def _voucher_state(session: Session, consumer: str) -> tuple[dict[str, Fen], dict[str, Fen]]:
    from suanwang.store.ledger_tables import VoucherUsageRow

    used = dict(session.execute(select(VoucherUsageRow.programme, VoucherUsageRow.used_fen)
                                .where(VoucherUsageRow.consumer == consumer)).all())
    fund = {a.owner: b for a, b in cached_balances(session, AccountKind.VOUCHER).items()}
    return used, fund


def quote_for(session: Session, actor: Principal, spec: JobSpec, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Every eligible pool's quote, and the hold a submit of ``spec`` would take (``hold_bound``)."""
    from suanwang.services.sites import all_pools

    pools = all_pools(session)
    quoter = Quoter(session, now_utc(clock))
    quotes = quoter.quotes(actor.tenant_id, spec, pools)
    try:
        bound = hold_bound(quoter, actor.tenant_id, spec, pools) if quotes is not None else None
        hold = bound.hold_fen if bound is not None else None
    except InvalidSpec as exc:  # a submit would be refused: say why beside the quotes
        return quote_json(quotes) | {"hold": None, "refused": exc.message}
    return quote_json(quotes, hold)


@dataclass(frozen=True, slots=True)
class HoldBound:
    """What a submit holds and the job's price limit (``max_price_fen``, the scheduler's price rule).

    The limit is in gross fen (before vouchers: a voucher pays part of a charge, not of the price), so a
    voucher used up by other jobs never strands a queued one; the hold is what the consumer expects to pay.
    """

    hold_fen: Fen
    limit_fen: Fen


def hold_bound(quoter: Quoter, consumer: str, spec: JobSpec, pools: Sequence[Pool]) -> HoldBound | None:
    """What a job is held for at submit, and the most it may cost where it runs (None: it runs free).

    A hold is what the consumer agreed to risk; a provider's price cannot inflate it.  A queued job starts
    later than its quote, and under time-of-use bands its window's price moves with the clock, so both are
    taken over the queueing horizon (``price_horizon``: every start within 24 h of now):
    - with ``max_price_fen``, that: the consumer said so.  Accepted when some pool is within it for some
      start in the horizon (the job then waits for that band); refused only when none is at any start;
    - without, the dearest eligible quote over the horizon at the operator's list prices, or the least of
      the pools' dearest quotes if that is more (so some pool is within it at every start in the horizon),
      like a card pre-authorisation: the clock moving into a dearer band never prices the job out, and
      what it does not use is released at the end.  A provider pricing its own pool above the list raises
      neither: that pool only stops running jobs whose bound it exceeds.
    Raises InvalidSpec when no pool could run the job within ``max_price_fen``, or (as before) when the
    operator's book is in force and prices no pool that could run it.
    """
    quotes = quoter.quotes(consumer, spec, pools)
    if quotes is None:
        return None
    priced = {(q.site, q.pool) for q in quotes}
    free = any(rule_out(spec, p) is None and (p.site, p.name) not in priced for p in pools)
    if not quotes and quoter.operator_priced:  # with only providers' books in force, unpriced pools are free
        raise InvalidSpec(f"no pool that could run this job has a price in the price book in force "
                          f"(class {spec.resource_class}, level {spec.service_level}); ask the operator")
    if spec.max_price_fen is not None:
        if quotes and not free:
            best = min(quoter.ranges(consumer, spec, pools), default=None,
                       key=lambda r: (r.cheapest.gross_fen, r.cheapest_at, r.cheapest.site, r.cheapest.pool))
            if best is not None and best.cheapest.gross_fen > spec.max_price_fen:
                hours = QUEUE_HORIZON.total_seconds() / 3600
                raise InvalidSpec(f"no pool can run this job within max_price_fen {spec.max_price_fen} at any start "
                                  f"in the next {hours:g} h: the cheapest quote is {best.cheapest.gross_fen} fen "
                                  f"({best.cheapest.site}/{best.cheapest.pool}, starting "
                                  f"{best.cheapest_at.isoformat(timespec='seconds')})")
        return HoldBound(spec.max_price_fen, spec.max_price_fen)
    if not quotes:
        return None  # only unpriced pools could run it: they are free
    listed = [r.dearest for r in quoter.ranges(consumer, spec, pools, listed=True)]
    least = [] if free else [min((r.dearest for r in quoter.ranges(consumer, spec, pools)),
                                 key=lambda q: (q.gross_fen, q.total_fen))]
    return HoldBound(max((q.total_fen for q in [*listed, *least]), default=0),
                     max((q.gross_fen for q in [*listed, *least]), default=0))


def hold_for_submit(session: Session, actor: Principal, jobs: Sequence[tuple[str, JobSpec]], pools: Sequence[Pool],
                    *, now: float) -> dict[str, Fen]:
    """At submit: place a hold per job for its :func:`hold_bound`.  Called by ``jobs.submit_jobs``.

    Returns job id -> the price limit (gross fen) for jobs that gave no ``max_price_fen``: the caller
    records it as the job's ``max_price_fen``, the limit the scheduler's price rule keeps it within.  Raises
    InsufficientFunds (402) when the wallet plus credit line cannot cover a hold; the caller's
    transaction then writes nothing.  Free (no hold, no limit) when no book is in force.
    """
    if not jobs or not _any_book(session):
        return {}
    at = utc(now)
    consumer = actor.tenant_id
    quoter = Quoter(session, at)
    bounds: dict[tuple[object, ...], HoldBound | None] = {}
    planned, limits = [], {}
    for job_id, spec in jobs:
        signature = _signature(spec)
        if signature not in bounds:
            bounds[signature] = hold_bound(quoter, consumer, spec, pools)
        bound = bounds[signature]
        if bound is None:
            continue
        if spec.max_price_fen is None:
            limits[job_id] = bound.limit_fen
        if bound.hold_fen:
            planned.append(plan_hold(f"hold:{job_id}", hold_id=job_id, consumer=consumer, fen=bound.hold_fen,
                                     at=at, actor=_actor(actor), job_id=job_id))
    if not planned:
        return limits
    ledger = SqlLedger(session)
    for transfer, result in zip(planned, ledger.apply_many(planned, atomic=True), strict=True):
        if result.code.value == "exceeds_credit":
            raise _insufficient(session, consumer, planned)
        _raise_if_refused(result, transfer)
    return limits


def price_queue(session: Session, queue: Sequence[QueuedJob], pools: Sequence[Pool], *,
                now: float, when: bool = False) -> list[QueuedJob]:
    """The queue with each limited job's quote per pool now (``QueuedJob.prices_fen``) where some pool is
    quoted above its limit, for the scheduler's price rule (``placement.priced_out``); a job no pool
    prices out is left as it is (the scheduler's fast paths).  Unchanged when no book is in force.

    With ``when`` (``explain``), also when each pool that prices a job out comes within its limit, for a
    start within the queueing horizon (``QueuedJob.within_limit_at``): it waits for price, not for ever.
    """
    if not queue or not _any_book(session):
        return list(queue)
    quoter: Quoter | None = None
    over: dict[tuple[object, ...], Mapping[tuple[str, str], Fen] | None] = {}
    out = []
    for job in queue:
        limit = job.spec.max_price_fen
        if limit is None:
            out.append(job)
            continue
        key = (job.tenant, _signature(job.spec))
        if key not in over:
            quoter = quoter or Quoter(session, utc(now))
            quotes = quoter.quotes(job.tenant, job.spec, pools) or []
            over[key] = {(q.site, q.pool): q.gross_fen for q in quotes} \
                if any(q.gross_fen > limit for q in quotes) else None  # gross: as the limit
        prices = over[key]
        if prices is None:
            out.append(job)
            continue
        job = replace(job, prices_fen=prices)
        if when and quoter is not None:
            by_key = {(p.site, p.name): p for p in pools}
            later = {k: quoter.within_from(job.spec, by_key[k], limit) for k, fen in prices.items()
                     if fen > limit and k in by_key}
            job = replace(job, within_limit_at={k: at.timestamp() for k, at in later.items() if at is not None})
        out.append(job)
    return out


def _insufficient(session: Session, consumer: str, planned: Sequence[Any]) -> InsufficientFunds:
    balances = cached_balances(session)
    balance, limit = balances.get(wallet(consumer), 0), credit_limit_of(session, consumer)
    need = sum(t.hold_fen for t in planned)
    return InsufficientFunds(
        f"insufficient funds: submitting needs a hold of {format_yuan(need)} yuan ({need} fen) but wallet "
        f"{consumer} has {format_yuan(balance)} yuan plus a credit line of {format_yuan(limit)} yuan "
        f"({balance + limit} fen available); top up or ask for credit", need_fen=need,
        available_fen=balance + limit)


HOLD_GRACE_S = 600.0  # a cancelled attempt's agent has this long to send its last usage before the hold goes


def release_job_hold(session: Session, job: JobRow, *, now: float | None = None,
                     clock: Clock = SYSTEM_CLOCK) -> bool:
    """At a terminal state: give back what remains of the job's hold (no-op for free jobs).  Called by
    ``jobs.move`` and, for holds it left open, by the rating pass (:func:`release_rated_holds`).

    The hold stays open while usage of the job can still be charged to it: records not yet rated, or a
    cancelled attempt whose agent has not sent its final status (for ``HOLD_GRACE_S``).  Returns
    whether the hold was released now.
    """
    state = session.scalar(select(HoldRow.state).where(HoldRow.id == job.id))
    if state != HoldState.OPEN.value:
        return False
    now = now if now is not None else clock.time()
    if _usage_unrated(session, job.id) or may_still_report(session, job, now=now, grace_s=HOLD_GRACE_S):
        return False  # the rating pass releases it after the last usage is charged
    ledger = SqlLedger(session)
    ledger.lock_accounts([hold_account(job.tenant_id), wallet(job.tenant_id)])  # accounts before the hold row
    hold = ledger.hold(job.id)
    if hold is None or hold.state is not HoldState.OPEN:
        return False
    at = utc(now)
    settled = ledger.settled_until()
    if settled is not None and at < settled:
        at = settled
    transfer = plan_release(f"release:{job.id}", hold=hold, at=at, actor=SYSTEM, void=False, job_id=job.id,
                            reason=f"job {job.state}")
    result = ledger.apply(transfer)
    _raise_if_refused(result, transfer)
    return True


def _usage_unrated(session: Session, job_id: str) -> bool:
    queue = UnratedUsageRow.__table__
    return session.scalar(select(UsageRow.id).join(queue, queue.c.id == UsageRow.id)
                          .where(UsageRow.job_id == job_id).limit(1)) is not None


def release_rated_holds(session: Session, *, now: float, limit: int = 1000) -> list[str]:
    """Release the holds of terminal jobs that ``release_job_hold`` left open, now that their usage is rated."""
    terminal = [s.value for s in JobState if s.is_terminal]
    jobs = session.scalars(select(JobRow).join(HoldRow, HoldRow.id == JobRow.id)
                           .where(HoldRow.state == HoldState.OPEN.value, JobRow.state.in_(terminal))
                           .order_by(JobRow.id).limit(limit))
    return [job.id for job in list(jobs) if release_job_hold(session, job, now=now)]
