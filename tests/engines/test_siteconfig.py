"""Site config files: valid ones build the right executor, bad ones fail naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanwang.agent.executors.ray import RayExecutor
from suanwang.agent.executors.slurm import SlurmExecutor
from suanwang.agent.siteconfig import build_executor, load_site_config, local_pools, parse_site_config
from suanwang.errors import InvalidSpec

SLURM_YAML = """
site: qingyang
engine: slurm
pools:
  - name: qy-hpc
    resource_class: super
    partition: hpc
    cpu_model: Hygon C86 7285
  - name: qy-gpu
    resource_class: intelligent
    partition: gpu
    device_model: A100 SXM4 80GB
    device_memory_gb: 80
    gres_type: a100
slurm:
  conf: /etc/slurm/slurm.conf
  log_dir: /shared/logs
  time_limit_factor: 2
"""

RAY_TOML = """
engine = "ray"
[[pools]]
name = "wh-ray"
resource_class = "intelligent"
node_resource = "wuhu"
[ray]
address = "http://127.0.0.1:8265"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_slurm_file_builds_a_slurm_executor_with_the_partition_mapping(tmp_path: Path) -> None:
    ex = build_executor(load_site_config(write(tmp_path, "site.yaml", SLURM_YAML)))
    assert isinstance(ex, SlurmExecutor) and ex.engine == "slurm"
    assert [(p.partition, p.pool, p.resource_class) for p in ex.pools] == [
        ("hpc", "qy-hpc", "super"), ("gpu", "qy-gpu", "intelligent")]
    assert ex.pools[1].device_model == "A100 SXM4 80GB" and ex.pools[1].gres_type == "a100"
    assert ex.slurm_conf == "/etc/slurm/slurm.conf" and ex.time_limit_factor == 2


def test_a_toml_file_builds_a_ray_executor(tmp_path: Path) -> None:
    ex = build_executor(load_site_config(write(tmp_path, "site.toml", RAY_TOML)))
    assert isinstance(ex, RayExecutor) and ex.address == "http://127.0.0.1:8265"
    assert ex.pools[0].node_resource == "wuhu" and ex.pools[0].resource_class == "intelligent"


def test_the_example_files_next_to_the_setup_scripts_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "scripts"
    assert load_site_config(root / "slurm" / "site.yaml").engine == "slurm"
    assert load_site_config(root / "ray" / "site.yaml").engine == "ray"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(engine="kubernetes"), "engine"),
        (lambda d: d["pools"][1].pop("partition"), "pools.1.partition"),
        (lambda d: d["pools"][0].update(cores=-2), "pools.0.cores"),
        (lambda d: d["pools"][0].update(resource_class="gpu"), "pools.0.resource_class"),
        (lambda d: d["pools"][0].update(parition="hpc"), "pools.0.parition"),
        (lambda d: d["slurm"].update(log_dir=3), "slurm.log_dir"),
        (lambda d: d["slurm"].update(time_limit_factor=0), "slurm.time_limit_factor"),
        (lambda d: d.update(pools=[]), "pools"),
        (lambda d: d["pools"][1].update(name="qy-hpc"), "pools"),
    ],
)
def test_bad_configs_fail_naming_the_field(change, field: str) -> None:
    import yaml

    data = yaml.safe_load(SLURM_YAML)
    change(data)
    with pytest.raises(InvalidSpec) as err:
        parse_site_config(data)
    assert field in str(err.value)


def test_slurm_logs_default_to_the_agents_workdir(tmp_path: Path) -> None:
    cfg = parse_site_config({"engine": "slurm", "pools": [{"name": "p", "partition": "hpc"}]})
    ex = build_executor(cfg, workdir=tmp_path)
    assert isinstance(ex, SlurmExecutor) and ex.log_dir == tmp_path / "slurm-logs"
    with pytest.raises(InvalidSpec, match=r"slurm\.log_dir"):
        build_executor(cfg)


def test_device_models_must_be_in_the_catalogue() -> None:
    pytest.importorskip("suanwang.domain.units", reason="the device catalogue is merged from main")
    with pytest.raises(InvalidSpec, match=r"pools\.0\.device_model"):
        parse_site_config({"engine": "ray", "ray": {"address": "http://h:1"},
                           "pools": [{"name": "p", "device_model": "Quantum Toaster 9000"}]})


def test_ray_needs_an_http_address() -> None:
    with pytest.raises(InvalidSpec, match=r"ray\.address"):
        parse_site_config({"engine": "ray", "pools": [{"name": "p"}], "ray": {"address": "127.0.0.1:8265"}})
    with pytest.raises(InvalidSpec, match="ray: section required"):
        parse_site_config({"engine": "ray", "pools": [{"name": "p"}]})


def test_local_pools_take_their_capacity_from_the_file() -> None:
    edge = {"name": "edge", "cores": 4, "memory_gb": 8, "devices": 1, "resource_class": "intelligent",
            "device_model": "NVIDIA A10"}
    cfg = parse_site_config({"engine": "local", "pools": [edge]})
    (pool,) = local_pools(cfg)
    assert (pool.name, pool.cores, pool.memory_gb, pool.devices, pool.resource_class) == (
        "edge", 4, 8.0, 1, "intelligent")
    with pytest.raises(InvalidSpec, match=r"pools\.0\.cores"):
        parse_site_config({"engine": "local", "pools": [{"name": "edge"}]})
    assert parse_site_config({"engine": "local"}).pools == []  # the agent detects its machine
    with pytest.raises(InvalidSpec, match="pools: a ray site needs at least one pool"):
        parse_site_config({"engine": "ray", "ray": {"address": "http://h:8265"}})


def test_unreadable_or_malformed_files_are_invalid_specs(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="cannot read"):
        load_site_config(tmp_path / "absent.yaml")
    with pytest.raises(InvalidSpec, match="not valid"):
        load_site_config(write(tmp_path, "bad.yaml", "engine: [slurm\n"))
    with pytest.raises(InvalidSpec, match="not valid toml"):
        load_site_config(write(tmp_path, "bad.toml", "engine = \n"))


def test_a_local_file_builds_the_local_executor_with_its_pools(tmp_path: Path) -> None:
    pytest.importorskip("suanwang.agent.executors.local", reason="the local executor is merged from main")
    cfg = parse_site_config({"engine": "local", "pools": [{"name": "edge", "cores": 2, "memory_gb": 4}]})
    ex = build_executor(cfg, workdir=tmp_path)
    assert ex.engine == "local" and [p.name for p in ex.detect_pools()] == ["edge"]
