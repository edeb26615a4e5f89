"""`suanwang explain` and `suanwang simulate`: why a job is where it is, and what-if replays of real traces."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
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
        e = Client(url, token).explain(job_id)
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
            table = Table("candidate", "score", "fits now", "cost ¥", "carbon kg", "finish in s", "latency ms")
            for c in e["best"]:
                t = c["terms"]
                table.add_row(f"{c['site']}/{c['pool']}", f"{c['score']:.3f}", "yes" if c["fits_now"] else "no",
                              f"{float(t.get('cost_fen', 0)) / 100:,.2f}", f"{t.get('carbon_kg', 0):.2f}",
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
        bound_jobs: Annotated[int, typer.Option(help="compute the HiGHS cost bound up to this many jobs")] = 600,
        matrix: Annotated[bool, typer.Option("--matrix", help="run the evaluation matrix (every shipped trace, "
                                                            "load, variant, seed) instead of one replay")] = False,
        quick: Annotated[bool, typer.Option("--quick", help="with --matrix: the quick plan (under a minute)")] = False,
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Replay a workload against a grid through the live scheduler code, per policy, and write a report."""
        from suanwang.domain.scheduler import GridContext
        from suanwang.sim import POLICIES, load_grid, load_trace, run_simulation, with_placement_hints, write_report
        from suanwang.sim.quality import cost_bound_fen, with_bound_ratio
        from suanwang.sim.sizing import at_load

        if matrix:
            _matrix(quick, json_out)
            return
        if not 0 < load <= 10 or not 0 <= deadline_fraction <= 1 or limit < 1:
            err.print("[red]--load must be in (0, 10], --deadline-fraction in [0, 1], --limit at least 1[/red]")
            raise typer.Exit(2)

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
        ctx = GridContext(model)
        policies = policy or list(POLICIES)
        results = []
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} jobs"),
                   TimeElapsedColumn())
        with Progress(*columns, console=console) as bar:
            for name in policies:
                task = bar.add_task(name, total=len(jobs))

                def advance(done: int, _total: int, _sim_s: float, task: TaskID = task) -> None:
                    bar.update(task, completed=done)

                results.append(run_simulation(ctx, jobs, name, progress=advance))
                bar.update(task, completed=len(jobs))
            if len(jobs) <= bound_jobs:
                bar.add_task("HiGHS cost bound", total=None)
                with_bound_ratio(results, cost_bound_fen(ctx, jobs, max_jobs=bound_jobs))
            else:
                with_bound_ratio(results, None)
        report = write_report(results, out, title=f"suanwang simulation: {len(jobs)} jobs")
        summaries = [r.summary() for r in results]
        if json_out:
            typer.echo(json.dumps({"report": str(report), "policies": summaries}))
            return
        table = Table("policy", "cost ¥", "÷ bound", "carbon kg", "misses", "wait p50 s", "p99 s", "p99 dl s",
                      "p99 no-dl s", "cards", "GPU frag.", "cores")
        for s in summaries:
            ratio = s.get("cost_ratio_to_bound")
            table.add_row(str(s["policy"]), f"{int(s['cost_fen']) / 100:,.2f}",
                          "-" if ratio is None else f"{ratio:.3f}",
                          f"{s['carbon_kg']:,.1f}", str(s["deadline_misses"]), f"{s['wait_p50_s']:,.0f}",
                          f"{s['wait_p99_s']:,.0f}", f"{s['wait_p99_deadline_s']:,.0f}",
                          f"{s['wait_p99_no_deadline_s']:,.0f}", f"{float(s['util_cards_mean']):.1%}",
                          f"{float(s['gpu_fragmentation_mean']):.1%}", f"{float(s['util_cores_mean']):.1%}")
        console.print(table)
        if summaries and summaries[0]["refused"]:
            console.print(f"{summaries[0]['refused']} jobs refused at submit (no pool can run them or meet their "
                          "deadline); counted apart")
        console.print(f"report: {report}")


def _matrix(quick: bool, json_out: bool) -> None:
    """The evaluation matrix with a progress bar; per-cell losses and the count per half."""
    from suanwang.sim.matrix import plan, run_matrix

    total = len(plan(quick).cells)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} cells"),
               TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("matrix", total=total)
        result = run_matrix(quick, progress=lambda done, _n, name: bar.update(task, completed=done, description=name))
    if json_out:
        typer.echo(json.dumps(result))
        return
    table = Table("cell", "half", "policy", "misses", "p99 no-dl s", "p99 dl s", "÷ bound", "carbon kg", "lost")
    for c in result["cells"]:
        for name, row in c["policies"].items():
            ratio = row["cost_ratio_to_bound"]
            lost = ", ".join(c["losses"]) if name == "grid" else ""
            table.add_row(c["cell"], c["half"], name, str(row["deadline_misses"]),
                          f"{row['wait_p99_no_deadline_s']:,.0f}",
                          f"{row['wait_p99_deadline_s']:,.0f}", "-" if ratio is None else f"{ratio:.3f}",
                          f"{row['carbon_kg']:,.0f}", lost)
    console.print(table)
    console.print(f"matrix_losses {result['matrix_losses']} (tuning {result['matrix_losses_tuning']} of "
                  f"{result['cells_tuning']} cells, held out {result['matrix_losses_heldout']} of "
                  f"{result['cells_heldout']} cells)")
