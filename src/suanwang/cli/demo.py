"""`suanwang demo`: a small computing power network on one machine, with the engines it has.

The platform and every site agent run as child processes, exactly as they would on separate
machines: the agents reach the platform only by HTTP, each with its own token and site config.
The local site always runs; a Slurm site (Qingyang, Gansu) joins when a Slurm cluster answers,
a Ray site (Wuhu, Anhui) when a Ray Jobs API answers.  Engines that are missing are named with
the reason, so a newcomer knows what to install.  Ctrl-C (or SIGTERM) stops every child by pid.

The site helpers here (``register_site``, ``write_site_config``, ``start_agent``) are also what
the engine benchmark and end-to-end tests use to put a real engine behind a real platform.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml
from rich.table import Table

from suanwang.cli.client import console, home_dir, remember_data_dir

DEFAULT_SLURM_CONF = "/var/tmp/suanwang-slurm/etc/slurm.conf"  # nosec B108  # read only: where setup.sh writes
DEFAULT_RAY_ADDRESS = "http://127.0.0.1:8365"
OPERATOR_TENANT = "t-operator"
SLURM_GPU_MODEL = "NVIDIA A100 SXM4 80GB"
RAY_DEVICE_MODEL = "Huawei Ascend 910B"


@dataclass(frozen=True)
class SiteSpec:
    """A site the demo runs: where it is, and the agent config that puts an engine behind it."""

    name: str
    engine: str
    region: str
    province: str
    lat: float
    lon: float
    config: dict[str, Any] = field(default_factory=dict)
    green_share: float = 0.0

    def site_body(self) -> dict[str, Any]:
        return {"name": self.name, "region": self.region, "province": self.province, "lat": self.lat,
                "lon": self.lon, "green_share": self.green_share}


def slurm_site(slurm_conf: str, name: str = "qingyang-hpc") -> SiteSpec:
    """Qingyang (庆阳), Gansu: a national hub's HPC site; partition hpc as class super, gpu as intelligent."""
    pools = [{"name": f"{name}-cpu", "resource_class": "super", "partition": "hpc", "cpu_model": "Hygon C86 7285"},
             {"name": f"{name}-gpu", "resource_class": "intelligent", "partition": "gpu",
              "device_model": SLURM_GPU_MODEL, "device_memory_gb": 80}]
    return SiteSpec(name, "slurm", "cn-northwest", "Gansu", 35.71, 107.64,
                    {"site": name, "engine": "slurm", "pools": pools, "slurm": {"conf": slurm_conf}}, green_share=0.6)


def ray_site(address: str, name: str = "wuhu-ai") -> SiteSpec:
    """Wuhu (芜湖), Anhui: an AI cluster of the Yangtze River Delta hub, behind Ray."""
    pools = [{"name": f"{name}-npu", "resource_class": "intelligent", "device_model": RAY_DEVICE_MODEL,
              "device_memory_gb": 32}]
    return SiteSpec(name, "ray", "cn-east", "Anhui", 31.33, 118.38,
                    {"site": name, "engine": "ray", "pools": pools, "ray": {"address": address}}, green_share=0.3)


# ------------------------------------------------------------------ which engines answer


def slurm_unavailable(slurm_conf: str) -> str:
    """Why this machine cannot run the Slurm site, or '' if it can."""
    if shutil.which("sbatch") is None:
        return "sbatch not found (Debian: bash scripts/slurm/setup.sh installs slurm-wlm and starts a cluster)"
    if not Path(slurm_conf).exists():
        return f"no slurm.conf at {slurm_conf} (set SLURM_CONF or --slurm-conf, or run scripts/slurm/setup.sh)"
    env = {**os.environ, "SLURM_CONF": slurm_conf}
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=env,
                              timeout=15)  # nosec B607  # Slurm's clients are wherever PATH has them
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol ping failed: {exc}"
    if "UP" not in ping.stdout:
        return f"slurmctld does not answer ({(ping.stdout + ping.stderr).strip()[:120]}); run scripts/slurm/setup.sh"
    return ""


def ray_unavailable(address: str) -> str:
    """Why this machine cannot run the Ray site, or '' if it can."""
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install 'suanwang[ray]', then scripts/ray/setup.sh)"
    try:
        httpx.get(f"{address.rstrip('/')}/api/version", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        return f"no Ray Jobs API at {address} ({type(exc).__name__}); run scripts/ray/setup.sh or pass --ray-address"
    return ""


# ------------------------------------------------------------------ sites and agents


def register_site(url: str, operator_token: str, spec: SiteSpec) -> str:
    """Create the site (kept if it exists) and issue its agent a token; returns the token."""
    headers = {"Authorization": f"Bearer {operator_token}"}
    with httpx.Client(base_url=url.rstrip("/") + "/api/v1", headers=headers, timeout=30) as c:
        resp = c.post("/sites", json=spec.site_body())
        if resp.status_code != 409:
            resp.raise_for_status()
        resp = c.post("/tokens", json={"role": "agent", "tenant_id": OPERATOR_TENANT, "site": spec.name,
                                       "name": f"{spec.name} agent"})
        resp.raise_for_status()
        return str(resp.json()["token"])


def write_site_config(directory: Path, spec: SiteSpec) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(spec.config, sort_keys=False))
    return path


def start_agent(url: str, token: str, workdir: Path, log: Path, config: Path | None = None,
                *extra: str) -> subprocess.Popen[bytes]:
    """``suanwang agent`` as a child process; the token travels in the environment, not on argv."""
    cmd = [sys.executable, "-m", "suanwang", "agent", "--url", url, "--workdir", str(workdir), *extra]
    if config is not None:
        cmd += ["--config", str(config)]
    env = {**os.environ, "SUANWANG_AGENT_TOKEN": token}
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def start_platform(data_dir: Path, port: int, lease_s: float) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "suanwang", "serve", "--data-dir", str(data_dir), "--port", str(port),
           "--lease-s", str(lease_s), "--tick-s", "0.2", "--engine-queue", "2", "--migrate"]
    env = {k: v for k, v in os.environ.items() if k != "SUANWANG_DATABASE_URL"}  # the demo's own SQLite
    log = data_dir / "logs" / "platform.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"platform exited ({proc.returncode}): {log.read_text()[-1500:]}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("platform did not answer within a minute")


def wait_online(url: str, operator_token: str, names: set[str], timeout_s: float = 60) -> dict[str, Any]:
    """Poll /sites until every named site is online (or the time is up); returns the sites by name."""
    headers = {"Authorization": f"Bearer {operator_token}"}
    deadline = time.monotonic() + timeout_s
    sites: dict[str, Any] = {}
    while time.monotonic() < deadline:
        sites = {s["name"]: s for s in httpx.get(f"{url}/api/v1/sites", headers=headers, timeout=10).json()}
        if all(sites.get(n, {}).get("online") for n in names):
            break
        time.sleep(0.2)
    return sites


def stop_children(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each child by pid (agents first, platform last), then SIGKILL what lingers."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ sample jobs


def sample_jobs(online: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """One job per online site, each asking for something only that site offers."""
    py = "import platform, os; print('hello from', platform.node(), 'pid', os.getpid())"
    jobs = [("local", {"name": "hello-local", "command": ["python3", "-c", py], "memory_gb": 0.25})]
    if "qingyang-hpc" in online:
        jobs.append(("qingyang-hpc", {"name": "hello-hpc", "command": ["python3", "-c", py], "resource_class": "super",
                                      "memory_gb": 0.25}))
    if "wuhu-ai" in online:
        jobs.append(("wuhu-ai", {"name": "hello-npu", "command": ["python3", "-c", py],
                                 "resource_class": "intelligent", "device_model": RAY_DEVICE_MODEL, "devices": 1,
                                 "memory_gb": 0.25}))
    return jobs


def run_samples(url: str, consumer_token: str, online: set[str], timeout_s: float = 120) -> None:
    headers = {"Authorization": f"Bearer {consumer_token}"}
    with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=30) as c:
        submitted = [(site, c.post("/jobs", json=body).json()) for site, body in sample_jobs(online)]
        deadline = time.monotonic() + timeout_s
        table = Table(title="sample jobs")
        for col in ("job", "name", "meant for", "ran at", "state", "output"):
            table.add_column(col)
        for site, job in submitted:
            while True:
                job = c.get(f"/jobs/{job['id']}").json()
                if job["state"] in {"succeeded", "failed", "cancelled", "lost"} or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            out = c.get(f"/jobs/{job['id']}/logs").text.strip().splitlines()
            table.add_row(job["id"], job["name"], site, job.get("site") or "-", job["state"], out[-1] if out else "")
    console.print(table)


# ------------------------------------------------------------------ the command


def _sites_table(specs: list[SiteSpec], sites: dict[str, Any], pools: list[dict[str, Any]]) -> Table:
    table = Table(title="sites")
    for col in ("site", "engine", "where", "pools", "online"):
        table.add_column(col)
    for spec in specs:
        mine = [f"{p['name']} ({p['resource_class']}, {p['cores']} cores"
                + (f", {p['devices']}x {p['device_model']}" if p.get("devices") else "") + ")"
                for p in pools if p.get("site") == spec.name]
        online = sites.get(spec.name, {}).get("online", False)
        table.add_row(spec.name, spec.engine, f"{spec.province or spec.region} ({spec.lat}, {spec.lon})",
                      "\n".join(mine), "[green]yes[/green]" if online else "[red]no[/red]")
    return table


def demo(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="demo state (default ~/.suanwang/demo)")] = None,
    port: int = 8610,
    slurm_conf: Annotated[str | None, typer.Option(envvar="SLURM_CONF", help="Slurm config of the cluster")] = None,
    ray_address: Annotated[str, typer.Option(envvar="SUANWANG_RAY_ADDRESS", help="Ray Jobs API")] = DEFAULT_RAY_ADDRESS,
    slurm: Annotated[bool, typer.Option(help="add the Slurm site when Slurm answers")] = True,
    ray: Annotated[bool, typer.Option(help="add the Ray site when Ray answers")] = True,
    samples: Annotated[bool, typer.Option(help="submit a sample job to every site")] = True,
    lease_s: float = 15.0,
) -> None:
    """Start the platform and a site per engine on this machine (local; Slurm, Ray when present)."""
    from suanwang.store.files import private_dir

    d = private_dir(data_dir or home_dir() / "demo")
    remember_data_dir(d)  # client commands (submit, jobs, usage) then find this platform and its tokens
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        procs.append(start_platform(d, port, lease_s))
        wait_healthy(url, procs[0], d / "logs" / "platform.log")
        console.print(f"[bold]suanwang demo[/bold]: platform on {url}  (data: {d})")
        specs, skipped = _choose_sites(slurm_conf or DEFAULT_SLURM_CONF, ray_address, slurm, ray)
        operator = (d / "operator.token").read_text().strip()
        local = SiteSpec("local", "local", "local", "", 0.0, 0.0)
        # Not root: as `up`, the local site's jobs share this user (with a warning), in a jobs root beside d.
        shared = () if os.geteuid() == 0 else ("--insecure-shared-user", "--jobs-root",
                                               str(d.parent / f"{d.name}-jobs"))
        if shared:
            console.print("[yellow]warning:[/yellow] not root: the local site's jobs run as this user, not isolated")
        procs.append(start_agent(url, (d / "agent.token").read_text().strip(), d / "agents" / "local",
                                 d / "logs" / "agent-local.log", None, *shared))
        for spec in specs:
            token = register_site(url, operator, spec)
            config = write_site_config(d / "sites", spec)
            procs.append(start_agent(url, token, d / "agents" / spec.name, d / "logs" / f"agent-{spec.name}.log",
                                     config, "--max-tasks", "256"))
        all_specs = [local, *specs]
        sites = wait_online(url, operator, {s.name for s in all_specs})
        pools = httpx.get(f"{url}/api/v1/pools", headers={"Authorization": f"Bearer {operator}"}, timeout=10).json()
        console.print(_sites_table(all_specs, sites, pools))
        for engine, reason in skipped:
            console.print(f"[yellow]skipped {engine}[/yellow]: {reason}")
        online = {n for n, s in sites.items() if s.get("online")}
        if samples:
            run_samples(url, (d / "consumer.token").read_text().strip(), online)
        console.print(f"consumer token: {d / 'consumer.token'}   try: SUANWANG_URL={url} suanwang submit --wait "
                      f"-- hostname    (Ctrl-C stops everything; logs in {d / 'logs'})")
        _watch(procs, d)
    except KeyboardInterrupt:
        pass
    finally:
        stop_children(procs)
        console.print("demo stopped")


def _choose_sites(
    slurm_conf: str, ray_address: str, slurm: bool, ray: bool
) -> tuple[list[SiteSpec], list[tuple[str, str]]]:
    """The engine sites to start, and (engine, reason) for each one skipped."""
    specs, skipped = [], []
    if not slurm:
        skipped.append(("slurm", "--no-slurm"))
    elif reason := slurm_unavailable(slurm_conf):
        skipped.append(("slurm", reason))
    else:
        specs.append(slurm_site(slurm_conf))
    if not ray:
        skipped.append(("ray", "--no-ray"))
    elif reason := ray_unavailable(ray_address):
        skipped.append(("ray", reason))
    else:
        specs.append(ray_site(ray_address))
    return specs, skipped


def _watch(procs: list[subprocess.Popen[bytes]], d: Path) -> None:
    """Wait for Ctrl-C; say so if a child dies meanwhile."""
    reported: set[int] = set()
    while True:
        for proc in procs:
            if proc.poll() is not None and proc.pid not in reported:
                reported.add(proc.pid)
                console.print(f"[red]child {proc.pid} exited ({proc.returncode})[/red]: see {d / 'logs'}")
        time.sleep(0.5)


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt
