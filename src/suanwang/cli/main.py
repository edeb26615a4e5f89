"""`suanwang`: run the platform (`up`, `serve`), a site agent (`agent`), and talk to the API."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from suanwang import __version__
from suanwang.cli import billing as billing_commands
from suanwang.cli import jobs as job_commands
from suanwang.cli import sim as sim_commands
from suanwang.cli.demo import demo as demo_command
from suanwang.cli.client import Client, console, default_data_dir, print_json

app = typer.Typer(help="suanwang (算网): an open computing power network.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
admin = typer.Typer(help="Operator commands: tenants and tokens.", no_args_is_help=True)
app.add_typer(admin, name="admin")
tokens = typer.Typer(help="Tokens: create, list, revoke, rotate; one-use agent enrolment.", no_args_is_help=True)
admin.add_typer(tokens, name="token")
job_commands.register(app)
sim_commands.register(app)
app.command("demo")(demo_command)
billing_commands.register(app)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="where state and tokens live (default ~/.suanwang)")]
DbUrl = Annotated[str | None, typer.Option("--database-url", envvar="SUANWANG_DATABASE_URL",
                                           help="SQLAlchemy URL; default: SQLite in the data directory")]


def _platform(data_dir: Path, database_url: str | None, lease_s: float, tick_s: float,  # type: ignore[no-untyped-def]
              engine_queue: float = 1.0):
    from suanwang.services.bootstrap import bootstrap
    from suanwang.services.platform import Platform, Settings
    from suanwang.store.db import Database, sqlite_url

    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(database_url or sqlite_url(data_dir / "suanwang.db"))
    db.migrate()
    bootstrap(db, data_dir)
    return Platform(db, Settings(lease_s=lease_s, site_timeout_s=max(2 * lease_s, 5.0), tick_s=tick_s,
                                    engine_queue=engine_queue))


def _server(platform, host: str, port: int, guard=None):  # type: ignore[no-untyped-def]
    import uvicorn

    from suanwang.api.app import create_app

    config = uvicorn.Config(create_app(platform, guard=guard), host=host, port=port, log_level="warning",
                            access_log=False)
    return uvicorn.Server(config)


@app.command()
def serve(
    data_dir: DataDir = None, database_url: DbUrl = None, host: str = "127.0.0.1", port: int = 8600,
    lease_s: float = 15.0, tick_s: float = 0.5,
    engine_queue: Annotated[float, typer.Option(min=1.0, help="Slurm and Ray pools may hold this multiple of "
                                                "their capacity, queued in the engine (1 = none)")] = 1.0,
    rate_per_s: Annotated[float, typer.Option(min=0.001, max=1e9, help="requests per second per token")] = 1000.0,
    rate_burst: Annotated[float, typer.Option(min=1.0, max=1e9, help="requests a token may send at once")] = 2000.0,
    max_body_bytes: Annotated[int, typer.Option(min=1, max=2**40, help="larger request bodies answer 413")] = 8 << 20,
) -> None:
    """Run the platform (API, scheduler, control loop) without an agent."""
    from suanwang.api.guard import GuardSettings

    guard = GuardSettings(rate_per_s=rate_per_s, burst=rate_burst, max_body_bytes=max_body_bytes)
    d = data_dir or default_data_dir()
    platform = _platform(d, database_url, lease_s, tick_s, engine_queue)
    (d / "url").write_text(f"http://{host}:{port}\n")
    console.print(f"suanwang platform on http://{host}:{port}  (operator token: {d / 'operator.token'})")
    _server(platform, host, port, guard).run()


@app.command()
def up(
    data_dir: DataDir = None, database_url: DbUrl = None, host: str = "127.0.0.1", port: int = 8600,
    lease_s: float = 15.0,
) -> None:
    """Start the platform and this machine's agent together; Ctrl-C stops both."""
    from suanwang.agent.executors.local import LocalExecutor
    from suanwang.agent.runner import Agent

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    d = data_dir or default_data_dir()
    platform = _platform(d, database_url, lease_s, 0.5)
    url = f"http://{host}:{port}"
    (d / "url").write_text(url + "\n")
    server = _server(platform, host, port)
    agent = Agent(url, (d / "agent.token").read_text().strip(), LocalExecutor(d / "agent"), d / "agent",
                  heartbeat_s=min(1.0, lease_s / 3))
    agent_thread = threading.Thread(target=agent.run_forever, name="suanwang-agent", daemon=True)
    console.print(f"[bold]suanwang[/bold] is up: {url}  (dashboard {url}/ , API docs {url}/docs)")
    console.print(f"operator token: {d / 'operator.token'}   consumer token: {d / 'consumer.token'}")
    console.print(f"try: suanwang submit --wait -- python -c 'print(6*7)'   (Ctrl-C stops)")
    agent_thread.start()
    try:
        server.run()
    finally:
        agent.stop()
        agent_thread.join(timeout=5)
        agent.close()
        console.print("stopped")


@app.command()
def agent(
    url: Annotated[str, typer.Option(envvar="SUANWANG_URL", help="platform URL")],
    token: Annotated[str | None, typer.Option(envvar="SUANWANG_AGENT_TOKEN", help="this site's agent token")] = None,
    token_file: Annotated[Path | None, typer.Option(help="read the agent token from this file (written 0600 "
                                                    "by --enrol-token)")] = None,
    enrol_token: Annotated[str | None, typer.Option(envvar="SUANWANG_ENROL_TOKEN", help="one-use enrolment "
                                                    "token: trade it for an agent token, kept in --token-file")] = None,
    workdir: Annotated[Path, typer.Option(help="agent state, task directories and logs")] = Path("./suanwang-agent"),
    config: Annotated[Path | None, typer.Option(help="site config file (engine, pools); default: local engine")] = None,
    heartbeat_s: float = 1.0,
    poll_s: float = 0.1,
    usage_interval_s: float = 10.0,
    max_tasks: Annotated[int, typer.Option(min=1, help="most tasks handed to the engine at once")] = 64,
) -> None:
    """Run a site agent: connect outbound to the platform, pull work and run it in this site's engine."""
    from suanwang.agent.runner import Agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = _agent_token(url, token, token_file, enrol_token)
    executor = _executor(config, workdir)
    runner = Agent(url, token, executor, workdir, heartbeat_s=heartbeat_s, poll_s=poll_s,
                   usage_interval_s=usage_interval_s, max_tasks=max_tasks)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        runner.close()


def _agent_token(url: str, token: str | None, token_file: Path | None, enrol_token: str | None) -> str:
    """The agent's token: --token, else --token-file; with --enrol-token and no file yet, enrol and write it."""
    from suanwang.cli.client import enrol_agent, read_secret, write_secret

    if token:
        return token
    if token_file is not None and token_file.exists():
        return read_secret(token_file)
    if enrol_token and token_file is not None:
        issued = enrol_agent(url, enrol_token)
        write_secret(token_file, issued)
        console.print(f"enrolled; agent token written to {token_file} (mode 0600)")
        return issued
    raise typer.BadParameter("give --token, an existing --token-file, or --enrol-token with --token-file")


def _executor(config: Path | None, workdir: Path):  # type: ignore[no-untyped-def]
    from suanwang.agent.executors.local import LocalExecutor

    if config is None:
        return LocalExecutor(workdir)
    from suanwang.agent.siteconfig import build_executor, load_site_config

    return build_executor(load_site_config(config), workdir=workdir)


@app.command()
def migrate(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Bring the database schema up to date (also done by `up` and `serve`)."""
    from suanwang.store.db import Database, sqlite_url

    d = data_dir or default_data_dir()
    d.mkdir(parents=True, exist_ok=True)
    Database(database_url or sqlite_url(d / "suanwang.db")).migrate()
    console.print("schema up to date")


@admin.command("tenant")
def tenant_create(name: str, kind: str = "consumer", url: str | None = None, token: str | None = None) -> None:
    """Create a tenant (consumer, provider or auditor)."""
    print_json(Client(url, token or _operator_token()).call("POST", "/tenants", json={"name": name, "kind": kind}))


@tokens.command("create")
def token_create(role: str, tenant_id: str, site: str | None = None, name: str = "",
                 lifetime_s: Annotated[float | None, typer.Option(help="expire after this many seconds")] = None,
                 url: str | None = None, token: str | None = None) -> None:
    """Issue a token (shown once)."""
    body = {"role": role, "tenant_id": tenant_id, "site": site, "name": name, "lifetime_s": lifetime_s}
    print_json(Client(url, token or _operator_token()).call("POST", "/tokens", json=body))


@tokens.command("list")
def token_list(tenant_id: str | None = None, url: str | None = None, token: str | None = None) -> None:
    """List tokens: ids, roles, scope, expiry, revocation (never a secret)."""
    params = {"tenant_id": tenant_id} if tenant_id else {}
    print_json(Client(url, token or _operator_token()).call("GET", "/tokens", params=params))


@tokens.command("revoke")
def token_revoke(token_id: str, url: str | None = None, token: str | None = None) -> None:
    """Revoke a token (refused everywhere within a second)."""
    print_json(Client(url, token or _operator_token()).call("POST", f"/tokens/{token_id}/revoke"))


@tokens.command("rotate")
def token_rotate(token_id: str, url: str | None = None, token: str | None = None) -> None:
    """Replace a token by a new one with the same role, tenant and site (shown once); the old one is revoked."""
    print_json(Client(url, token or _operator_token()).call("POST", f"/tokens/{token_id}/rotate"))


@tokens.command("enrol")
def token_enrol(site: str, lifetime_s: float = 3600.0, url: str | None = None, token: str | None = None) -> None:
    """A one-use enrolment token for a new agent of SITE (`suanwang agent --enrol-token T --token-file F`)."""
    print_json(Client(url, token or _operator_token()).call("POST", f"/sites/{site}/enrolments",
                                                            json={"lifetime_s": lifetime_s}))


@admin.command("permissions")
def permissions(markdown: Annotated[bool, typer.Option("--markdown", help="as docs/permissions.md")] = False) -> None:
    """Print the permission table: who may call each route."""
    from suanwang.api.permissions import TABLE, render_markdown

    if markdown:
        typer.echo(render_markdown(), nl=False)
        return
    for (method, path), rule in sorted(TABLE.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        who = "public" if rule.public else ",".join(sorted(r.value for r in rule.roles))
        typer.echo(f"{method:6} {path:45} {who}")


@admin.command("site")
def site_create(name: str, region: str = "", province: str = "", lat: float = 0.0, lon: float = 0.0,
                green_share: float = 0.0, url: str | None = None, token: str | None = None) -> None:
    """Register a site (then `admin token enrol NAME` for its agent)."""
    body = {"name": name, "region": region, "province": province, "lat": lat, "lon": lon, "green_share": green_share}
    print_json(Client(url, token or _operator_token()).call("POST", "/sites", json=body))


def _operator_token() -> str | None:
    path = default_data_dir() / "operator.token"
    return path.read_text().strip() if path.exists() else None


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)
