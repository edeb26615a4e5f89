"""The console's charts over time, from what the platform records (read-only; aggregates in ``series``).

No table keeps capacity or carbon history, so each series says where it comes from:

* used capacity: usage records (core- and card-seconds each attempt reported), summed per hour in the
  database (a record in the hour it starts); an attempt counts once it has reported.  Pool sizes are
  today's registered pools (their history is not kept): free = today's size - used, an estimate for past
  hours.
* placements and waits: job events (``placed``), the newest ``EVENTS`` of them.
* energy and carbon: estimated — card- or core-hours x the pool's power (catalogue TDP, else a default) x
  the site's one recorded carbon intensity and green-power share (no hourly grid data is recorded).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from suanwang.services.auth import Principal, Role
from suanwang.services.console import HOUR, recent_placements, usage_by_hour
from suanwang.services.grid_model import load_grid_model
from suanwang.services.sites import pool_views, site_views
from suanwang.web.data import _recent
from suanwang.web.series import counts, percentile

HOURS = 24
EVENTS = 5_000  # the newest placements read for the operator's charts
MINUTES = 60
CHART_FRESH_S = 15.0  # hourly and per-minute charts are read at most this often per process (they sum a day)


def _hours(now: float) -> tuple[float, list[str]]:
    t0 = (math.floor(now / HOUR) - HOURS + 1) * HOUR
    return t0, [datetime.fromtimestamp(t0 + k * HOUR, UTC).isoformat() for k in range(HOURS)]


def _held(k: int, t0: float, now: float) -> float:
    """Seconds of bucket ``k`` that have passed (the current hour is partly over)."""
    return max(1.0, min(HOUR, now - (t0 + k * HOUR)))


def owned_sites(session: Session, actor: Principal) -> set[str]:
    return {s.name for s in site_views(session) if actor.role is Role.OPERATOR or s.tenant_id == actor.tenant_id}


def capacity(session: Session, actor: Principal, now: float | None = None) -> dict[str, Any]:
    """Used and free cores and cards by class per hour of the last day, at the caller's own sites."""
    key = f"capacity:{actor.role.value}:{actor.tenant_id}"
    return _recent(key, lambda: _capacity(session, actor, time.time() if now is None else now),  # type: ignore[no-any-return]
                   CHART_FRESH_S)


def _capacity(session: Session, actor: Principal, now: float) -> dict[str, Any]:
    mine = owned_sites(session, actor)
    size: dict[str, list[int]] = {}
    for p in pool_views(session):
        if p.site in mine:
            c = size.setdefault(p.resource_class, [0, 0])
            c[0] += p.cores
            c[1] += p.devices
    t0, labels = _hours(now)
    first = int(t0 // HOUR)
    cores: dict[str, list[float]] = {}
    cards: dict[str, list[float]] = {}
    for r in usage_by_hour(session, t0):
        if r.site in mine and 0 <= r.hour - first < HOURS:
            cores.setdefault(r.resource_class, [0.0] * HOURS)[r.hour - first] += r.core_s
            cards.setdefault(r.resource_class, [0.0] * HOURS)[r.hour - first] += r.device_s
    table, series = [], {}
    for cls, (n_cores, n_cards) in sorted(size.items()):
        used_c = [v / _held(k, t0, now) for k, v in enumerate(cores.get(cls, [0.0] * HOURS))]
        used_d = [v / _held(k, t0, now) for k, v in enumerate(cards.get(cls, [0.0] * HOURS))]
        unit, used = ("cards", used_d) if n_cards else ("cores", used_c)
        series[f"{cls} ({unit})"] = [[labels[k], round(used[k], 2)] for k in range(HOURS)]
        table += [{"at": labels[k], "resource_class": cls, "used_cores": round(used_c[k], 2),
                   "free_cores": round(max(0.0, n_cores - used_c[k]), 2), "used_cards": round(used_d[k], 2),
                   "free_cards": round(max(0.0, n_cards - used_d[k]), 2), "cores": n_cores, "cards": n_cards}
                  for k in range(HOURS) if used_c[k] or used_d[k] or k == HOURS - 1]
    return {"rows": table, "chart": {"series": series, "step": True}}


def placements(session: Session, now: float | None = None) -> dict[str, Any]:
    """Placements per second and waits (submission to first placement) per minute of the last hour."""
    return _recent("placements", lambda: _placements(session, time.time() if now is None else now),  # type: ignore[no-any-return]
                   CHART_FRESH_S)


def _placements(session: Session, now: float) -> dict[str, Any]:
    t0 = (math.floor(now / 60) - MINUTES + 1) * 60
    rows = recent_placements(session, limit=EVENTS)
    n = counts((r.at for r in rows), t0=t0, bucket_s=60, n=MINUTES)
    waits: list[list[float]] = [[] for _ in range(MINUTES)]
    for r in rows:
        k = math.floor((r.at - t0) / 60)
        if 0 <= k < MINUTES and r.attempt <= 1:
            waits[k].append(max(0.0, r.at - r.submitted_at))
    labels = [datetime.fromtimestamp(t0 + k * 60, UTC).isoformat() for k in range(MINUTES)]
    table = [{"at": labels[k], "placements": n[k], "per_s": round(n[k] / 60, 3),
              "wait_p50_s": percentile(waits[k], 50), "wait_p95_s": percentile(waits[k], 95)}
             for k in range(MINUTES) if n[k]]
    every = [w for ws in waits for w in ws]
    return {"rows": table, "wait_p50_s": percentile(every, 50), "wait_p95_s": percentile(every, 95),
            "chart": {"series": {"placements/s": [[labels[k], round(n[k] / 60, 3)] for k in range(MINUTES)]}}}


def carbon(session: Session, now: float | None = None) -> dict[str, Any]:
    """Estimated energy, carbon and green-power share per hour of the last day, over all sites."""
    return _recent("carbon", lambda: _carbon(session, time.time() if now is None else now),  # type: ignore[no-any-return]
                   CHART_FRESH_S)


def _carbon(session: Session, now: float) -> dict[str, Any]:
    model = load_grid_model(session)
    sites = {s.name: s for s in site_views(session)}
    devices = {(p.site, p.name): p.devices for p in pool_views(session)}
    t0, labels = _hours(now)
    first = int(t0 // HOUR)
    b = {x: [0.0] * HOURS for x in ("kwh", "kg", "green")}
    for r in usage_by_hour(session, t0):
        k = r.hour - first
        if not 0 <= k < HOURS:
            continue
        sig = model.signals.get((r.site, r.pool))
        power = sig.power_kw if sig is not None else 0.0
        energy = (r.device_s if devices.get((r.site, r.pool)) else r.core_s) / HOUR * power
        site = sites.get(r.site)
        b["kwh"][k] += energy
        b["kg"][k] += energy * (site.carbon_kg_per_kwh if site else 0.0)
        b["green"][k] += energy * (site.green_share if site else 0.0)
    e, kg, g = b["kwh"], b["kg"], b["green"]
    share = [round(100 * g[k] / e[k], 1) if e[k] else None for k in range(HOURS)]
    table = [{"at": labels[k], "kwh": round(e[k], 3), "kg_co2": round(kg[k], 3), "green_pct": share[k]}
             for k in range(HOURS) if e[k]]
    return {"rows": table, "chart": {"series": {"kg CO2": [[labels[k], round(kg[k], 3)] for k in range(HOURS)],
                                                "green %": [[labels[k], share[k]] for k in range(HOURS)]}}}
