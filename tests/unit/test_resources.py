"""GPU detection through a stand-in nvidia-smi on PATH (no GPU on this machine)."""

import os
import stat
from pathlib import Path

import pytest

from agentflow.worker.resources import probe_resources


def test_probe_uses_nvidia_smi_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, NVIDIA H200, 143771'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    resources, gpus = probe_resources()
    assert resources["gpu"] == 1.0
    assert gpus[0].name == "NVIDIA H200" and gpus[0].memory_mb == 143771
    assert resources["cpu"] >= 1 and resources["memory_mb"] > 0


def test_probe_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    resources, gpus = probe_resources()
    assert gpus == [] and resources["gpu"] == 0.0
