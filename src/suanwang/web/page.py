"""The minimal overview page at /: public aggregates only, since it needs no token.

Sites, pools, free capacity per resource class and counts of jobs by state;
never a job id, a command or a tenant (a consumer's own jobs are behind its
token in the API and CLI).
"""

from __future__ import annotations

from html import escape

from sqlalchemy.orm import Session

from suanwang.services.overview import free_capacity_by_class, job_counts
from suanwang.services.sites import grid_capacity, list_pools, list_sites

_STYLE = """body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:2rem;color:#1b2733}
table{border-collapse:collapse;margin-bottom:2rem}
td,th{border-bottom:1px solid #ddd;padding:.3rem .8rem;text-align:left}
th{background:#f3f6f9}.on{color:#137333}.off{color:#b3261e}h1 small{color:#666;font-weight:normal}"""


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_index(session: Session) -> str:
    cap = grid_capacity(session)
    sites = [
        [escape(s.name), escape(s.region), escape(s.province),
         '<span class="on">online</span>' if s.online else '<span class="off">offline</span>',
         escape(cap["sites"].get(s.name, {}).get("scu_per_hour", "0"))]
        for s in list_sites(session)
    ]
    pools = [
        [escape(p.site), escape(p.name), escape(p.resource_class), escape(p.engine), p.cores, f"{p.memory_gb:g}",
         p.devices, escape(p.device_model or "-")]
        for p in list_pools(session)
    ]
    free = [[escape(c.resource_class), c.free_cores, c.cores, c.free_devices, c.devices]
            for c in free_capacity_by_class(session)]
    counts = job_counts(session)
    jobs = [[escape(state), n] for state, n in counts.items()]
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none yet"
    return f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>suanwang 算网</title>
<style>{_STYLE}</style></head><body>
<h1>suanwang 算网 <small>open computing power network</small></h1>
<p>Grid capacity: <b>{escape(cap['total_scu_per_hour'])}</b> standard compute units per hour
(<b>{escape(cap['total_pflops'])}</b> P). Jobs: {escape(summary)}.</p>
<h2>Sites 节点</h2>{_table(["site", "region", "province", "status", "SCU/h"], sites)}
<h2>Pools 资源池</h2>{_table(["site", "pool", "class", "engine", "cores", "memory GB", "devices", "device"], pools)}
<h2>Free capacity 空闲算力</h2>{_table(["class", "free cores", "cores", "free devices", "devices"], free)}
<h2>Jobs 作业</h2>{_table(["state", "jobs"], jobs)}
<p><a href="/docs">API docs</a> · <a href="/openapi.json">OpenAPI</a></p></body></html>"""
