"""Rating's integer path (domain.rating_batch) books exactly what the general path books.

Two copies of one random database (consumers with holds, tight credit lines
and wallets, a voucher programme for some of them, a price book with
time-of-use bands, a green discount, card-hour and unpriced entries, late
usage into a settled period, duplicate keys already charged) are rated, one
with ``fast=True`` and one with ``fast=False``; every ledger row, cached
balance, hold, voucher use, audit event and the report must be the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from suanwang.domain.ledger import plan_hold, plan_topup, plan_voucher_funding
from suanwang.services import billing
from suanwang.services.agents import queue_for_rating
from suanwang.services.auth import Principal, Role
from suanwang.services.ledger_store import SqlLedger
from suanwang.store.db import Database
from suanwang.store.ledger_tables import AccountRow, HoldRow, PostingRow, PriceBookRow, TransferRow, VoucherUsageRow
from suanwang.store.tables import AuditRow, JobRow, PoolRow, SiteRow, TenantRow, UsageRow
from tests.services.test_ledger_store_machine import _migrated_copy

OPERATOR = Principal("test", Role.OPERATOR, "t-operator")
T0 = datetime(2026, 7, 1, 9, 30, tzinfo=UTC).timestamp()  # 17:30 in Gansu: a band edge lies near
BOOK = {"version": 1, "effective_from": datetime.fromtimestamp(T0 - 86_400, UTC).isoformat(), "entries": [
    {"resource_class": "general", "tier": "standard", "service_level": "standard", "unit": "core_hour",
     "unit_price_fen": "123.4567", "green_discount_pct": "5", "tou": {"province": "Gansu"}},
    {"resource_class": "general", "tier": "standard", "service_level": "spot", "unit": "scu",
     "unit_price_fen": "7.77", "tou": {"bands": {"peak": [[17, 19]], "valley": [[0, 8]], "flat": [[8, 17], [19, 24]]},
                                        "multipliers": {"peak": "1.5", "valley": "0.5"}}},
    {"resource_class": "intelligent", "tier": "standard", "service_level": "standard", "unit": "card_hour",
     "unit_price_fen": "2999.5", "pool": "gpu"},
]}  # intelligent/spot has no entry: unpriced, audited

usage = st.tuples(
    st.integers(0, 5),  # job
    st.floats(-90_000, 30_000, allow_nan=False).map(lambda x: round(x, 3)),  # start offset (s): some before the book
    st.sampled_from([0.0, 0.5, 60.0, 3_600.0, 9_000.5]),  # duration
    st.sampled_from([0.0, 1.0, 7_200.0, 50_000.0]) | st.floats(0, 50_000, allow_nan=False),  # core-seconds
    st.sampled_from([0.0, 0.0, 100.25]),  # device-seconds
    st.integers(0, 10**12),  # units_nano
)
scenario = st.fixed_dictionaries({
    "usage": st.lists(usage, min_size=1, max_size=40),
    "funds": st.lists(st.sampled_from([0, 300, 2_000_000]) | st.integers(0, 2_000_000), min_size=3, max_size=3),
    "credit": st.lists(st.sampled_from([0, 500, 10**9]), min_size=3, max_size=3),
    "holds": st.lists(st.sampled_from([0, 0, 300, 50_000]), min_size=6, max_size=6),
    "vouchers": st.lists(st.fixed_dictionaries({
        "share_pct": st.sampled_from(["30", "100", "12.5", "99.9999", "0"]),
        "cap_per_consumer_fen": st.sampled_from([400, 1, 10**9, 0]) | st.integers(0, 5_000),
        "consumers": st.sampled_from([None, ["c1"], ["c0", "c2"]]),
        "resource_classes": st.sampled_from([["general", "intelligent"], ["general"]]),
        "from_s": st.sampled_from([-100_000, -100_000, -3_600, 0, 5_000]),  # validity from T0: some start mid-usage
        "until_s": st.sampled_from([200_000, 200_000, 30_000, 3_600, 1]),  # after valid_from: some expire mid-usage
        "fund_fen": st.sampled_from([10**9, 1_000, 5, 0]),
    }), min_size=1, max_size=2) | st.just([]),
    "settled": st.booleans(),
    "charged_before": st.integers(0, 3),
    "fee_bps": st.integers(0, 10_000),
})
SME = {"share_pct": "30", "cap_per_consumer_fen": 400, "consumers": ["c1"], "resource_classes": ["general"],
       "from_s": -86_400, "until_s": 2 * 86_400, "fund_fen": 1_000}
JOBS = [("j0", "c0", "general", "standard", "cpu"), ("j1", "c1", "general", "spot", "cpu"),
        ("j2", "c2", "intelligent", "standard", "gpu"), ("j3", "c0", "intelligent", "spot", "gpu"),
        ("j4", "c1", "general", "standard", "cpu"), ("j5", "c0", "general", "spot", "cpu")]


def _seed(db: Database, s: dict[str, Any]) -> None:
    now = T0
    with db.transaction() as session:
        session.execute(insert(TenantRow), [{"id": t, "name": t, "kind": k, "created_at": now, "attrs": {}}
                                            for t, k in (("t-operator", "operator"), ("p1", "provider"),
                                                         ("c0", "consumer"), ("c1", "consumer"),
                                                         ("c2", "consumer"))])
        session.add(SiteRow(name="qingyang", tenant_id="p1", province="Gansu", created_at=now))
        session.flush()
        session.add_all([PoolRow(site="qingyang", name="cpu", resource_class="general", engine="local", cores=64,
                                 memory_gb=256, updated_at=now),
                         PoolRow(site="qingyang", name="gpu", resource_class="intelligent", engine="local", cores=64,
                                 memory_gb=256, devices=8, device_model="H800", updated_at=now)])
        session.flush()
        session.execute(insert(JobRow), [{
            "id": job, "tenant_id": consumer, "name": "", "state": "running", "resource_class": cls,
            "spec": {"command": ["true"], "service_level": level}, "cores": 2, "memory_gb": 1.0, "devices": 0,
            "priority": 0, "site": "qingyang", "pool": pool, "attempt": 1, "submitted_at": now, "reason": "",
            "placement": {}, "cancel_requested": False} for job, consumer, cls, level, pool in JOBS])
        session.add(PriceBookRow(version=1, effective_us=int((T0 - 86_400) * 1_000_000), created_at=now,
                                 created_by="test", body=BOOK))  # in the past: written as history, not via the API
        billing.set_contract(session, OPERATOR, "p1", s["fee_bps"])
        ledger = SqlLedger(session)
        at = datetime.fromtimestamp(T0 - 86_400, UTC)
        ledger.apply_many([plan_topup(f"fund{i}", consumer=f"c{i}", fen=f, at=at, actor="test")
                           for i, f in enumerate(s["funds"]) if f])
        for i, limit in enumerate(s["credit"]):
            ledger.set_credit_limit(f"c{i}", limit)
        ledger.apply_many([plan_hold(f"hold:{job}", hold_id=job, consumer=consumer, fen=fen, at=at, actor="test",
                                     job_id=job) for (job, consumer, *_), fen in zip(JOBS, s["holds"], strict=True)
                           if fen])
        for i, v in enumerate(s["vouchers"]):
            programme = f"sme{i}" if i else "sme"
            body = {k: v[k] for k in ("share_pct", "cap_per_consumer_fen", "consumers", "resource_classes")}
            start = T0 + v["from_s"]
            billing.create_programme(session, OPERATOR, {
                **body, "id": programme, "valid_from": start, "valid_until": start + v["until_s"]})
            if v["fund_fen"]:
                ledger.apply(plan_voucher_funding(f"fund-{programme}", programme=programme, fen=v["fund_fen"], at=at,
                                                  actor="test"))
        if s["settled"]:
            billing.settle(session, OPERATOR, start=datetime.fromtimestamp(T0 - 86_400, UTC),
                           end=datetime.fromtimestamp(T0, UTC))
    rows = []
    for seq, (job, offset, duration, core_s, device_s, nano) in enumerate(s["usage"]):
        _, consumer, cls, _, pool = JOBS[job]
        rows.append({"job_id": JOBS[job][0], "attempt": 1, "seq": seq, "tenant_id": consumer, "site": "qingyang",
                     "pool": pool, "resource_class": cls, "start": T0 + offset, "end": T0 + offset + duration,
                     "wall_s": duration, "cpu_s": 0.0, "core_s": core_s, "device_s": device_s,
                     "peak_memory_bytes": 1, "units_nano": nano, "reported_at": now})
    with db.transaction() as session:
        session.execute(insert(UsageRow), rows)
        queue_for_rating(session, list(session.scalars(select(UsageRow.id))))
    if s["charged_before"]:  # the first records were charged already, and are back on the queue
        with db.transaction() as session:
            billing.rate_pending_usage(session, limit=s["charged_before"], fast=False)
            queue_for_rating(session, list(session.scalars(select(UsageRow.id).order_by(UsageRow.id)
                                                          .limit(s["charged_before"]))))


def _state(db: Database) -> dict[str, Any]:
    with db.transaction() as s:
        transfers = [dict(r._mapping) for r in s.execute(select(
            *(c for c in TransferRow.__table__.c if c.name not in ("seq", "created_at"))).order_by(TransferRow.seq))]
        postings = [tuple(r) for r in s.execute(select(
            *(c for c in PostingRow.__table__.c if c.name != "id")).order_by(PostingRow.id))]
        released = {t["key"] for t in transfers if t["kind"] == "hold_release"}  # a stopped job's: booked now
        for t in transfers:
            if t["key"] in released:
                t["booked_us"] = t["body"]["booked_at"] = None
        postings = [(*p[:4], None) if p[0] in released else p for p in postings]
        return {
            "transfers": transfers, "postings": postings,
            "accounts": sorted(tuple(r) for r in s.execute(select(AccountRow.__table__))),
            "holds": sorted(tuple(r) for r in s.execute(select(HoldRow.__table__))),
            "vouchers": sorted(tuple(r) for r in s.execute(select(VoucherUsageRow.__table__))),
            "audit": [(r.action, r.object, r.detail) for r in s.scalars(select(AuditRow).order_by(AuditRow.id))],
            "jobs": sorted(s.execute(select(JobRow.id, JobRow.state, JobRow.cancel_requested)).all()),
        }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], phases=[Phase.generate])
@given(s=scenario, batch=st.sampled_from([1, 7, 1000]))
def test_the_integer_path_books_what_the_general_path_books(s: dict[str, Any], batch: int) -> None:
    fast, general = Database(_migrated_copy()), Database(_migrated_copy())
    try:
        _seed(fast, s)
        _seed(general, s)
        assert billing.rate_all(fast, limit=batch) == billing.rate_all(general, limit=batch, fast=False) == len(
            s["usage"])
        state = _state(fast)
        assert state == _state(general)
        paid = [t for t in state["transfers"] if t["voucher_fen"] > 0]
        event(f"charges a voucher paid: {min(len(paid), 3)}+")
        caps = {v["cap_per_consumer_fen"] for v in s["vouchers"]} - {0}
        event(f"a cap reached: {any(used in caps for *_, used in state['vouchers'])}")
    finally:
        fast.dispose()
        general.dispose()


def test_a_scenario_exercises_holds_vouchers_late_usage_and_the_credit_line(monkeypatch: Any) -> None:
    """The random scenarios can reach every branch: one fixed scenario does, on the integer path (the
    general path's booking is made to fail, so a voucher charge that left the integer path would show)."""
    from suanwang.services.billing import rating

    def general(*_: Any, **__: Any) -> None:
        raise AssertionError("a charge left the integer path")
    monkeypatch.setattr(rating, "_book_charge", general)
    db = Database(_migrated_copy())
    try:
        _seed(db, {"usage": [(0, 10.0, 3_600.0, 50_000.0, 0.0, 1), (1, -3_600.0, 60.0, 0.0, 0.0, 10**11),
                             (1, 20.0, 60.0, 1.0, 0.0, 10**9), (2, 5.0, 9_000.5, 1.0, 100.25, 1),
                             (3, 5.0, 60.0, 1.0, 100.25, 1), (0, -200_000.0, 60.0, 1.0, 0.0, 1)],
                   "funds": [1_000, 0, 5_000], "credit": [0, 500, 0], "holds": [300, 0, 50_000, 0, 0, 0],
                   "vouchers": [SME], "settled": True, "charged_before": 0, "fee_bps": 700})
        assert billing.rate_all(db) == 6
        state = _state(db)
        charges = {t["key"]: t for t in state["transfers"] if t["kind"] == "charge"}
        assert charges["usage:j0:1:0"]["hold_id"] == "j0"  # the hold paid first
        assert charges["usage:j1:1:2"]["voucher_programme"] == "sme"  # the voucher paid part of c1's charge
        assert charges["usage:j1:1:1"]["booked_us"] == int(T0 * 1_000_000)  # late usage: the open period's start
        assert "usage:j3:1:4" not in charges  # intelligent/spot: no entry
        assert "usage:j0:1:5" not in charges  # before the first book: free
        assert any(a[0] == "usage.unpriced" for a in state["audit"])
        assert charges["usage:j0:1:0"]["over_limit"]  # c0's charge passed its credit line: booked, flagged
        assert ("j0", "cancelled", True) in state["jobs"]  # and its job stopped (its agent kills it)
    finally:
        db.dispose()
