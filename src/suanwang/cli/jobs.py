"""Client commands: submit, jobs, show, logs, cancel, usage, sites, pools, capacity."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from suanwang.cli.client import Client, console, print_json

Url = Annotated[str | None, typer.Option("--url", help="platform URL (or SUANWANG_URL)")]
Token = Annotated[str | None, typer.Option("--token", help="bearer token (or SUANWANG_TOKEN)")]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


def _jobs_table(jobs: Sequence[Mapping[str, Any]]) -> Table:
    table = Table("id", "state", "site", "pool", "attempt", "command")
    for j in jobs:
        table.add_row(j["id"], j["state"], j["site"] or "-", j["pool"] or "-", str(j["attempt"]),
                      " ".join(j["spec"]["command"])[:60])
    return table


def usage_table(records: list[dict[str, Any]]) -> Table:
    """Usage records in 80 columns: the job with attempt.seq, where, seconds, peak memory, SCU (exact in --json);
    the cards column only when a record used cards, and site/pool folds rather than losing characters."""
    cards = any(r["device_s"] for r in records)
    n = len(records)
    caption = f"{n} record{'s' * (n != 1)}, {_scu_total(records)} SCU" if records else "no usage yet"
    table = Table(box=box.SIMPLE_HEAD, padding=0, pad_edge=False, show_edge=False, collapse_padding=True,
                  caption=caption)
    table.add_column("job#attempt.seq", no_wrap=True)
    table.add_column("site/pool", overflow="fold", min_width=8)
    for name in ("wall s", "cpu s", *(("card s",) if cards else ()), "peak MB", "SCU"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for r in records:
        seconds = [r["wall_s"], r["cpu_s"], *((r["device_s"],) if cards else ())]
        table.add_row(f"{r['job_id']}#{r['attempt']}.{r['seq']}", f"{r['site']}/{r['pool']}",
                      *(_short(v) for v in seconds), _short(r["peak_memory_bytes"] / 2**20), _scu(r["units"]))
    return table


def _short(v: float) -> str:
    """A number in at most 7 characters: 12.35, 1234.5, 123457, 1.2e+07."""
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}" if abs(v) < 10_000 else f"{v:.0f}" if abs(v) < 1e6 else f"{v:.1e}"


def _scu(units: str) -> str:
    """SCU to 6 places (the record keeps nano-units; --json has them exact)."""
    try:
        return str(Decimal(units).quantize(Decimal("0.000001")))
    except (InvalidOperation, ValueError):
        return str(units)[:12]


def _scu_total(records: list[dict[str, Any]]) -> str:
    try:
        return _scu(str(sum((Decimal(r["units"]) for r in records), Decimal(0))))
    except (InvalidOperation, ValueError):
        return "?"


def _names(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def register(app: typer.Typer) -> None:
    @app.command()
    def submit(
        command: Annotated[list[str] | None, typer.Argument(help="the command, after -- (none for --circuit)")] = None,
        cores: int = 1, memory_gb: float = 1.0,
        devices: Annotated[float, typer.Option(help="whole cards (2) or a fraction of one card (0.25)")] = 0,
        device_memory_gb: Annotated[float, typer.Option(help="device memory a fraction holds on its card")] = 0.0,
        resource_class: Annotated[str, typer.Option("--class")] = "general",
        device_model: str = "", duration_s: float = 3600.0, name: str = "",
        deadline: float | None = None, max_price_fen: int | None = None,
        service_level: str = "standard", region: str = "", on_lost: str = "requeue",
        wait: Annotated[bool, typer.Option("--wait", help="wait until it ends and print its logs")] = False,
        device_models: Annotated[str, typer.Option(help="any of these models, comma-separated: V100,T4")] = "",
        exclude_device_models: Annotated[str, typer.Option(help="none of these models, comma-separated")] = "",
        circuit: Annotated[Path | None, typer.Option(help="quantum: an OpenQASM 2/3 file (class quantum)")] = None,
        shots: Annotated[int, typer.Option(help="quantum: how many times to run and measure the circuit")] = 1000,
        url: Url = None, token: Token = None, json: Json = False,
    ) -> None:
        """Submit a job: suanwang submit --cores 2 -- python train.py ; suanwang submit --circuit bell.qasm"""
        c = Client(url, token)
        body: dict[str, Any] = {
            "command": command or [], "cores": cores, "memory_gb": memory_gb,
            "devices": int(devices) if devices == int(devices) else devices, "device_memory_gb": device_memory_gb,
            "resource_class": resource_class, "device_model": device_model, "duration_s": duration_s,
            "name": name, "deadline": deadline, "max_price_fen": max_price_fen,
            "service_level": service_level, "region": region, "on_lost": on_lost,
            "device_models": _names(device_models), "exclude_device_models": _names(exclude_device_models)}
        if circuit is not None:
            body |= {"resource_class": "quantum", "circuit": circuit.read_text(), "shots": shots}
        job = c.submit(body)
        if wait:
            with console.status(f"{job['id']}: {job['state']}") as status:
                while job["state"] not in TERMINAL:
                    time.sleep(0.3)
                    job = c.job(job["id"])
                    status.update(f"{job['id']}: {job['state']}")
        if json:
            print_json(job)
        else:
            console.print(f"{job['id']} {job['state']}")
            if wait:
                typer.echo(c.logs(job["id"]), nl=False)
        if wait and job["state"] != "succeeded":
            raise typer.Exit(1)

    @app.command("jobs")
    def list_jobs(state: str | None = None, site: str | None = None, limit: int = 50,
                  url: Url = None, token: Token = None, json: Json = False) -> None:
        """List jobs, newest first."""
        page = Client(url, token).jobs_page(state=state, site=site, limit=limit)
        print_json(page) if json else console.print(_jobs_table(page["jobs"]))

    @app.command()
    def show(job_id: str, url: Url = None, token: Token = None, json: Json = False) -> None:
        """Show one job and its events."""
        c = Client(url, token)
        job: dict[str, Any] = dict(c.job(job_id))
        events = c.job_events(job_id)
        if json:
            print_json(job | {"events": events})
            return
        console.print(_jobs_table([job]))
        if job["started_at"]:
            console.print(f"started: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(job['started_at']))}")
        elif job["state"] == "queued_at_site":
            console.print(f"leased by {job['site']}'s agent; waiting in its engine's queue, not started yet")
        if job["reason"]:
            console.print(f"reason: {job['reason']}")
        table = Table("at", "attempt", "from", "to", "reason")
        for e in events:
            table.add_row(time.strftime("%H:%M:%S", time.localtime(e["at"])), str(e["attempt"]), e["from"], e["to"],
                          e["reason"])
        console.print(table)

    @app.command()
    def logs(job_id: str, attempt: int | None = None, url: Url = None, token: Token = None) -> None:
        """Print a job's output (latest attempt unless --attempt)."""
        typer.echo(Client(url, token).logs(job_id, attempt=attempt or None), nl=False)

    @app.command()
    def cancel(job_id: str, url: Url = None, token: Token = None, json: Json = False) -> None:
        """Cancel a job; one leased to a site (queued_at_site or running) is killed there."""
        job = Client(url, token).cancel(job_id)
        print_json(job) if json else console.print(f"{job['id']} {job['state']}")

    @app.command()
    def usage(job_id: str | None = None, url: Url = None, token: Token = None, json: Json = False) -> None:
        """Usage records (what ran, measured), with standard compute units."""
        records = Client(url, token).usage(job_id=job_id or None)
        if json:
            print_json(records)
            return
        console.print(usage_table(records))

    @app.command()
    def sites(url: Url = None, token: Token = None, json: Json = False) -> None:
        """Sites of the grid and whether their agents are online."""
        rows = Client(url, token).sites()
        if json:
            print_json(rows)
            return
        table = Table("site", "region", "province", "online", "last seen")
        for s in rows:
            seen = time.strftime("%H:%M:%S", time.localtime(s["last_seen"])) if s["last_seen"] else "-"
            table.add_row(s["name"], s["region"], s["province"], "yes" if s["online"] else "no", seen)
        console.print(table)

    @app.command()
    def pools(site: str | None = None, url: Url = None, token: Token = None, json: Json = False) -> None:
        """Pools and their capacity in standard compute units per hour."""
        rows = Client(url, token).pools(site=site or None)
        if json:
            print_json(rows)
            return
        table = Table("site", "pool", "class", "engine", "cores", "memory GB", "devices", "device", "SCU/h")
        for p in rows:
            table.add_row(p["site"], p["name"], p["resource_class"], p["engine"], str(p["cores"]),
                          f"{p['memory_gb']:g}",
                          str(p["devices"]), p["device_model"] or "-", p["scu_per_hour"])
        console.print(table)

    @app.command()
    def capacity(url: Url = None, token: Token = None, json: Json = False) -> None:
        """Grid capacity in standard units per hour and in P (PFLOPS, FP32-equivalent)."""
        cap = Client(url, token).capacity()
        if json:
            print_json(cap)
            return
        console.print(f"total: {cap['total_scu_per_hour']} SCU/h = {cap['total_pflops']} P")
        for site, v in cap["sites"].items():
            console.print(f"  {site}: {v['scu_per_hour']} SCU/h ({v['pflops']} P)")

