"""The small disk: filled to ENOSPC, freed, unmounted."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from agentflow.testing.chaos.disk import SmallDisk

SIZE_MIB = 4


def _mounted(path: Path) -> bool:
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == str(path) for line in mounts)


def _write(path: Path) -> None:
    path.write_bytes(b"x" * 4096)


def test_fill_makes_writes_fail_and_free_restores_them(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = SmallDisk(tmp_path / "disk", SIZE_MIB)
    try:
        assert _mounted(disk.mountpoint)
        _write(disk.mountpoint / "before")
        written = disk.fill()
        assert (SIZE_MIB - 1) << 20 < written <= SIZE_MIB << 20
        with pytest.raises(OSError) as refused:
            _write(disk.mountpoint / "during")
        assert refused.value.errno == errno.ENOSPC
        disk.free()
        _write(disk.mountpoint / "after")
    finally:
        disk.close()
    assert not _mounted(disk.mountpoint)
