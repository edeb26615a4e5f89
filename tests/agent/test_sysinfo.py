"""Detecting this machine's capacity.  No GPU exists here, so a stand-in `nvidia-smi` script (a mock,
printing what the real one prints for two H800 cards) checks the GPU path; the CPU path is real."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from suanwang.agent.sysinfo import detect_local_pools


def test_cpu_pool_matches_this_machine() -> None:
    [cpu, *_] = detect_local_pools()
    assert cpu.resource_class == "general"
    assert cpu.cores == psutil.cpu_count(logical=True)
    assert abs(cpu.memory_gb - psutil.virtual_memory().total / 2**30) < 0.2


def test_gpus_reported_by_nvidia_smi_become_an_intelligent_pool(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf 'NVIDIA H800, 81559\\nNVIDIA H800, 81559\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    pools = {p.name: p for p in detect_local_pools()}
    gpu = pools["gpu"]
    assert (gpu.resource_class, gpu.devices, gpu.device_model) == ("intelligent", 2, "NVIDIA H800 SXM5")
    assert 79 < gpu.device_memory_gb < 80


def test_a_failing_nvidia_smi_means_no_gpu_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2; exit 9\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert [p.name for p in detect_local_pools()] == ["cpu"]
