"""Workflow and dataset commands: ``run workflow.yaml [--wait]``, ``run show ID``, ``run cancel ID``, ``runs``,
``datasets``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from suanwang.cli.client import Client, console, err, print_json
from suanwang.domain.money import format_yuan

Url = Annotated[str | None, typer.Option("--url", help="platform URL (or SUANWANG_URL)")]
Token = Annotated[str | None, typer.Option("--token", help="bearer token (or SUANWANG_TOKEN)")]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
DONE = {"succeeded", "failed", "cancelled"}


def _steps_table(run: Mapping[str, Any]) -> Table:
    table = Table("step", "state", "site", "job", "attempts", "compute ¥", "transfer ¥", "storage ¥",
                  "carbon (kg)",
                  "reason",
                  title=f"{run['id']} {run['name']}: {run['state']}  cost ¥{format_yuan(int(run['cost_fen']))}, "
                        f"carbon {run['carbon_kg']:.3f} kg")
    for s in run["steps"]:
        table.add_row(s["name"], s["state"], s["site"] or "-", s["job_id"] or "-", str(s["attempts"]),
                      format_yuan(int(s["compute_fen"])), format_yuan(int(s.get("transfer_fen", 0))),
                      format_yuan(int(s.get("storage_fen", 0))), f"{s['carbon_kg']:.3f}",
                      (s["reason"] or "")[:60])
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        what: Annotated[list[str], typer.Argument(help="workflow.yaml | show ID | cancel ID")],
        wait: Annotated[bool, typer.Option("--wait", help="follow the run until it ends")] = False,
        url: Url = None, token: Token = None, json: Json = False,
    ) -> None:
        """Submit a workflow (YAML: name, steps: [{name, job, inputs, output, retries, after}]), or show/cancel one."""
        c = Client(url, token)
        if what[0] in ("show", "cancel") and len(what) == 2:
            out = c.cancel_run(what[1]) if what[0] == "cancel" else c.run_status(what[1])
        elif len(what) == 1:
            try:
                spec = yaml.safe_load(Path(what[0]).read_text())
            except (OSError, yaml.YAMLError) as exc:
                err.print(f"[red]cannot read {what[0]}: {exc}[/red]")
                raise typer.Exit(2) from exc
            if not isinstance(spec, dict):
                err.print(f"[red]{what[0]} is not a workflow (a mapping with name and steps)[/red]")
                raise typer.Exit(2)
            out = c.run(spec)
            if wait:
                with console.status(f"{out['id']}: {out['state']}") as status:
                    while out["state"] not in DONE:
                        time.sleep(0.5)
                        out = c.run_status(out["id"])
                        done = sum(s["state"] == "succeeded" for s in out["steps"])
                        status.update(f"{out['id']}: {out['state']} ({done}/{len(out['steps'])} steps)")
        else:
            err.print("[red]usage: suanwang run workflow.yaml | run show ID | run cancel ID[/red]")
            raise typer.Exit(2)
        print_json(out) if json else console.print(_steps_table(out))
        if wait and out["state"] != "succeeded":
            raise typer.Exit(1)

    @app.command()
    def runs(limit: int = 50, url: Url = None, token: Token = None, json: Json = False) -> None:
        """List workflow runs, newest first."""
        rows = Client(url, token).runs(limit=limit)
        if json:
            return print_json(rows)
        table = Table("id", "name", "state", "created")
        for r in rows:
            table.add_row(r["id"], r["name"], r["state"], time.strftime("%Y-%m-%d %H:%M:%S",
                                                                          time.gmtime(r["created_at"])))
        console.print(table)
        return None

    @app.command()
    def datasets(name: str | None = None, url: Url = None, token: Token = None, json: Json = False) -> None:
        """List the datasets you may read, with their replicas."""
        rows = Client(url, token).datasets(name=name or None)
        if json:
            return print_json(rows)
        table = Table("id", "name", "version", "bytes", "region", "replicas", "sha256")
        for d in rows:
            table.add_row(d["id"], d["name"], str(d["version"]), str(d["size_bytes"]), d["region"] or "-",
                          ", ".join(f"{r['site']}" for r in d["replicas"]) or "-", d["sha256"][:12])
        console.print(table)
        return None
