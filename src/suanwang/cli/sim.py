"""`suanwang explain` and `suanwang simulate`: why a job is where it is, and what-if replays of real traces."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from suanwang.cli.client import Client, console, err, print_json
from suanwang.errors import SuanwangError

DATA = resources.files("suanwang") / "data"
DEFAULT_GRID = resources.files("suanwang") / "grids" / "east_data_west.yaml"
DEFAULT_TRACE = DATA / "pwa_nasa_ipsc_1993_swf" / "NASA-iPSC-1993-3.1-cln.swf.gz"


def register(app: typer.Typer) -> None:
    @app.command()
    def explain(job_id: str, url: str | None = None, token: str | None = None,
                json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Why a job is placed where it is, or still waits: pools considered, ruled out, best scores."""
        e = Client(url, token).call("GET", f"/jobs/{job_id}/explain")
        if json_out:
            print_json(e)
            return
        console.print(e["summary"] + (" (deferred to cheaper/greener hours)" if e.get("deferred") else ""))
        if e["ruled_out"]:
            table = Table("ruled out", "why")
            for pool, why in sorted(e["ruled_out"].items()):
                table.add_row(pool, why)
            console.print(table)
        if e["best"]:
            table = Table("candidate", "score", "fits now", "cost fen", "carbon kg", "finish in s", "latency ms")
            for c in e["best"]:
                t = c["terms"]
                table.add_row(f"{c['site']}/{c['pool']}", f"{c['score']:.3f}", "yes" if c["fits_now"] else "no",
                              f"{t.get('cost_fen', 0):.0f}", f"{t.get('carbon_kg', 0):.2f}",
                              f"{t.get('finish_at', 0) - t.get('now', 0):.0f}" if "now" in t else "-",
                              f"{t.get('latency_ms', 0):.1f}")
            console.print(table)

    @app.command()
    def simulate(
        grid: Annotated[Path | None, typer.Option(help="grid file (YAML); default: the East-Data-West hubs")] = None,
        trace: Annotated[Path | None, typer.Option(help="trace: SWF, Alibaba DLRM, Azure LLM or generic CSV")] = None,
        policy: Annotated[list[str] | None, typer.Option(help="policies to compare (repeat); default: all")] = None,
        limit: Annotated[int, typer.Option(help="replay the first N jobs")] = 1000,
        load: Annotated[float, typer.Option(help="offered load: the grid is sliced to it (the trace's arrivals "
                                                 "compressed where one node per pool is still too much)")] = 0.7,
        deadline_fraction: Annotated[float, typer.Option(help="share of jobs given a synthetic deadline")] = 0.3,
        seed: int = 1,
        out: Annotated[Path, typer.Option(help="report directory (index.html + PNG plots)")] = Path("sim-report"),
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Replay a workload against a grid through the live scheduler code, per policy, and write a report."""
        from suanwang.sim import POLICIES, load_grid, load_trace, run_simulation, with_placement_hints, write_report
        from suanwang.sim.sizing import at_load

        try:
            grid_file = load_grid(grid or Path(str(DEFAULT_GRID)))
            jobs = load_trace(trace or Path(str(DEFAULT_TRACE)), limit=limit)
        except (SuanwangError, OSError) as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
        edges = [s.name for s in grid_file.model.sites][-3:]
        jobs = with_placement_hints(jobs, consumer_sites=edges, data_sites=edges, data_gb=5.0,
                                    deadline_fraction=deadline_fraction, seed=seed)
        model, jobs, _ = at_load(grid_file.model, jobs, load)
        policies = policy or list(POLICIES)
        results = []
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} jobs"),
                   TimeElapsedColumn())
        with Progress(*columns, console=console) as bar:
            for name in policies:
                task = bar.add_task(name, total=len(jobs))
                results.append(run_simulation(model, jobs, name,
                                              progress=lambda done, total, _t, task=task:
                                              bar.update(task, completed=done)))
                bar.update(task, completed=len(jobs))
        report = write_report(results, out, title=f"suanwang simulation: {len(jobs)} jobs")
        summaries = [r.summary() for r in results]
        if json_out:
            typer.echo(json.dumps({"report": str(report), "policies": summaries}))
            return
        table = Table("policy", "cost (yuan)", "carbon kg", "wait mean s", "wait p99 s", "deadline misses")
        for s in summaries:
            table.add_row(str(s["policy"]), f"{int(s['cost_fen']) / 100:,.2f}", f"{s['carbon_kg']:,.1f}",
                          f"{s['wait_mean_s']:,.0f}", f"{s['wait_p99_s']:,.0f}", str(s["deadline_misses"]))
        console.print(table)
        console.print(f"report: {report}")
