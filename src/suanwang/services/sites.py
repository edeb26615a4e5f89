"""Sites, links and pools: registration by operators and agents, and grid capacity."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain import units
from suanwang.domain.catalogue import CATALOGUE_LABEL, pool_warnings, rate_cpu, rate_device
from suanwang.domain.grid import Capacity, Link, Pool, Site
from suanwang.domain.packing import Sharing
from suanwang.domain.quantum import backends_of
from suanwang.domain.resources import Engine, ResourceClass
from suanwang.errors import Conflict, InvalidSpec, NotFound
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal, Role
from suanwang.services.views import PoolView, SiteView
from suanwang.store.cache import caches_of
from suanwang.store.tables import LinkRow, PoolRow, SiteRow, TenantRow


def site_from_row(row: SiteRow) -> Site:
    return Site(
        name=row.name,
        region=row.region,
        province=row.province,
        lat=row.lat,
        lon=row.lon,
        green_share=row.green_share,
        carbon_kg_per_kwh=row.carbon_kg_per_kwh,
        provider=row.tenant_id,
    )


def pool_from_row(row: PoolRow, region: str = "") -> Pool:
    node = None
    if row.node_cores is not None:
        node = Capacity(row.node_cores, row.node_memory_gb or 0.0, row.node_devices or 0)
    labels = dict(row.labels or {})
    if region:
        labels.setdefault("region", region)
    return Pool(
        name=row.name,
        site=row.site,
        resource_class=ResourceClass(row.resource_class),
        engine=Engine(row.engine),
        capacity=Capacity(row.cores, row.memory_gb, row.devices),
        device_model=row.device_model,
        device_memory_gb=row.device_memory_gb,
        cpu_model=row.cpu_model,
        tier=row.tier,
        node=node,
        labels=labels,
        quantum=backends_of(row.quantum),
        sharing=Sharing.from_json(row.sharing),
    )


def create_site(
    session: Session, actor: Principal, site: Site, *, owner: str | None = None, clock: Clock = SYSTEM_CLOCK
) -> SiteView:
    if session.get(SiteRow, site.name) is not None:
        raise Conflict(f"site {site.name!r} already exists")
    tenant = owner if actor.role is Role.OPERATOR and owner else actor.tenant_id
    if session.get(TenantRow, tenant) is None:
        raise NotFound(f"owner tenant {tenant!r} not found")
    row = SiteRow(
        name=site.name,
        tenant_id=tenant,
        region=site.region,
        province=site.province,
        lat=site.lat,
        lon=site.lon,
        green_share=site.green_share,
        carbon_kg_per_kwh=site.carbon_kg_per_kwh,
        online=False,
        last_seen=0.0,
        agent_info={},
        created_at=clock.time(),
    )
    session.add(row)
    record_audit(session, actor, "site.create", site.name)
    session.flush()
    return SiteView.of(row)


def get_site(session: Session, name: str) -> SiteRow:
    row = session.get(SiteRow, name)
    if row is None:
        raise NotFound(f"site {name!r} not found")
    return row


def list_sites(session: Session) -> list[SiteRow]:
    return list(session.scalars(select(SiteRow).order_by(SiteRow.name)))


def show_site(session: Session, name: str) -> SiteView:
    return SiteView.of(get_site(session, name))


def site_views(session: Session) -> list[SiteView]:
    return [SiteView.of(row) for row in list_sites(session)]


def create_link(session: Session, actor: Principal, link: Link) -> None:
    for end in (link.a, link.b):
        get_site(session, end)
    pair = ((LinkRow.a == link.a) & (LinkRow.b == link.b)) | ((LinkRow.a == link.b) & (LinkRow.b == link.a))
    if session.scalar(select(LinkRow.id).where(pair)) is not None:
        raise Conflict(f"a link between {link.a} and {link.b} already exists")
    row = LinkRow(a=link.a, b=link.b, latency_ms=link.latency_ms, bandwidth_gbps=link.bandwidth_gbps,
                  direct=link.direct)
    session.add(row)
    record_audit(session, actor, "link.create", f"{link.a}-{link.b}")
    session.flush()


def list_links(session: Session) -> list[LinkRow]:
    return list(session.scalars(select(LinkRow).order_by(LinkRow.id)))


def link_views(session: Session) -> list[Link]:
    """Every link, in the order they were created."""
    return [Link(a=r.a, b=r.b, latency_ms=r.latency_ms, bandwidth_gbps=r.bandwidth_gbps, direct=r.direct)
            for r in list_links(session)]


def list_pools(session: Session, *, site: str | None = None) -> list[PoolRow]:
    query = select(PoolRow).order_by(PoolRow.site, PoolRow.name)
    if site:
        query = query.where(PoolRow.site == site)
    return list(session.scalars(query))


def pool_views(session: Session, *, site: str | None = None) -> list[PoolView]:
    """The pools (of one site, or all) with their worth in standard compute units per hour."""
    return [PoolView(site=r.site, name=r.name, resource_class=r.resource_class, engine=r.engine, tier=r.tier,
                     cores=r.cores, memory_gb=r.memory_gb, devices=r.devices, device_model=r.device_model,
                     device_memory_gb=r.device_memory_gb, cpu_model=r.cpu_model,
                     scu_per_hour=str(pool_scu_per_hour(pool_from_row(r))), quantum=r.quantum, sharing=r.sharing,
                     catalogue_warning=(r.labels or {}).get(CATALOGUE_LABEL))
            for r in list_pools(session, site=site)]


def all_pools(session: Session) -> list[Pool]:
    """Every pool as a domain value, labelled with its site's region."""
    regions = {s.name: s.region for s in list_sites(session)}
    return [pool_from_row(r, regions.get(r.site, "")) for r in list_pools(session)]


POOL_CACHE_S = 1.0  # the ``pools`` cache's time-to-live (store.cache.ReadCaches)


def cached_pools(session: Session) -> list[Pool]:
    """``all_pools`` cached for a second per database: pools change rarely, submits are many.

    Used only to reject jobs no pool could ever run; placement reads fresh state.
    """
    return caches_of(session).pools.get(lambda: all_pools(session))


def forget_pools(session: Session) -> None:
    """Drop the cached pool list at once (this replica; another re-reads within ``POOL_CACHE_S``)."""
    caches_of(session).pools.invalidate()


def register_pools(
    session: Session, agent: Principal, pools: list[dict[str, Any]], info: dict[str, Any], *,
    clock: Clock = SYSTEM_CLOCK
) -> list[PoolRow]:
    """An agent declares its site's pools (upsert by name) and comes online."""
    site = get_site(session, agent.site or "")
    now = clock.time()
    existing = {r.name: r for r in list_pools(session, site=site.name)}
    rows = []
    for p in pools:
        _validate_pool(site.name, p)
        row = existing.get(p["name"]) or PoolRow(site=site.name, name=p["name"])
        for key in ("resource_class", "engine", "tier", "cores", "memory_gb", "devices", "device_model",
                    "device_memory_gb", "cpu_model", "node_cores", "node_memory_gb", "node_devices", "labels"):
            if key in p:
                setattr(row, key, p[key])
        row.tier = row.tier or "standard"
        row.labels = row.labels or {}
        row.quantum = [b.to_json() for b in backends_of(p.get("quantum"))]
        sharing = Sharing.from_json(p.get("sharing"))
        row.sharing = sharing.to_json() if sharing.shares else None
        flagged = pool_warnings(units.load_catalog(), cpu_model=row.cpu_model or "", cores=row.cores,
                                device_model=row.device_model or "", devices=row.devices or 0,
                                quantum=row.resource_class == ResourceClass.QUANTUM.value)
        labels = {k: v for k, v in (row.labels or {}).items() if k != CATALOGUE_LABEL}
        if flagged:  # visible in `suanwang pools`, the agent's log and the audit log
            labels[CATALOGUE_LABEL] = "; ".join(flagged)
            record_audit(session, agent, "pool.unknown_model", f"{site.name}/{row.name}", warnings=flagged)
        row.labels = labels
        row.updated_at = now
        session.add(row)
        rows.append(row)
    site.online = True
    site.last_seen = now
    site.agent_info = info
    forget_pools(session)
    record_audit(session, agent, "site.register", site.name, pools=[p["name"] for p in pools])
    session.flush()
    return rows


def _validate_pool(site: str, p: dict[str, Any]) -> None:
    """Check an agent's pool declaration with the domain's own invariants."""
    try:
        Pool(
            name=p["name"],
            site=site,
            resource_class=ResourceClass(p["resource_class"]),
            engine=Engine(p["engine"]),
            capacity=Capacity(int(p["cores"]), float(p["memory_gb"]), int(p.get("devices") or 0)),
            device_model=p.get("device_model") or "",
            device_memory_gb=float(p.get("device_memory_gb") or 0.0),
            quantum=backends_of(p.get("quantum")),
            sharing=Sharing.from_json(p.get("sharing")),
        )
    except KeyError as exc:
        raise InvalidSpec(f"pool {p.get('name')!r}: missing field {exc}") from exc
    except ValueError as exc:
        raise InvalidSpec(f"pool {p.get('name')!r}: {exc}") from exc


def pool_scu_per_hour(pool: Pool) -> Decimal:
    if pool.resource_class is ResourceClass.QUANTUM:
        return Decimal(0)  # the SCU is FP32 throughput; a quantum pool is measured in shots
    cat = units.load_catalog()
    cpu, card = rate_cpu(cat, pool.cpu_model).spec, rate_device(cat, pool.device_model).spec
    total = pool.capacity.cores * units.scu_per_hour(cpu)
    if pool.capacity.devices:
        total += pool.capacity.devices * units.scu_per_hour(card)
    return total.quantize(units.SCALE)


def grid_capacity(session: Session) -> dict[str, Any]:
    """Capacity per pool, per site and in total, in standard units per hour and in "P" (PFLOPS)."""
    per_site: dict[str, Decimal] = {}
    per_class: dict[str, Decimal] = {}
    pools_out = []
    for pool in all_pools(session):
        scu = pool_scu_per_hour(pool)
        per_site[pool.site] = per_site.get(pool.site, Decimal(0)) + scu
        per_class[pool.resource_class] = per_class.get(pool.resource_class, Decimal(0)) + scu
        pools_out.append({"site": pool.site, "pool": pool.name, "scu_per_hour": str(scu)})
    total = sum(per_site.values(), Decimal(0))
    return {
        "total_scu_per_hour": str(total),
        "total_pflops": str(units.to_pflops(total)),
        "sites": {k: {"scu_per_hour": str(v), "pflops": str(units.to_pflops(v))} for k, v in sorted(per_site.items())},
        "classes": {k: str(v) for k, v in sorted(per_class.items())},
        "pools": pools_out,
    }
