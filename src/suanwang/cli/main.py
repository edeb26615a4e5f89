"""`suanwang`: run the platform (`up`, `serve`), a site agent (`agent`), and talk to the API."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from suanwang import __version__
from suanwang.cli import audit as audit_commands
from suanwang.cli import billing as billing_commands
from suanwang.cli import catalog as catalog_commands
from suanwang.cli import jobs as job_commands
from suanwang.cli import market as market_commands
from suanwang.cli import runs as run_commands
from suanwang.cli import sim as sim_commands
from suanwang.cli.client import Client, console, default_data_dir, print_json, remember_data_dir
from suanwang.cli.demo import demo as demo_command

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
market_commands.register(app)
audit_commands.register(app)
run_commands.register(app)
catalog_commands.register(app)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="where state and tokens live (default ~/.suanwang)")]
DbUrl = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (SUANWANG_DATABASE_URL); "
                                           "default: SQLite in the data directory")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="settings file, TOML or YAML (SUANWANG_CONFIG)")]
LogFormat = Annotated[str | None, typer.Option(help="json, plain or auto (JSON unless stderr is a terminal)")]
LogLevel = Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR")]


def _settings(kind, **flags):  # type: ignore[no-untyped-def]
    """Settings from flags, environment, file and defaults; a bad one ends the command with its name."""
    from suanwang.settings import SettingsError

    try:
        return kind.load(**flags)
    except SettingsError as exc:
        typer.echo(f"suanwang: {exc}", err=True)
        raise typer.Exit(2) from None


def _platform(settings, *, migrate: bool):  # type: ignore[no-untyped-def]
    """Open the database, check (or bring) its schema to head, bootstrap, and build the platform."""
    from suanwang.services.bootstrap import bootstrap
    from suanwang.services.platform import Platform
    from suanwang.store.db import Database
    from suanwang.store.files import private_dir

    private_dir(settings.data_dir)  # tokens, the SQLite database and the local agent's state: this user only
    db = Database(settings.resolved_database_url())
    if migrate:
        db.migrate()
    else:
        problem = db.schema_problem()
        if problem:
            logging.getLogger("suanwang.platform").error("refusing to start: %s", problem)
            typer.echo(f"suanwang: refusing to start: {problem}", err=True)
            raise typer.Exit(3)
    bootstrap(db, settings.data_dir)
    return Platform(db, settings.loop())


def _map_background(settings):  # type: ignore[no-untyped-def]
    """The operator's approved GeoJSON, checked now: a bad file stops start-up with the reason."""
    from suanwang.web.geo import BadGeoJson, load

    if settings.map_geojson is None:
        return None
    try:
        return load(settings.map_geojson)
    except BadGeoJson as exc:
        typer.echo(f"suanwang: refusing to start: setting map_geojson: {exc}", err=True)
        raise typer.Exit(2) from None


def _server(platform, host: str, port: int, guard=None, map_geojson=None):  # type: ignore[no-untyped-def]
    import uvicorn

    from suanwang.api.app import create_app
    from suanwang.api.server import QuietServer

    # log_config=None: uvicorn's own lines go through our handler and format (observability.logs)
    config = uvicorn.Config(create_app(platform, guard=guard, map_geojson=map_geojson), host=host, port=port,
                            log_level="warning", access_log=False, log_config=None)
    return QuietServer(config)


@app.command()
def serve(
    config: ConfigFile = None, data_dir: DataDir = None, database_url: DbUrl = None,
    host: Annotated[str | None, typer.Option(help="listen address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default 8600)")] = None,
    lease_s: Annotated[float | None, typer.Option(help="an agent silent this long loses its jobs (default 15)")] = None,
    tick_s: Annotated[float | None, typer.Option(help="control-loop safety tick (default 5)")] = None,
    engine_queue: Annotated[float | None, typer.Option(
        help="Slurm and Ray pools may hold this multiple of their capacity, queued in the engine (default 1 = none)",
    )] = None,
    migrate: Annotated[bool | None, typer.Option("--migrate/--no-migrate", help="bring the schema to head first "
                                                 "(under the migration lock) instead of refusing to start")] = None,
    log_format: LogFormat = None, log_level: LogLevel = None,
    rate_per_s: Annotated[float, typer.Option(min=0.001, max=1e9, help="requests per second per token")] = 1000.0,
    rate_burst: Annotated[float, typer.Option(min=1.0, max=1e9, help="requests a token may send at once")] = 2000.0,
    max_body_bytes: Annotated[int, typer.Option(min=1, max=2**40, help="larger request bodies answer 413")] = 8 << 20,
) -> None:
    """Run the platform (API, scheduler, control loop) without an agent.  The schema must be at head."""
    from suanwang.api.guard import GuardSettings
    from suanwang.observability.logs import configure_logging
    from suanwang.settings import PlatformSettings

    settings = _settings(PlatformSettings, settings_file=config, data_dir=data_dir, database_url=database_url,
                         host=host, port=port, lease_s=lease_s, tick_s=tick_s, engine_queue=engine_queue,
                         migrate=migrate, log_format=log_format, log_level=log_level)
    configure_logging(settings.log_format, settings.log_level or "INFO")
    background = _map_background(settings)  # a bad map file stops start-up before anything else
    platform = _platform(settings, migrate=settings.migrate)
    url = f"http://{settings.host}:{settings.port}"
    (settings.data_dir / "url").write_text(url + "\n")
    token_file = str(settings.data_dir / "operator.token")
    log = logging.getLogger("suanwang.platform")
    log.info("suanwang platform on %s", url, extra={"operator_token_file": token_file})
    guard = GuardSettings(rate_per_s=rate_per_s, burst=rate_burst, max_body_bytes=max_body_bytes)
    _server(platform, settings.host, settings.port, guard, background).run()


JobsRoot = Annotated[Path | None, typer.Option(
    "--jobs-root", envvar="SUANWANG_JOBS_ROOT",
    help="where local jobs get their working directories (outside the data directory); default "
         "/var/lib/suanwang/jobs as root, else beside the data or work directory")]


@app.command()
def up(
    config: ConfigFile = None, data_dir: DataDir = None, database_url: DbUrl = None,
    host: Annotated[str | None, typer.Option(help="listen address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default 8600)")] = None,
    lease_s: Annotated[float | None, typer.Option(help="an agent silent this long loses its jobs (default 15)")] = None,
    log_format: LogFormat = None, log_level: LogLevel = None, jobs_root: JobsRoot = None,
) -> None:
    """Start the platform and this machine's agent together (migrating the database first); Ctrl-C stops both."""
    from suanwang.agent.executors.local import SHARED_USER_WARNING, LocalExecutor, default_jobs_root
    from suanwang.agent.runner import Agent
    from suanwang.observability.logs import configure_logging
    from suanwang.settings import PlatformSettings

    settings = _settings(PlatformSettings, settings_file=config, data_dir=data_dir, database_url=database_url,
                         host=host, port=port, lease_s=lease_s, log_format=log_format, log_level=log_level)
    configure_logging(settings.log_format, settings.log_level or "WARNING")
    d = settings.data_dir
    platform = _platform(settings, migrate=True)  # the single-process quick start migrates by itself
    url = f"http://{settings.host}:{settings.port}"
    (d / "url").write_text(url + "\n")
    server = _server(platform, settings.host, settings.port, map_geojson=_map_background(settings))
    # Not root: the quick start still works, with jobs under this user and a warning saying what that means.
    shared = os.geteuid() != 0
    if shared:
        console.print(f"[yellow]warning:[/yellow] {SHARED_USER_WARNING}")
    executor = _local_or_exit(lambda: LocalExecutor(d / "agent", jobs_root=jobs_root or default_jobs_root(d),
                                                    shared_user=shared, outside=(d,)))
    agent = Agent(url, (d / "agent.token").read_text().strip(), executor, d / "agent",
                  heartbeat_s=min(1.0, settings.lease_s / 3))
    agent_thread = threading.Thread(target=agent.run_forever, name="suanwang-agent", daemon=True)
    console.print(f"[bold]suanwang[/bold] is up: {url}  (dashboard {url}/ , API docs {url}/docs)")
    remember_data_dir(d)
    console.print(f"operator token: {d / 'operator.token'}   consumer token: {d / 'consumer.token'}")
    console.print(f"agent token: {d / 'agent.token'}")
    console.print("try: suanwang submit --wait -- python -c 'print(6*7)'   (Ctrl-C stops)")
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
    url: Annotated[str | None, typer.Option(help="platform URL (SUANWANG_URL)")] = None,
    token: Annotated[str | None, typer.Option(help="this site's agent token (SUANWANG_AGENT_TOKEN)")] = None,
    workdir: Annotated[Path | None, typer.Option(help="agent state, task directories and logs")] = None,
    token_file: Annotated[Path | None, typer.Option(help="read the agent token from this file (written 0600 "
                                                    "by --enrol-token)")] = None,
    enrol_token: Annotated[str | None, typer.Option(envvar="SUANWANG_ENROL_TOKEN", help="one-use enrolment "
                                                    "token: trade it for an agent token, kept in --token-file")] = None,
    config: Annotated[Path | None, typer.Option(help="site config file (engine, pools); default: local engine")] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="agent settings file, TOML or YAML "
                                                       "(SUANWANG_CONFIG)")] = None,
    heartbeat_s: float | None = None,
    poll_s: float | None = None,
    usage_interval_s: float | None = None,
    max_tasks: Annotated[int | None, typer.Option(help="most tasks handed to the engine at once (default 64)")] = None,
    log_format: LogFormat = None, log_level: LogLevel = None,
    jobs_root: JobsRoot = None,
    insecure_shared_user: Annotated[bool, typer.Option(
        "--insecure-shared-user", help="not root: run local jobs as this agent's own user (NOT isolated: "
        "jobs can read the agent's files)")] = False,
    datasets_root: Annotated[Path | None, typer.Option(help="serve and receive staged datasets here "
                                                       "(docs/workflows.md); off when not given")] = None,
    transfer_listen: Annotated[str, typer.Option(help="HOST:PORT the transfer server listens on")] = "127.0.0.1:0",
) -> None:
    """Run a site agent: connect outbound to the platform, pull work and run it in this site's engine."""
    from suanwang.agent.runner import Agent
    from suanwang.observability.logs import configure_logging
    from suanwang.settings import AgentSettings
    from suanwang.store.files import private_dir

    if token is None and (token_file is not None or enrol_token):
        token = _agent_token(url or os.environ.get("SUANWANG_URL", ""), None, token_file, enrol_token)
    s = _settings(AgentSettings, settings_file=settings_file, url=url, agent_token=token, workdir=workdir,
                  site_config=config, heartbeat_s=heartbeat_s, poll_s=poll_s, usage_interval_s=usage_interval_s,
                  max_tasks=max_tasks, log_format=log_format, log_level=log_level)
    configure_logging(s.log_format, s.log_level or "INFO")
    if any(a == "--token" or a.startswith("--token=") for a in sys.argv):
        logging.getLogger("suanwang.agent").warning(
            "the agent token is on the command line, where every local user and job can read it (ps, "
            "/proc/*/cmdline); pass it in SUANWANG_AGENT_TOKEN instead")
    private_dir(s.workdir)
    executor = _local_or_exit(lambda: _executor(s.site_config, s.workdir, jobs_root, insecure_shared_user))
    runner = Agent(s.url, s.agent_token, executor, s.workdir, heartbeat_s=s.heartbeat_s, poll_s=s.poll_s,
                   usage_interval_s=s.usage_interval_s, max_tasks=s.max_tasks, datasets_root=datasets_root)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    transfers = _transfer_worker(s.url, s.agent_token, datasets_root, transfer_listen) if datasets_root else None
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        runner.close()
        if transfers is not None:
            transfers.stop()


def _transfer_worker(url: str, token: str, root: Path, listen: str):  # type: ignore[no-untyped-def]
    """Staged transfers beside the job loop, on their own thread and port (suanwang.agent.transfer_worker)."""
    import httpx

    from suanwang.agent.transfer_worker import TransferWorker

    host, _, port = listen.rpartition(":")
    client = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=30.0)
    worker = TransferWorker(client, root, host=host or "127.0.0.1", port=int(port or 0))
    worker.start()
    return worker


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


def _executor(config: Path | None, workdir: Path, jobs_root: Path | None, shared: bool):  # type: ignore[no-untyped-def]
    from suanwang.agent.executors.local import LocalExecutor

    if config is None:
        return LocalExecutor(workdir, jobs_root=jobs_root, shared_user=shared)
    from suanwang.agent.siteconfig import build_executor, load_site_config

    return build_executor(load_site_config(config), workdir=workdir, shared_user=shared, jobs_root=jobs_root)


def _local_or_exit(build):  # type: ignore[no-untyped-def]
    """Build the executor; a refusal (no isolation possible, a bad site config) is one line and exit 2."""
    from suanwang.errors import SuanwangError

    try:
        return build()
    except SuanwangError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def migrate(config: ConfigFile = None, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Bring the database schema to head, under a lock so that replicas starting together never race.

    `serve` refuses a database that is not at head (unless `--migrate`); `up` migrates by itself.
    """
    from suanwang.settings import PlatformSettings
    from suanwang.store.db import Database
    from suanwang.store.files import private_dir

    settings = _settings(PlatformSettings, settings_file=config, data_dir=data_dir, database_url=database_url)
    private_dir(settings.data_dir)
    db = Database(settings.resolved_database_url())
    try:
        db.migrate()
    finally:
        db.dispose()
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
