"""Detect this machine's real CPUs, memory and (where nvidia-smi works) GPUs as pools."""

from __future__ import annotations

import platform
import shutil
import subprocess

import psutil

from suanwang.agent.executors.base import PoolInfo
from suanwang.domain import units


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def detect_gpus() -> list[tuple[str, float]]:
    """(name, memory GB) per GPU from nvidia-smi; empty where it is missing or fails."""
    if not shutil.which("nvidia-smi"):
        return []
    try:  # B607: nvidia-smi is wherever the driver installed it on PATH
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout  # nosec B607
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.partition(",")
        try:
            gpus.append((name.strip(), float(mem) / 1024))
        except ValueError:
            continue
    return gpus


def detect_local_pools() -> list[PoolInfo]:
    cores = psutil.cpu_count(logical=True) or 1
    mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    model = cpu_model()
    catalog = units.load_catalog()
    known_cpu = catalog.find(model)
    pools = [PoolInfo(name="cpu", resource_class="general", cores=cores, memory_gb=mem_gb,
                      cpu_model=known_cpu.model if known_cpu else "")]
    gpus = detect_gpus()
    if gpus:
        spec = catalog.find(gpus[0][0])
        if spec is not None:
            pools.append(PoolInfo(name="gpu", resource_class="intelligent", cores=cores, memory_gb=mem_gb,
                                  devices=len(gpus), device_model=spec.model, device_memory_gb=gpus[0][1]))
    return pools
