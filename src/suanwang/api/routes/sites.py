"""Sites, links, pools and grid capacity."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter

from suanwang.api.deps import CurrentPrincipal, SessionDep
from suanwang.api.schemas import LinkIn, PoolOut, SiteIn, SiteOut
from suanwang.domain.grid import Link, Site
from suanwang.services import sites

router = APIRouter(tags=["sites"])


@router.get("/sites")
def list_sites(session: SessionDep, actor: CurrentPrincipal) -> list[SiteOut]:
    return [SiteOut.model_validate(s, from_attributes=True) for s in sites.site_views(session)]


@router.post("/sites", status_code=201)
def create_site(body: SiteIn, session: SessionDep, actor: CurrentPrincipal) -> SiteOut:
    site = Site(**body.model_dump(exclude={"owner"}))
    return SiteOut.model_validate(sites.create_site(session, actor, site, owner=body.owner), from_attributes=True)


@router.get("/sites/{name}")
def get_site(name: str, session: SessionDep, actor: CurrentPrincipal) -> SiteOut:
    return SiteOut.model_validate(sites.show_site(session, name), from_attributes=True)


@router.get("/links")
def list_links(session: SessionDep, actor: CurrentPrincipal) -> list[dict[str, Any]]:
    return [dataclasses.asdict(link) for link in sites.link_views(session)]


@router.post("/links", status_code=201)
def create_link(body: LinkIn, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    sites.create_link(session, actor, Link(**body.model_dump()))
    return body.model_dump()


@router.get("/pools")
def list_pools(session: SessionDep, actor: CurrentPrincipal, site: str | None = None) -> list[PoolOut]:
    return [PoolOut.model_validate(p, from_attributes=True) for p in sites.pool_views(session, site=site)]


@router.get("/capacity")
def capacity(session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    """Grid capacity in standard compute units per hour and national-style "P" (PFLOPS)."""
    return sites.grid_capacity(session)
