"""A fraction of a card reaches the engine: the local executor pins the placed card (with its MPS share), the Slurm
executor asks for GRES shards.  No GPU exists here: the pools come from the stand-in `nvidia-smi` (a mock, as in
test_sysinfo), and the job only prints the environment it was given."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from suanwang.agent.executors.base import Task
from suanwang.agent.executors.slurm import PartitionPool, SlurmExecutor
from suanwang.agent.sysinfo import detect_local_pools
from tests.agent.conftest import MakeExecutor, wait_final

PRINT_ENV = ("python3", "-c", "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'), "
             "os.environ.get('CUDA_MPS_ACTIVE_THREAD_PERCENTAGE'))")


@pytest.mark.parametrize(("mode", "want"), [("mps", b"1 25"), ("time-slicing", b"1 None")])
def test_local_executor_pins_the_card_and_the_mps_share(tmp_path: Path, make: MakeExecutor, mode: str, want: bytes,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf 'NVIDIA H800, 81559\\nNVIDIA H800, 81559\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    pools = [dataclasses.replace(p, sharing={"mode": mode}) if p.name == "gpu" else p for p in detect_local_pools()]
    ex = make(tmp_path / "agent", pools)
    frac = Task(job_id="f1", attempt=1, command=PRINT_ENV, pool="gpu", devices=1, device_share=250,
                device_memory_gb=8.0, card=1, tenant="t-alice")
    h = ex.start(frac)
    wait_final(ex, h)
    assert want in ex.read_log(h, 0)
    whole = dataclasses.replace(frac, job_id="w1", device_share=0, card=-1)
    h = ex.start(whole)
    wait_final(ex, h)
    assert b"None None" in ex.read_log(h, 0)  # whole cards are not pinned by the platform (docs say so)


def test_slurm_asks_for_shards_where_the_partition_has_them(tmp_path: Path) -> None:
    mapping = [PartitionPool("gpu", "gpu", "intelligent", "A100", 80.0, shards=8, sharing={"mode": "time-slicing"}),
               PartitionPool("gpu2", "noshards", "intelligent", "A100", 80.0)]
    ex = SlurmExecutor(mapping, log_dir=tmp_path)
    frac = Task(job_id="f1", attempt=1, command=("true",), pool="gpu", devices=1, device_share=250)
    assert "--gres=shard:2" in ex.sbatch_argv(frac)
    assert "--gres=shard:1" in ex.sbatch_argv(dataclasses.replace(frac, device_share=10))
    assert "--gres=gpu:2" in ex.sbatch_argv(dataclasses.replace(frac, devices=2, device_share=0))
    assert "--gres=gpu:1" in ex.sbatch_argv(dataclasses.replace(frac, pool="noshards"))  # holds its whole card


def test_the_site_file_declares_how_a_pool_shares_its_cards() -> None:
    from suanwang.agent.siteconfig import local_pools, parse_site_config
    from suanwang.errors import InvalidSpec

    base = {"site": "edge", "engine": "local",
            "pools": [{"name": "gpu", "resource_class": "intelligent", "device_model": "A100", "device_memory_gb": 40,
                       "cores": 8, "memory_gb": 64, "devices": 2, "sharing": {"mode": "mps", "min_share": 100}}]}
    [gpu] = local_pools(parse_site_config(base, "test"))
    assert gpu.sharing is not None and gpu.sharing["mode"] == "mps" and gpu.sharing["min_share"] == 100
    base["pools"][0]["sharing"] = {"mode": "sliced"}
    with pytest.raises(InvalidSpec, match="sharing"):
        parse_site_config(base, "test")
