"""Contracts from a clearing and the rule book's take-or-pay and failure rules."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.domain.market import canonical_book, clear_book
from suanwang.domain.market.contract import PENALTY_BPS, plan_contracts, settle_line
from suanwang.domain.market.session import SessionKind, check_open, check_window, day_ahead, due_sessions, intraday
from suanwang.errors import Conflict, InvalidSpec
from tests.domain.market_builders import a_bid, an_ask, books

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(books())
def test_contract_lines_cover_every_fill_exactly_once(book_parts) -> None:
    asks, bids, links = book_parts
    result = clear_book(asks, bids, links)
    lines = plan_contracts(canonical_book(asks, bids, links), result)
    bought: dict[tuple[str, str, int], int] = defaultdict(int)
    sold: dict[tuple[str, int], int] = defaultdict(int)
    for line in lines:
        assert line.units > 0 and line.buyer_price_cf >= line.seller_price_cf
        bought[(line.bid_id, line.site, line.slot)] += line.units
        sold[(line.ask_id, line.slot)] += line.units
    assert dict(bought) == {(f.bid_id, f.site, f.slot): f.units for f in result.bid_fills}
    assert dict(sold) == {(f.ask_id, f.slot): f.units for f in result.ask_fills}
    assert len({line.id for line in lines}) == len(lines)


def _line(units: int = 8, buyer: int = 15_000, seller: int = 12_000):
    result = clear_book([an_ask("a1", units=units, floor=seller // 100, end=1)],
                        [a_bid("b1", quantity=units, rate=units, limit=buyer // 100, end=1)])
    (line,) = plan_contracts(canonical_book([an_ask("a1", units=units, floor=seller // 100, end=1)],
                                            [a_bid("b1", quantity=units, rate=units, limit=buyer // 100, end=1)]),
                             result)
    return line


def test_take_or_pay_a_delivered_unused_line_costs_the_full_price_and_lent_capacity_earns_a_share() -> None:
    line = _line()
    settled = settle_line(line, delivered=line.units, spot_revenue_fen=1_000)
    assert settled.refund_fen == settled.penalty_fen == settled.provider_clawback_fen == 0
    assert settled.lent_credit_fen == 500


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 50), st.integers(0, 50), st.integers(0, 500_000), st.integers(0, 200_000))
def test_a_provider_that_fails_refunds_what_was_paid_and_a_penalty(units, delivered, seller, congestion) -> None:
    from suanwang.domain.market.contract import ContractLine
    delivered = min(delivered, units)
    line = ContractLine("l", "b", "c", "a", "p", "s", "intelligent", 0, units, seller + congestion, seller)
    settled = settle_line(line, delivered=delivered)
    missing = units - delivered
    assert abs(settled.refund_fen * 100 - missing * (seller + congestion)) <= 100
    assert settled.provider_clawback_fen == settled.refund_fen - settled.congestion_refund_fen + settled.penalty_fen
    assert abs(settled.penalty_fen * 10_000 - (settled.refund_fen - settled.congestion_refund_fen) * PENALTY_BPS) \
        <= 10_000
    if missing == 0:
        assert settled.refund_fen == settled.penalty_fen == 0


def test_day_ahead_gate_is_noon_the_day_before_and_its_slots_are_hours() -> None:
    day = int(datetime(2026, 12, 8, tzinfo=UTC).timestamp())
    session = day_ahead(day)
    assert (session.id, session.kind, session.gate_at, session.slots) == ("da-2026-12-08", SessionKind.DAY_AHEAD,
                                                                         day - 12 * 3600, 24)
    assert check_window(session, day + 3600, day + 3 * 3600) == (1, 3)
    check_open(session, session.gate_at - 1)
    with pytest.raises(Conflict, match="gate closed"):
        check_open(session, session.gate_at)


def test_a_window_in_the_past_inverted_or_off_the_slots_is_refused_naming_window() -> None:
    session = intraday(int(datetime(2026, 12, 8, tzinfo=UTC).timestamp()))
    for start, end in ((session.gate_at - 900, session.gate_at), (session.gate_at + 1800, session.gate_at + 900),
                       (session.gate_at + 5, session.gate_at + 905)):
        with pytest.raises(InvalidSpec, match=r"^window"):
            check_window(session, start, end)


def test_due_sessions_are_every_gate_passed_once_in_order() -> None:
    day = int(datetime(2026, 12, 8, tzinfo=UTC).timestamp())
    due = due_sessions(day + 12 * 3600 + 1, day + 11 * 3600 + 59 * 60)
    assert [s.id for s in due] == ["da-2026-12-09", "id-2026-12-08T12:00"]  # same gate: by id
    # overlapping windows of two replicas compute the same ids: the store's claim row dedupes them
    assert {s.id for s in due_sessions(day + 7200, day)} == {s.id for s in due_sessions(day + 7200, day + 3600)} \
        | {s.id for s in due_sessions(day + 3600, day)}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 100), st.integers(0, 100), st.integers(0, 100), st.integers(0, 100), st.integers(0, 100))
def test_spot_borrows_idle_reserved_capacity_and_is_preempted_only_as_far_as_the_owner_needs(
        capacity, reserved, owner_running, spot_running, owner_wants) -> None:
    from suanwang.domain.market.contract import spot_room, spot_to_preempt
    reserved = min(reserved, capacity)
    owner_running = min(owner_running, capacity)
    spot_running = min(spot_running, capacity - owner_running)
    room = spot_room(capacity=capacity, reserved=reserved, owner_running=owner_running, spot_running=spot_running)
    assert owner_running + spot_running + room == capacity  # idle reserved capacity is lent, nothing more
    preempt = spot_to_preempt(capacity=capacity, reserved=reserved, owner_running=owner_running,
                              spot_running=spot_running, owner_wants=owner_wants)
    assert 0 <= preempt <= spot_running
    entitled = max(0, min(owner_wants, reserved - owner_running))
    free_after = capacity - owner_running - (spot_running - preempt)
    assert free_after >= entitled  # the owner fits after the preemption
    assert preempt == 0 or free_after - 1 < entitled  # and not one unit more was taken than needed


@given(paid=st.integers(0, 10**9), lent=st.integers(0, 8), extra=st.integers(0, 8),
       start=st.integers(-5_000, 5_000), length=st.integers(0, 10_000))
def test_lent_revenue_is_a_pro_rata_share_never_above_what_was_paid(paid: int, lent: int, extra: int, start: int,
                                                                   length: int) -> None:
    from suanwang.domain.market.contract import lent_revenue_fen

    units = max(1, lent + extra)
    lent = min(lent, units)
    got = lent_revenue_fen(paid, lent_units=lent, job_units=units, start_ms=start, end_ms=start + length,
                           slot_start_ms=0, slot_end_ms=3_600)
    assert 0 <= got <= paid
    if start >= 0 and start + length <= 3_600 and lent == units and length > 0:
        assert got == paid  # wholly inside the slot, wholly on lent units: all of it
    if (start + length <= 0 and length > 0) or start >= 3_600:
        assert got == 0  # outside the slot: nothing


@given(every=st.integers(1, 600), slot=st.integers(1, 3600), slots=st.integers(1, 50), lead=st.integers(0, 600),
       start=st.integers(1_700_000_000, 1_900_000_000), span=st.integers(1, 3600))
@settings(max_examples=100, deadline=None)
def test_a_short_schedule_gives_every_gate_its_own_canonical_id(every: int, slot: int, slots: int, lead: int,
                                                                start: int, span: int) -> None:
    from suanwang.domain.market.session import Schedule, session_by_id

    schedule = Schedule(intraday_every_s=every, intraday_slot_s=slot, intraday_slots=slots, intraday_lead_s=lead)
    due = [s for s in due_sessions(start + span, start, schedule=schedule) if s.kind is SessionKind.INTRADAY]
    assert len({s.id for s in due}) == len(due) == len({s.gate_at for s in due})  # no two gates share an id
    for s in due:
        assert session_by_id(s.id, schedule) == s  # the id names the session, under the same schedule
        assert (s.first_slot_at, s.slot_s, s.slots) == (s.gate_at + lead, slot, slots)


def test_session_ids_are_canonical_and_the_default_schedule_is_production() -> None:
    from suanwang.domain.market.session import DEFAULT_SCHEDULE, Schedule, session_by_id

    assert Schedule(12 * 3600, 3600, 900, 900, 16, 0) == DEFAULT_SCHEDULE
    assert session_by_id("id-2026-12-07T20:15").gate_at == datetime(2026, 12, 7, 20, 15, tzinfo=UTC).timestamp()
    short = Schedule(intraday_every_s=10, intraday_slot_s=120, intraday_slots=1)
    assert session_by_id("id-2026-12-07T20:15:10", short).slot_s == 120
    for bad, schedule in (("id-2026-12-07T20:15:00", DEFAULT_SCHEDULE),  # another spelling of a session: refused
                          ("id-2026-12-07T20:15", short), ("id-2026-12-07T20:15:05", short),
                          ("da-2026-12-7", DEFAULT_SCHEDULE), ("id-9999-12-31T23:59:59", short),
                          ("id-2026-12-07T20:15:1\x00", short), (12, DEFAULT_SCHEDULE)):
        with pytest.raises(InvalidSpec, match="session"):
            session_by_id(bad, schedule)
    for fields in ({"da_slot_s": 7}, {"intraday_every_s": 0}, {"intraday_slots": 10**6}, {"da_gate_s": -1},
                   {"intraday_slot_s": True}):
        with pytest.raises(InvalidSpec, match="market_"):
            Schedule(**fields)  # type: ignore[arg-type]
