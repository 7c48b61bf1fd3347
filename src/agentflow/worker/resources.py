"""What this machine offers: CPUs, memory, and GPUs when ``nvidia-smi`` finds any."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import psutil

__all__ = ["Gpu", "parse_nvidia_smi", "probe_gpus", "probe_resources"]

NVIDIA_SMI_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Gpu:
    index: int
    name: str
    memory_mb: int


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits``."""
    gpus: list[Gpu] = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        try:
            memory_mb = int(float(parts[2]))
        except ValueError:
            continue
        gpus.append(Gpu(index=int(parts[0]), name=parts[1], memory_mb=memory_mb))
    return gpus


def probe_gpus() -> list[Gpu]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        done = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else []


def probe_resources() -> tuple[dict[str, float], list[Gpu]]:
    """``{"cpu", "memory_mb", "gpu"}`` of this machine, and the GPUs found."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = probe_gpus()
    resources = {
        "cpu": float(cpus or 1),
        "memory_mb": float(psutil.virtual_memory().total // (1 << 20)),
        "gpu": float(len(gpus)),
    }
    return resources, gpus
