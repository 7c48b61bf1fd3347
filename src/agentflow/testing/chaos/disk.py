"""A small disk for one master's data directory: a tmpfs mount that can be filled to ENOSPC.

The master keeps its data in `path` (a directory on the mount); `fill()` writes a filler file
beside it until the file system refuses (ENOSPC), `free()` deletes it again, `close()`
unmounts (lazily, should a process still hold a file there).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

__all__ = ["MOUNT_SOURCE_PREFIX", "SmallDisk", "stale_mounts", "unmount"]

DEFAULT_SIZE_MIB = 128
# The mount's source names its owner, so that a later lab unmounts what a crashed one left
# (`agentflow.testing.chaos.netns.remove_stale`).
MOUNT_SOURCE_PREFIX = "afchaos-disk."
FILL_CHUNK_BYTES = 1 << 20  # written at a time while filling, then smaller down to one byte
MOUNT_TIMEOUT_S = 15.0
FILLER = ".chaos-filler"


class SmallDisk:
    """A tmpfs of ``size_mib`` MiB mounted at ``mountpoint``."""

    def __init__(self, mountpoint: Path, size_mib: int = DEFAULT_SIZE_MIB) -> None:
        self.mountpoint = mountpoint
        self.size_mib = size_mib
        self.source = f"{MOUNT_SOURCE_PREFIX}{os.getpid()}"
        mountpoint.mkdir(parents=True, exist_ok=True)
        options = f"size={size_mib}m,mode=0755"
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, self.source, str(mountpoint)],
            check=True,
            capture_output=True,
            timeout=MOUNT_TIMEOUT_S,
        )
        self.mounted = True
        self.filled = False

    @property
    def filler(self) -> Path:
        return self.mountpoint / FILLER

    def fill(self) -> int:
        """Write the filler until ENOSPC; the bytes written."""
        written = 0
        chunk = FILL_CHUNK_BYTES
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while chunk >= 1:
                try:
                    written += os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk //= 2
        finally:
            os.close(fd)
        self.filled = True
        return written

    def free(self) -> None:
        """Delete the filler: the space is back."""
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()
        self.filled = False

    def close(self) -> None:
        if not self.mounted:
            return
        unmount(str(self.mountpoint))
        self.mounted = False


def stale_mounts(alive: Callable[[int], bool]) -> list[str]:
    """Mount points of small disks whose owner pid is not ``alive``."""
    stale = []
    with open("/proc/mounts") as mounts:
        for line in mounts:
            source, mountpoint = line.split()[:2]
            owner = source.removeprefix(MOUNT_SOURCE_PREFIX)
            if source.startswith(MOUNT_SOURCE_PREFIX) and owner.isdigit() and not alive(int(owner)):
                stale.append(mountpoint.replace("\\040", " "))
    return stale


def unmount(mountpoint: str) -> None:
    subprocess.run(
        ["umount", "-l", mountpoint], check=False, capture_output=True, timeout=MOUNT_TIMEOUT_S
    )
