"""Rating: unrated usage claimed in batches, priced by the book in force at its start, and booked as one
CHARGE per usage key; jobs that could not pay another report are stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.job import JobState
from suanwang.domain.ledger import (
    PLATFORM_FEES,
    ROUNDING,
    HoldState,
    ResultCode,
    earnings,
    hold_account,
    voucher_fund,
    wallet,
)
from suanwang.domain.money import Fen
from suanwang.domain.pricing import (
    BooksInForce,
)
from suanwang.domain.rating import (
    LOST_ATTEMPT,
    Charge,
    ProviderContract,
    UsageRecord,
    VoucherState,
    apply_voucher,
    credit_headroom_fen,
    plan_charge,
    rate_usage,
    usage_key,
)
from suanwang.domain.rating_batch import FREE, PricedUsage, RatingContext, plan_row, price_row, quantities, utc
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.voucher import VoucherProgramme, pick_programme
from suanwang.errors import InvalidSpec
from suanwang.services.attempts import AttemptOutcome, end_attempt, lost_attempts
from suanwang.services.audit import record_audit
from suanwang.services.billing.books import load_books
from suanwang.services.billing.common import SYSTEM, log, retrying
from suanwang.services.billing.contract_rating import COVERED_BY_CONTRACT, book_lent_credits, contract_covered
from suanwang.services.billing.holds import release_rated_holds
from suanwang.services.billing.vouchers import load_programmes
from suanwang.services.billing.wallets import contracts
from suanwang.store.cache import caches_of
from suanwang.store.db import is_postgres
from suanwang.store.sql_ledger import (
    SqlLedger,
    among,
)
from suanwang.store.tables import JobRow, PoolRow, SiteRow, UnratedUsageRow, UsageRow


@dataclass(frozen=True, slots=True)
class RatingReport:
    rated: int  # usage rows marked rated in this step
    charged: int  # charges created now (EXISTS not counted)
    free: int  # rows with no book in force or no price: no charge
    over_limit_jobs: tuple[str, ...]  # jobs at or past the credit line: stop them (stop_overspent_jobs)
    unbilled: int = 0  # rows of attempts the platform declared lost: no charge, the provider bears them
    late: int = 0  # rows charged after their job's hold was released: paid from the wallet (audited)


_USAGE_COLUMNS = ("id", "job_id", "attempt", "seq", "tenant_id", "site", "pool", "resource_class", "start", "end",
                  "core_s", "device_s", "units_nano", "shots")  # rows are unpacked in this order (by name costs more)


def _claim(session: Session, limit: int) -> list[Any]:
    """Take up to ``limit`` usage records off the rating queue and return them (oldest first) as plain
    tuples.  The claim commits only with the charges (the caller's transaction), so a crash leaves them
    queued; PostgreSQL workers skip ids another worker claimed, so they share the queue (the charge key
    alone makes it exactly once)."""
    queue = UnratedUsageRow.__table__
    pending = select(queue.c.id).order_by(queue.c.id).limit(limit)
    pg = is_postgres(session.get_bind())
    if pg:
        pending = pending.with_for_update(skip_locked=True)
    conn = session.connection()
    ids = list(conn.execute(delete(queue).where(queue.c.id.in_(pending)).returning(queue.c.id)).scalars())
    if not ids:
        return []
    table = UsageRow.__table__
    return list(conn.execute(select(*(table.c[c] for c in _USAGE_COLUMNS)).where(among(table.c.id, ids, pg=pg))
                             .order_by(table.c.id)))


def rate_pending_usage(session: Session, *, limit: int = 1000, fast: bool = True) -> RatingReport:
    """Rate up to ``limit`` unrated usage records into charges, in the caller's transaction.

    Safe to run in several workers at once and to re-run after a crash at any
    point: the charge key is the usage key, unique in the database.  ``fast``
    prices the common case in integers (domain.rating_batch); False sends every
    record the general way (the reference the tests compare it with).
    """
    rows = _claim(session, limit)
    if not rows:
        return RatingReport(0, 0, 0, ())
    ctx = _rating_context(session, rows)
    lost = lost_attempts(session, {r[1] for r in rows})
    items: list[tuple[Any, PricedUsage | Charge]] = []
    free, unbilled = 0, []
    covered = contract_covered(session, rows, {r[1] for r in rows})  # market: paid at the clear (take-or-pay)
    for row in rows:  # first what needs no ledger state: price, split, request digest
        if lost and (row[1], row[2]) in lost:
            unbilled.append(row[0])  # declared lost: not the consumer's to pay for (DESIGN.md)
            continue
        if row[0] in covered:
            continue
        priced = price_row(row, ctx) if fast else None
        if priced == FREE or (priced is None and _is_free(row, ctx)):
            free += 1  # no book in force when this usage started: free
            continue
        charge = priced if isinstance(priced, PricedUsage) else _rate(session, _record(row, ctx), ctx)
        if charge is not None:
            items.append((row, charge))
    if unbilled:
        session.execute(update(UsageRow).where(UsageRow.id.in_(unbilled)).values(unbilled_reason=LOST_ATTEMPT)
                        .execution_options(synchronize_session=False))
    if covered:
        session.execute(update(UsageRow).where(UsageRow.id.in_(sorted(covered)))
                        .values(unbilled_reason=COVERED_BY_CONTRACT).execution_options(synchronize_session=False))
    charged, over, late = _charge(session, items, ctx) if items else (0, set(), 0)
    book_lent_credits(session, [(row, item.gross_fen) for row, item in items])  # market: spot on lent capacity
    return RatingReport(len(rows), charged, free, tuple(sorted(over)), len(unbilled), late)


def _audit_late(session: Session, ledger: SqlLedger, items: Sequence[tuple[Any, PricedUsage | Charge]]) -> int:
    """Count (and audit) usage arriving after its job's hold was released: the wallet pays it."""
    late = 0
    for row, _ in items:
        hold = ledger.hold(row[1])
        if hold is not None and hold.state is not HoldState.OPEN and not ledger.knows(usage_key(*row[1:4])):
            late += 1
            record_audit(session, None, "usage.after_release", usage_key(*row[1:4]), job_id=row[1])
    return late


def _service_levels(session: Session, job_ids: set[str]) -> dict[str, ServiceLevel]:
    """Each job's service level, read once per database (the one spec field rating needs; fixed at submit)."""
    levels = caches_of(session).levels
    missing = [j for j in job_ids if j not in levels]
    found: dict[str, ServiceLevel] = {}
    if missing:
        level = JobRow.spec["service_level"].as_string()
        query = select(JobRow.id, level).where(among(JobRow.id, missing, pg=is_postgres(session.get_bind())))
        for job_id, value in session.execute(query):
            found[job_id] = ServiceLevel(value or "standard")
            levels.put(job_id, found[job_id])
    return {j: level for j in job_ids if (level := found.get(j) or levels.get(j)) is not None}


def _rating_context(session: Session, rows: Sequence[Any]) -> RatingContext:
    levels = _service_levels(session, {r[1] for r in rows})
    return RatingContext(
        books=BooksInForce(load_books(session)),
        providers=dict(session.execute(select(SiteRow.name, SiteRow.tenant_id)).all()),
        tiers={(site, pool): tier for site, pool, tier in session.execute(select(PoolRow.site, PoolRow.name,
                                                                                 PoolRow.tier))},
        levels=levels, fee_bps=contracts(session), settled_until=SqlLedger(session).settled_until(),
        programmes=load_programmes(session))


def _is_free(row: Sequence[Any], ctx: RatingContext) -> bool:
    first = ctx.books.first_effective()
    return first is None or utc(row[8]) < first


def _record(row: Sequence[Any], ctx: RatingContext) -> UsageRecord:
    _, job_id, attempt, seq, consumer, site, pool, cls, start_s, end_s, core_s, device_s, units_nano, *more = row
    return UsageRecord(job_id, attempt, seq, consumer, ctx.providers.get(site, site), site, pool, ResourceClass(cls),
                       ctx.tiers.get((site, pool), "standard"), ctx.levels[job_id], utc(start_s), utc(end_s),
                       quantities(core_s, device_s, units_nano, *more))


def _rate(session: Session, record: UsageRecord, ctx: RatingContext) -> Charge | None:
    """The general path: rate_usage, or None (audited) for usage no price entry covers."""
    contract = ProviderContract(record.provider, ctx.fee_bps.get(record.provider, 0))
    try:
        return rate_usage(record, ctx.books.at(record.start), contract=contract, settled_until=ctx.settled_until)
    except InvalidSpec as exc:
        record_audit(session, None, "usage.unpriced", record.key, reason=exc.message)
        return None


def _charge(session: Session, items: Sequence[tuple[Any, PricedUsage | Charge]],
            ctx: RatingContext) -> tuple[int, set[str], int]:
    """Book the rated items in order, each against the ledger as the charges before it left it."""
    ledger = SqlLedger(session)
    consumers = {row[4] for row, _ in items}
    providers = {ctx.providers.get(row[5], row[5]) for row, _ in items}
    ledger.lock_accounts([PLATFORM_FEES, ROUNDING, *(voucher_fund(p.id) for p in ctx.programmes),
                          *(a for c in consumers for a in (wallet(c), hold_account(c))), *map(earnings, providers)])
    ledger.load_holds({row[1] for row, _ in items})
    ledger.load_keys({usage_key(row[1], row[2], row[3]) for row, _ in items})
    ledger.load_voucher_slots({(p.id, c) for p in ctx.programmes for c in consumers})
    late = _audit_late(session, ledger, items)
    charged, over = 0, set()
    for row, item in items:
        if isinstance(item, PricedUsage):
            planned = None if ledger.knows(item.key) else plan_row(item, hold=ledger.hold(item.job_id), view=ledger,
                                                                   actor=SYSTEM)
            if planned is not None:
                ledger.stage_charge(planned)
                charged += 1
                if planned.over_limit or _next_report_would_pass_the_line(ledger, item.job_id, item.consumer,
                                                                          planned.consumer_fen):
                    over.add(item.job_id)
                continue
            charge = _rate(session, _record(row, ctx), ctx)  # the rule book may refuse it: say why the general way
            if charge is None:
                continue
        else:
            charge = item
        created, stop = _book_charge(session, ledger, charge, ctx.programmes)
        charged += created
        if stop:
            over.add(charge.record.job_id)
    ledger.flush()
    return charged, over, late


def _book_charge(session: Session, ledger: SqlLedger, charge: Charge,
                 programmes: Sequence[VoucherProgramme]) -> tuple[bool, bool]:
    """Stage one charge the general way: (created, stop its job)."""
    record = charge.record
    programme = pick_programme(programmes, consumer=record.consumer, resource_class=record.resource_class,
                               at=record.start) if programmes else None
    if programme is not None:
        charge = apply_voucher(charge, VoucherState(programme, ledger.voucher_used(programme.id, record.consumer),
                                                    ledger.balance(voucher_fund(programme.id))))
    result = ledger.stage(plan_charge(charge, hold=ledger.hold(record.job_id), actor=SYSTEM))
    if not result.ok:
        log.error("charge %s refused: %s", record.key, result.code)
        record_audit(session, None, "usage.refused", record.key, code=result.code.value)
        return False, False
    return result.code is ResultCode.CREATED, result.over_limit or _next_report_would_pass_the_line(
        ledger, record.job_id, record.consumer, charge.consumer_fen)


def _next_report_would_pass_the_line(ledger: SqlLedger, job_id: str, consumer: str, last_fen: Fen) -> bool:
    """Stop a job before its consumer passes the credit line: when what is left (open hold, wallet and
    credit) cannot pay another report like the last one.  A job's rate can rise (a dearer time-of-use
    band), so a report may still pass the line; that charge is booked ``over_limit`` and stops the job."""
    headroom = credit_headroom_fen(hold=ledger.hold(job_id), wallet_fen=ledger.balance(wallet(consumer)),
                                   credit_limit_fen=ledger.credit_limit(consumer))
    return last_fen > 0 and headroom < last_fen


def stop_overspent_jobs(session: Session, job_ids: Sequence[str]) -> list[str]:
    """Cancel jobs whose consumer passed the credit line; their agents kill them on the next heartbeat.

    Runs in its own transaction after the charges committed, locking the job
    before its accounts (the order cancel and completion use).  If the process
    dies in between, the job's next charge is over the line again and stops it.
    """
    return [j for j in sorted(job_ids) if _stop_overspent(session, j)]


def _stop_overspent(session: Session, job_id: str) -> bool:
    from suanwang.services.jobs import move

    query = select(JobRow).where(JobRow.id == job_id).with_for_update().execution_options(populate_existing=True)
    job = session.scalar(query)
    if job is None or JobState(job.state).is_terminal:
        return False
    if JobState(job.state).is_leased:
        job.cancel_requested = True
    end_attempt(session, job, AttemptOutcome.CANCELLED)
    move(session, job, JobState.CANCELLED, "credit line exhausted: charges passed the consumer's credit limit")
    record_audit(session, None, "job.cancel", job_id, reason="credit line exhausted")
    return True


def rate_all(db: Any, *, limit: int = 1000, max_batches: int = 1_000_000, clock: Clock = SYSTEM_CLOCK,
             fast: bool = True) -> int:
    """Rate until nothing is pending, one transaction per batch (the control loop's step); then release
    the holds of jobs that ended (``fast`` as in :func:`rate_pending_usage`)."""
    total = 0
    for _ in range(max_batches):
        def step() -> RatingReport:
            with db.transaction() as s:
                return rate_pending_usage(s, limit=limit, fast=fast)
        report = retrying(step)
        if report.over_limit_jobs:
            def stop(ids: tuple[str, ...] = report.over_limit_jobs) -> list[str]:
                with db.transaction() as s:
                    return stop_overspent_jobs(s, ids)
            retrying(stop)
        total += report.rated
        if report.rated < limit:
            break

    def release() -> list[str]:
        with db.transaction() as s:
            return release_rated_holds(s, now=clock.time())
    retrying(release)  # after the rating: a terminal job's last usage was charged to its hold
    return total
