"""`suanwang audit`: verify the audit and ledger hash chains; list the audit trail.

``verify`` reads the database itself by default (``--database-url`` or the data directory of a local
``up``): an auditor with read access need not trust the platform's answer, and a long chain shows a
progress bar.  ``--remote`` asks the platform instead (``GET /audit/verify``, operator or auditor token).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from suanwang.cli.client import Client, _read, console, default_data_dir, print_json
from suanwang.cli.jobs import Json, Token, Url

audit = typer.Typer(help="The audit trail and the hash chains over it and the ledger.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit, name="audit")


def _operator(url: str | None, token: str | None) -> Client:
    return Client(url, token or os.environ.get("SUANWANG_TOKEN") or _read(default_data_dir() / "operator.token"))


def _verify_local(database_url: str | None, data_dir: Path | None, quiet: bool) -> dict[str, Any]:
    from suanwang.services import chain
    from suanwang.store.db import Database, sqlite_url

    path = (data_dir or default_data_dir()) / "suanwang.db"
    if not database_url and not path.exists():
        raise typer.BadParameter(f"no database at {path}: give --database-url, --data-dir or --remote")
    db = Database(database_url or sqlite_url(path))
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, disable=quiet, transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(f"{name} chain", total=total)
                bar.update(tasks[name], completed=done)

            return chain.verify(db, progress=progress).as_json()
    finally:
        db.dispose()


def _show(report: dict[str, Any]) -> None:
    table = Table("chain", "ok", "checked", "head", "first broken link", "unsealed (late)")
    for c in report["chains"]:
        brk = c["first_break"]
        late = f"{c['unsealed']} ({c['unsealed_late']})"
        if c["unsealed_behind_ids"]:
            late += f"; behind the head: {c['unsealed_behind_ids']}"
        if c.get("orphan_postings"):
            late += f"; postings of no transfer: {c['orphan_postings']}"
        table.add_row(c["chain"], "yes" if c["ok"] else "[red]NO[/red]", str(c["checked"]),
                      f"{c['head']['seq']}: {c['head']['hash'][:16]}…", brk["problem"] if brk else "-", late)
    console.print(table)


@audit.command()
def verify(
    database_url: Annotated[str | None, typer.Option("--database-url", envvar="SUANWANG_DATABASE_URL",
                                                     help="read this database (default: the data directory's)")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="a local `up`'s data directory")] = None,
    remote: Annotated[bool, typer.Option("--remote", help="ask the platform (GET /audit/verify) instead")] = False,
    url: Url = None, token: Token = None, json: Json = False,
) -> None:
    """Recompute both hash chains; exit 1 when a link is broken or rows stay unsealed."""
    report = (_operator(url, token).call("GET", "/audit/verify") if remote
              else _verify_local(database_url, data_dir, quiet=json))
    print_json(report) if json else _show(report)
    if not report["ok"]:
        raise typer.Exit(1)


@audit.command("log")
def log_(limit: int = 50, before: int | None = None, url: Url = None, token: Token = None, json: Json = False) -> None:
    """The audit trail, newest first (operator or auditor token)."""
    params = {"limit": limit, **({"before": before} if before else {})}
    page = _operator(url, token).call("GET", "/audit", params=params)
    if json:
        print_json(page)
        return
    table = Table("id", "at", "actor", "action", "object", "sealed")
    for r in page["rows"]:
        table.add_row(str(r["id"]), f"{r['at']:.3f}", r["actor"], r["action"], r["object"],
                      str(r["seal"]["seq"]) if r["seal"] else "-")
    console.print(table)
    if page["next"]:
        console.print(f"more: --before {page['next']}")
