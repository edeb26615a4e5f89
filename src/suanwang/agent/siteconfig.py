"""The per-site agent config file: which engine runs the work and how its capacity is offered.

An operator writes one file (YAML, or TOML if the name ends in ``.toml``) per site agent.
It is validated up front so a typo fails at start with the field named, not at the first job::

    site: qingyang
    engine: slurm                      # local | slurm | ray
    pools:
      - name: qy-hpc                   # the pool name the platform knows
        resource_class: super          # general | intelligent | super | quantum
        partition: hpc                 # slurm: the partition behind the pool
        cpu_model: Hygon C86 7285
      - name: qy-gpu
        resource_class: intelligent
        partition: gpu
        device_model: A100-80G         # overrides the gres type Slurm reports
        device_memory_gb: 80
    slurm:                             # all optional
      conf: /var/tmp/suanwang-slurm/etc/slurm.conf   # SLURM_CONF for the clients
      log_dir: /shared/suanwang/logs   # job output; compute nodes and agent must both see it
                                       # (default: <agent workdir>/slurm-logs)
      time_limit_factor: 2.0           # optional: --time = expected duration x 2

For Ray, ``ray: {address: http://head:8265}`` and pools with an optional ``node_resource``
(a custom resource that marks the pool's nodes).  For the local engine, each pool gives its
``cores``, ``memory_gb`` and ``devices``; with no pools the agent detects its machine.  Its
``local`` section may set ``jobs_root``, ``uid_range: [first, last]`` (the tenants' uids),
``cgroup_root``, ``pids_max`` and ``insecure_shared_user`` (see the local executor).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from suanwang.agent.executors.base import Executor, PoolInfo
from suanwang.domain.resources import ResourceClass
from suanwang.errors import InvalidSpec

NonNegative = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolConfig(_Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    resource_class: ResourceClass = ResourceClass.GENERAL
    device_model: str = ""
    device_memory_gb: NonNegative = 0.0
    cpu_model: str = ""
    # slurm
    partition: str | None = None
    gres_type: str = ""
    # ray
    node_resource: str = ""
    # local: the capacity the agent offers on its own machine
    cores: Annotated[int, Field(ge=0)] = 0
    memory_gb: NonNegative = 0.0
    devices: Annotated[int, Field(ge=0)] = 0
    # quantum: which of the provider's backends serves the pool (devices: circuits run at once)
    backend: str = ""
    # shared cards: {mode: none | time-slicing | mps | mig, min_share, shards (Slurm), profiles (MIG)}
    sharing: dict[str, Any] | None = None

    @field_validator("sharing")
    @classmethod
    def _sharing(cls, raw: dict[str, Any] | None) -> dict[str, Any] | None:
        """Checked with the platform's own rule (domain.packing.Sharing), so a bad mode fails at start."""
        if not raw:
            return None
        from suanwang.domain.packing import Sharing

        try:
            sharing = Sharing.from_json(raw)
        except InvalidSpec as exc:
            raise ValueError(str(exc)) from None
        return sharing.to_json() if sharing.shares else None

    @field_validator("device_model")
    @classmethod
    def _known_device(cls, model: str) -> str:
        """A model the device catalogue does not know could not be rated: refuse it at start."""
        if model and _device_catalog() is not None and _device_catalog().find(model) is None:
            raise ValueError(f"unknown device model {model!r} (see suanwang/data/devices.csv)")
        return model


def _device_catalog() -> Any:
    try:
        from suanwang.domain.units import load_catalog
    except ImportError:  # the catalogue ships with the platform's domain package
        return None
    return load_catalog()


class SlurmConfig(_Strict):
    log_dir: str | None = None  # default: <agent workdir>/slurm-logs (then it must be on a shared FS)
    conf: str | None = None
    bin_dir: str | None = None
    time_limit_factor: Annotated[float, Field(gt=0)] | None = None
    sbatch_args: tuple[str, ...] = ()
    pass_env: tuple[str, ...] = ()


class RayConfig(_Strict):
    address: Annotated[str, Field(pattern=r"^https?://")]
    python: str = "python3"
    enforce_memory: bool = True


class LocalConfig(_Strict):
    workdir: str = ""
    jobs_root: str = ""  # jobs' working directories; default /var/lib/suanwang/jobs (root), else beside workdir
    insecure_shared_user: bool = False  # a non-root agent may run jobs as its own user (not isolated)
    uid_range: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = None  # tenants' uids
    cgroup_root: str = ""  # a writable cgroup v2 directory; default <cgroup2 mount>/suanwang
    pids_max: Annotated[int, Field(ge=1)] = 4096  # per job, where cgroups are enforced


class QuantumConfig(_Strict):
    provider: str = "aer"  # Qiskit Aer's simulator, or a vendor's "package.module:Class"
    options: dict[str, Any] = {}  # keyword arguments for the provider (aer: name, qubits, method)


class SiteConfig(_Strict):
    site: str = ""
    engine: Literal["local", "slurm", "ray", "quantum"]
    quantum: QuantumConfig = QuantumConfig()
    pools: list[PoolConfig] = []
    slurm: SlurmConfig = SlurmConfig()
    ray: RayConfig | None = None
    local: LocalConfig = LocalConfig()

    @model_validator(mode="after")
    def _engine_needs(self) -> SiteConfig:
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pools: pool names must be unique, got {names}")
        if self.engine != "local" and not self.pools:
            raise ValueError(f"pools: a {self.engine} site needs at least one pool")
        if self.engine == "slurm":
            missing = [f"pools.{i}.partition" for i, p in enumerate(self.pools) if not p.partition]
            if missing:
                raise ValueError(f"{', '.join(missing)}: a Slurm pool needs the partition behind it")
        if self.engine == "quantum":
            bad = [f"pools.{i}" for i, p in enumerate(self.pools)
                   if p.resource_class is not ResourceClass.QUANTUM or not p.backend or p.devices < 1]
            if bad:
                raise ValueError(f"{', '.join(bad)}: a quantum pool has resource_class quantum, a backend and "
                                 "devices >= 1 (circuits at once)")
        if self.engine == "ray" and self.ray is None:
            raise ValueError("ray: section required when engine is ray (address at least)")
        if self.engine == "local":
            empty = [f"pools.{i}.cores" for i, p in enumerate(self.pools) if p.cores < 1]
            if empty:
                raise ValueError(f"{', '.join(empty)}: a local pool needs at least one core")
        return self


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def parse_site_config(data: Any, source: str = "site config") -> SiteConfig:
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidSpec(f"{source}: {_describe(exc)}", errors=exc.errors(include_url=False)) from exc


def load_site_config(path: str | Path) -> SiteConfig:
    """Read and validate a site config file (``.toml`` as TOML, anything else as YAML)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidSpec(f"site config {path}: cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise InvalidSpec(f"site config {path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from exc
    return parse_site_config(data, f"site config {path}")


def local_pools(cfg: SiteConfig) -> list[PoolInfo]:
    """The local engine's pools as PoolInfo (capacity straight from the file)."""
    return [
        PoolInfo(name=p.name, resource_class=p.resource_class.value, cores=p.cores, memory_gb=p.memory_gb,
                 devices=p.devices, device_model=p.device_model, device_memory_gb=p.device_memory_gb,
                 cpu_model=p.cpu_model, sharing=p.sharing)
        for p in cfg.pools
    ]


def build_executor(cfg: SiteConfig, workdir: str | Path | None = None, *, shared_user: bool = False,
                   jobs_root: str | Path | None = None) -> Executor:
    """The executor the config describes (engines are imported only when chosen).

    ``workdir`` is the agent's state directory: the local engine's task directories, and
    the default Slurm ``log_dir`` (``<workdir>/slurm-logs``).
    """
    if cfg.engine == "slurm":
        from suanwang.agent.executors.slurm import PartitionPool, SlurmExecutor

        mapping = [
            PartitionPool(partition=p.partition or "", pool=p.name, resource_class=p.resource_class.value,
                          device_model=p.device_model, device_memory_gb=p.device_memory_gb,
                          cpu_model=p.cpu_model, gres_type=p.gres_type, shards=int((p.sharing or {}).get("shards", 0)),
                          sharing=p.sharing)
            for p in cfg.pools
        ]
        s = cfg.slurm
        log_dir = s.log_dir or (Path(workdir) / "slurm-logs" if workdir is not None else None)
        if log_dir is None:
            raise InvalidSpec("slurm.log_dir: required when the agent has no workdir", field="slurm.log_dir")
        return SlurmExecutor(mapping, log_dir=log_dir, slurm_conf=s.conf, bin_dir=s.bin_dir,
                             time_limit_factor=s.time_limit_factor, sbatch_args=s.sbatch_args, pass_env=s.pass_env)
    if cfg.engine == "quantum":
        from suanwang.agent.executors.quantum import QuantumExecutor, QuantumPool, load_provider

        provider = load_provider(cfg.quantum.provider, cfg.quantum.options)
        return QuantumExecutor(provider, [QuantumPool(p.name, p.backend, p.devices) for p in cfg.pools])
    if cfg.engine == "ray":
        from suanwang.agent.executors.ray import RayExecutor, RayPool

        assert cfg.ray is not None
        pools = [
            RayPool(pool=p.name, resource_class=p.resource_class.value, node_resource=p.node_resource,
                    device_model=p.device_model, device_memory_gb=p.device_memory_gb, cpu_model=p.cpu_model)
            for p in cfg.pools
        ]
        return RayExecutor(pools, address=cfg.ray.address, python=cfg.ray.python,
                           enforce_memory=cfg.ray.enforce_memory)
    return _build_local(cfg, workdir, shared_user=shared_user, jobs_root=jobs_root)


def _build_local(cfg: SiteConfig, workdir: str | Path | None, *, shared_user: bool = False,
                 jobs_root: str | Path | None = None) -> Executor:
    """Local engine: pools from the file, or detected from this machine when the file lists none."""
    from suanwang.agent.executors.local import LocalExecutor

    root = cfg.local.workdir or workdir
    if not root:
        raise InvalidSpec("local.workdir: required when the agent has no workdir", field="local.workdir")
    loc = cfg.local
    jobs = jobs_root or loc.jobs_root
    return LocalExecutor(Path(root), pools=local_pools(cfg) or None, jobs_root=Path(jobs) if jobs else None,
                         shared_user=shared_user or loc.insecure_shared_user, uid_range=loc.uid_range,
                         cgroup_root=Path(loc.cgroup_root) if loc.cgroup_root else None, pids_max=loc.pids_max)
