"""What each console view shows, as plain values read through the services (no rows reach a template).

Public views get aggregates only: sites, links, capacity, prices, job counts by state; never a job, a
command or a tenant.  Role views pass the signed-in principal to the same service functions the API uses,
so a consumer sees its own tenant's objects and another tenant's id answers 404 here as there.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from suanwang.domain.market.session import DEFAULT_SCHEDULE, Schedule
from suanwang.domain.tou import TouTariff
from suanwang.errors import InvalidSpec, NotFound
from suanwang.services import audit, billing, console, jobs, market
from suanwang.services.auth import Principal, Role, list_tokens, token_json
from suanwang.services.overview import free_capacity_by_class, job_counts, queue_depth, rating_lag
from suanwang.services.sites import grid_capacity, link_views, pool_views, site_views

PAGE = 25
FRESH_S = 2.0  # public and operator aggregates are read at most this often per process (they scan all jobs)
_memo: dict[str, tuple[float, Any]] = {}


def _recent(key: str, compute: Callable[[], Any], fresh_s: float = FRESH_S) -> Any:
    """``compute()``, or its value from under ``FRESH_S`` ago: an anonymous visitor cannot make every page view
    a scan of the jobs table, and a busy page costs one scan per two seconds."""
    hit = _memo.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < fresh_s:
        return hit[1]
    value = compute()
    _memo[key] = (now, value)
    return value


def _bands(tou: TouTariff | None, at: datetime) -> list[str]:
    """The band of each hour of ``at``'s day (24 names), or [] without a time-of-use tariff."""
    if tou is None:
        return []
    return [tou.period_at(at.replace(hour=h, minute=0, second=0, microsecond=0)).band.value for h in range(24)]


def books_in_force(session: Session, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each owner's newest price book already in force, its entries with today's time-of-use bands."""
    now = now or datetime.now(UTC)
    newest: dict[str, Any] = {}
    for book in billing.load_books(session):
        if book.effective_from <= now and (book.owner not in newest or book.version > newest[book.owner].version):
            newest[book.owner] = book
    out = []
    for owner, book in sorted(newest.items()):
        entries = [{"site": e.site or "*", "pool": e.pool or "*", "resource_class": e.resource_class.value,
                    "tier": e.tier, "service_level": e.service_level.value, "unit": e.unit.value,
                    "unit_price_fen": str(e.unit_price_fen), "green_discount_pct": str(e.green_discount_pct),
                    "tou": e.tou.name if e.tou else "", "tou_source": e.tou.source if e.tou else "",
                    "stand_in": bool(e.tou and e.tou.is_stand_in), "bands": _bands(e.tou, now)}
                   for e in book.entries]
        out.append({"owner": owner or "operator", "version": book.version,
                    "effective_from": book.effective_from.isoformat(), "entries": entries})
    return out


def location_unknown(site: dict[str, Any]) -> bool:
    """A site registered without coordinates keeps the column defaults (0, 0), in the Gulf of Guinea, where no
    site of this network stands: it is listed as "location unknown", never drawn there."""
    return not site["lat"] and not site["lon"]


def grid(session: Session) -> dict[str, Any]:
    """The public grid: sites at their coordinates, links, capacity per class and job counts by state."""
    return _recent("grid", lambda: _grid(session))  # type: ignore[no-any-return]


def _grid(session: Session) -> dict[str, Any]:
    cap = grid_capacity(session)
    sites = [{"name": s.name, "region": s.region, "province": s.province, "lat": s.lat, "lon": s.lon,
              "online": s.online, "green_share": s.green_share, "carbon": s.carbon_kg_per_kwh,
              "scu_per_hour": cap["sites"].get(s.name, {}).get("scu_per_hour", "0")} for s in site_views(session)]
    where = {s["name"]: s for s in sites}
    links = [{"a": k.a, "b": k.b, "latency_ms": k.latency_ms, "bandwidth_gbps": k.bandwidth_gbps,
              "green_share": min(where[k.a]["green_share"], where[k.b]["green_share"]) if k.a in where and k.b in where
              else 0.0} for k in link_views(session)]
    classes = [{"resource_class": c.resource_class, "free_cores": c.free_cores, "cores": c.cores,
                "free_devices": c.free_devices, "devices": c.devices,
                "scu_per_hour": cap["classes"].get(c.resource_class, "0")} for c in free_capacity_by_class(session)]
    return {"sites": sites, "links": links, "classes": classes, "total_scu_per_hour": cap["total_scu_per_hour"],
            "total_pflops": cap["total_pflops"], "job_counts": job_counts(session)}


def pools(session: Session, site: str | None = None) -> list[dict[str, Any]]:
    return [{"site": p.site, "name": p.name, "resource_class": p.resource_class, "engine": p.engine,
             "cores": p.cores, "memory_gb": p.memory_gb, "devices": p.devices, "device_model": p.device_model}
            for p in pool_views(session, site=site)]


def job_row(j: Any) -> dict[str, Any]:
    return {"id": j.id, "name": j.name, "state": j.state, "resource_class": j.resource_class, "cores": j.cores,
            "devices": j.devices, "site": j.site or "", "pool": j.pool or "", "submitted_at": j.submitted_at,
            "tenant_id": j.tenant_id}


def jobs_page(session: Session, actor: Principal, *, state: str | None, site: str | None,
              before: str | None) -> dict[str, Any]:
    """One page of the caller's jobs, newest first, keyset-paged (rows never shift as new jobs arrive)."""
    rows = jobs.list_jobs(session, actor, state=state or None, site=site or None, limit=PAGE + 1,
                          before=before or None)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return {"jobs": [job_row(r) for r in rows], "next": rows[-1].id if more and rows else None}


def job_detail(session: Session, actor: Principal, job_id: str) -> dict[str, Any]:
    """One job (404 when not the caller's): events, logs, usage and its ledger transfers."""
    row = jobs.show_job(session, actor, job_id)
    events = [{"at": e.at, "attempt": e.attempt, "from": e.from_state, "to": e.to_state, "reason": e.reason}
              for e in jobs.job_events(session, actor, job_id)]
    try:
        _, log = jobs.read_logs(session, actor, job_id)
        logs = log.decode("utf-8", "replace")[-20_000:]
    except Exception:
        logs = ""
    usage = [{"attempt": u.attempt, "seq": u.seq, "units": f"{u.units_nano / 1e9:.6f}", "start": u.start,
              "end": u.end} for u in jobs.list_usage(session, actor, job_id=job_id)]
    transfers = billing.ledger_transfers(session, actor, job_id=job_id, limit=200)
    return {"job": job_row(row), "command": list(row.spec.get("command") or []), "events": events, "logs": logs,
            "usage": usage, "transfers": transfers,
            "cancellable": row.state in ("pending", "placed", "queued_at_site", "running", "requeued")}


def wallet(session: Session, actor: Principal) -> dict[str, Any]:
    view = billing.wallet_view(session, actor, actor.tenant_id)
    vouchers = billing.list_programmes(session, actor)
    charges = billing.ledger_transfers(session, actor, consumer=actor.tenant_id, limit=1000)
    return {"wallet": view, "vouchers": vouchers, "charges": charges[-20:]}


PERIODS = ("day", "week", "month")


def _period_of(booked_at: str, period: str) -> str:
    if period == "month":
        return booked_at[:7]
    if period == "week":
        year, week, _ = datetime.fromisoformat(booked_at[:10]).isocalendar()
        return f"{year}-W{week:02d}"
    return booked_at[:10]


def earnings(session: Session, actor: Principal, period: str = "day") -> list[dict[str, Any]]:
    """A provider's payouts and charges, summed per day, ISO week or month (UTC) from its ledger transfers."""
    by_day: dict[str, int] = {}
    for t in billing.ledger_transfers(session, actor, limit=10_000):
        day = _period_of(t["booked_at"], period)
        for leg in t["postings"].split("; "):
            account, _, amount = leg.rpartition(" ")
            if actor.tenant_id in account and amount.lstrip("+-").isdigit():
                by_day[day] = by_day.get(day, 0) + int(amount)
    return [{"day": d, "fen": v} for d, v in sorted(by_day.items())]


def operator(session: Session, actor: Principal) -> dict[str, Any]:
    """Backlog, rating lag, reconciliation, settlements, vouchers, tokens (aggregates up to ``FRESH_S`` old)."""
    return _recent("operator", lambda: _operator(session, actor))  # type: ignore[no-any-return]


def _operator(session: Session, actor: Principal) -> dict[str, Any]:
    backlog, lag_s = rating_lag(session)
    depth = [{"resource_class": c, "site": s, "state": st, "jobs": int(n)} for (c, s, st), n in queue_depth(session)]
    return {"depth": depth, "rating_backlog": backlog, "rating_lag_s": round(lag_s, 1),
            "reconcile": billing.reconcile_view(session, actor),
            "settlements": billing.list_settlements(session, actor),
            "vouchers": billing.list_programmes(session, actor),
            "tokens": [token_json(t) for t in list_tokens(session, limit=200)], "job_counts": job_counts(session)}


def audit_rows(session: Session, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest audit rows (operator and auditor only, as the API's ``GET /audit``)."""
    rows = audit.audit_page(session, limit=limit)["rows"]
    return [{k: r[k] for k in ("id", "at", "actor", "tenant_id", "action", "object")}
            | {"detail": json.dumps(r["detail"], ensure_ascii=False, default=str)[:300]} for r in rows]


def is_role(actor: Principal, *roles: Role) -> bool:
    return actor.role in roles


BOARD_ROWS = 400  # rows per table on the board (a session holds at most sites x classes x slots of them)


def _slot_at(m: dict[str, Any], slot: int) -> str:
    return datetime.fromtimestamp(m["first_slot_at"] + slot * m["slot_s"], UTC).isoformat()


def market_board(session: Session, now: float | None = None, schedule: Schedule = DEFAULT_SCHEDULE) -> dict[str, Any]:
    """The public market board (aggregates only, never who): depth of each open session per (site, class, slot)
    and the prices and volumes of the last cleared sessions, read through ``services.market``."""
    return _recent("board", lambda: _board(session, time.time() if now is None else now,  # type: ignore[no-any-return]
                                           schedule))


def _board(session: Session, now: float, schedule: Schedule) -> dict[str, Any]:
    open_ = []
    for s in market.sessions_json(now, schedule):
        d = market.market_data(session, s["id"], schedule)
        if not d["offered"] and not d["wanted"]:
            continue
        open_.append({"session": d["session"], "kind": d["kind"], "gate_at": d["gate_at"],
                      "offered": [{**o, "at": _slot_at(d, o["slot"])} for o in d["offered"][:BOARD_ROWS]],
                      "wanted": [{**w, "at": _slot_at(d, w["slot"])} for w in d["wanted"][:BOARD_ROWS]]})
    cleared = []
    for sid in console.cleared_sessions(session, limit=3):
        try:
            d = market.market_data(session, sid, schedule)
        except InvalidSpec:
            continue  # cleared under an earlier schedule: not this schedule's session any more
        prices = [{"site": p["site"], "resource_class": p["resource_class"], "slot": p["slot"],
                   "at": _slot_at(d, p["slot"]), "price_fen": str(Decimal(p["price_cf"]) / 100), "volume": p["volume"]}
                  for p in d["prices"][:BOARD_ROWS]]
        cleared.append({"session": d["session"], "kind": d["kind"], "prices": prices,
                        "volume": sum(p["volume"] for p in d["prices"])})
    series: dict[str, list[list[Any]]] = {}
    if cleared:
        for p in cleared[0]["prices"]:
            series.setdefault(f'{p["site"]} · {p["resource_class"]}', []).append([p["at"], float(p["price_fen"])])
    return {"open": open_, "cleared": cleared, "chart": {"series": series}}


def own_market(session: Session, actor: Principal) -> dict[str, Any]:
    """The caller's own orders and contracts (a consumer's bids, a provider's asks), as the API returns them."""
    contracts = [{**c, "price_fen": str(Decimal(c["buyer_price_cf"] if c["consumer"] == actor.tenant_id
                                                else c["seller_price_cf"]) / 100)}
                 for c in market.contracts_json(session, actor)[-200:]]
    return {"orders": market.orders_json(session, actor)[:200], "contracts": contracts}


def _own_statement(settlement: dict[str, Any], actor: Principal) -> dict[str, Any] | None:
    """The caller's own statement in a settlement (consumer or provider), never another party's."""
    side, key = ("consumers", "consumer") if actor.role is Role.CONSUMER else ("providers", "provider")
    return next((s for s in settlement[side] if s.get(key) == actor.tenant_id), None)


def statements(session: Session, actor: Principal) -> list[dict[str, Any]]:
    """Settlement periods in which the caller's tenant has a statement (newest first), with its closing."""
    found = []
    for s in billing.list_settlements(session, actor):
        own = _own_statement(s, actor)
        if own is not None:
            found.append({"id": s["id"], "start": s["start"], "end": s["end"], "closing_fen": own["closing_fen"]})
    return found[::-1]


def statement(session: Session, actor: Principal, settlement_id: int) -> dict[str, Any]:
    """One settlement's statement of the caller's tenant; NotFound when it has none there (as for an id
    that does not exist: another tenant's statement is not told apart from none)."""
    try:
        s = billing.settlement_view(session, actor, settlement_id)
    except NotFound:
        s = None
    own = _own_statement(s, actor) if s is not None else None
    if s is None or own is None:
        raise NotFound(f"statement {settlement_id} not found")
    return {"id": s["id"], "start": s["start"], "end": s["end"], "own": own,
            "kind": "consumer" if actor.role is Role.CONSUMER else "provider"}


def statement_csv(session: Session, actor: Principal, settlement_id: int) -> str:
    """The settled CSV cut to the caller's own lines (header kept; the party column is the tenant)."""
    statement(session, actor, settlement_id)  # 404 unless the tenant has a statement there
    text = billing.settlement_csv_text(session, actor, settlement_id)
    sections = ("consumer", "consumer_charge") if actor.role is Role.CONSUMER else ("provider", "provider_charge")
    lines = text.splitlines()
    kept = [line for line in lines[1:] if tuple(next(csv.reader([line]))[:2]) in
            {(sec, actor.tenant_id) for sec in sections}]
    return "\n".join([lines[0], *kept]) + "\n"


def accruing(session: Session, actor: Principal) -> dict[str, Any]:
    """Spend accruing now: the hold on the tenant's running jobs (an upper bound set at submission, not a
    charge) and usage its jobs reported that rating has not priced yet (records and units, no price)."""
    spend = console.accruing(session, actor.tenant_id)
    return {"unrated_records": spend.unrated_records,
            "unrated_units": f"{Decimal(spend.unrated_units_nano).scaleb(-9):.6f}", "active_jobs": spend.active_jobs}
