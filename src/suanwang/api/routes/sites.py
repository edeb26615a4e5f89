"""Sites, links, pools and grid capacity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from suanwang.api.deps import CurrentPrincipal, SessionDep
from suanwang.api.schemas import LinkIn, PoolOut, SiteIn, SiteOut
from suanwang.domain.catalogue import CATALOGUE_LABEL
from suanwang.domain.grid import Link, Site
from suanwang.services import sites
from suanwang.services.sites import pool_from_row, pool_scu_per_hour

router = APIRouter(tags=["sites"])


@router.get("/sites")
def list_sites(session: SessionDep, actor: CurrentPrincipal) -> list[SiteOut]:
    return [SiteOut.model_validate(r, from_attributes=True) for r in sites.list_sites(session)]


@router.post("/sites", status_code=201)
def create_site(body: SiteIn, session: SessionDep, actor: CurrentPrincipal) -> SiteOut:
    site = Site(**body.model_dump(exclude={"owner"}))
    row = sites.create_site(session, actor, site, owner=body.owner)
    return SiteOut.model_validate(row, from_attributes=True)


@router.get("/sites/{name}")
def get_site(name: str, session: SessionDep, actor: CurrentPrincipal) -> SiteOut:
    return SiteOut.model_validate(sites.get_site(session, name), from_attributes=True)


@router.get("/links")
def list_links(session: SessionDep, actor: CurrentPrincipal) -> list[dict[str, Any]]:
    return [
        {"a": r.a, "b": r.b, "latency_ms": r.latency_ms, "bandwidth_gbps": r.bandwidth_gbps, "direct": r.direct}
        for r in sites.list_links(session)
    ]


@router.post("/links", status_code=201)
def create_link(body: LinkIn, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    sites.create_link(session, actor, Link(**body.model_dump()))
    return body.model_dump()


@router.get("/pools")
def list_pools(session: SessionDep, actor: CurrentPrincipal, site: str | None = None) -> list[PoolOut]:
    out = []
    for row in sites.list_pools(session, site=site):
        scu = pool_scu_per_hour(pool_from_row(row))
        fields = {k: getattr(row, k) for k in PoolOut.model_fields if k not in ("scu_per_hour", "catalogue_warning")}
        out.append(PoolOut(**fields, scu_per_hour=str(scu),
                           catalogue_warning=(row.labels or {}).get(CATALOGUE_LABEL)))
    return out


@router.get("/capacity")
def capacity(session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    """Grid capacity in standard compute units per hour and national-style "P" (PFLOPS)."""
    return sites.grid_capacity(session)
