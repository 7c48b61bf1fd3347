"""When the master takes its snapshot, on a task, while the driver holds applying back.

The driver keeps persisting, sending and heartbeating while an image is taken; it only holds
back applying committed entries (nothing else changes the state machine), so the image is
consistent and no election times out while a large state is serialised. A leader's snapshot
is never installed under a thread still reading the machine: the install waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from agentflow.cluster.driver import ReadyDriver
from agentflow.cluster.image import Image, Member
from agentflow.cluster.snapshots import Snapshots
from agentflow.cluster.timings import RaftTimings
from agentflow.raft import RaftNode, Snapshot

__all__ = ["SnapshotTaker"]

log = logging.getLogger(__name__)


class SnapshotTaker:
    def __init__(
        self,
        snapshots: Snapshots,
        driver: ReadyDriver,
        *,
        members: Callable[[], dict[str, Member]],
        wake: Callable[[], None],
        timings: RaftTimings | None = None,
    ) -> None:
        self._snapshots = snapshots
        self._timings = timings or RaftTimings()
        self._driver = driver
        self._members = members
        self._wake = wake
        self.task: asyncio.Task[None] | None = None

    def maybe_take(self) -> None:
        """Start a snapshot if enough was applied since the last one and none is running."""
        if self.task is None and self._snapshots.due(self._driver.applied):
            self._snapshots.bytes_since = 0
            self._driver.holding = True
            self.task = asyncio.get_running_loop().create_task(self._take(), name="raft-snapshot")

    async def wait(self) -> None:
        """Return once no snapshot is being taken (never raises)."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def install(self, snapshot: Snapshot) -> Image:
        """Restore the leader's snapshot once no thread reads the machine; return its image."""
        await self.wait()
        started = time.perf_counter()
        image = await self._snapshots.install(snapshot)
        self._timings.snapshot_install.observe(time.perf_counter() - started)
        self._driver.installed(image.index)
        return image

    async def capture(self, raft: RaftNode, members: dict[str, Member]) -> tuple[Image, str]:
        """The image at the applied index and the machine's digest there (for a backup),
        taken as a snapshot is, and never beside one: it holds the snapshot's place."""
        while self.task is not None:
            await self.wait()
        out: list[tuple[Image, str]] = []
        self._driver.holding = True
        self.task = asyncio.get_running_loop().create_task(
            self._capture(raft, members, out), name="raft-backup"
        )
        # A request that goes away does not cut the capture short: its thread reads the machine
        # until it is done, and applying resumes only then.
        await asyncio.shield(self.task)
        return out[0]

    async def _capture(
        self, raft: RaftNode, members: dict[str, Member], out: list[tuple[Image, str]]
    ) -> None:
        try:
            out.append(await self._snapshots.capture(raft, self._driver.applied, members))
        finally:
            self.task = None
            self._driver.holding = False
            self._wake()

    async def _take(self) -> None:
        applied = self._driver.applied
        started = time.perf_counter()
        try:
            await self._snapshots.take(self._driver.raft, applied, dict(self._members()))
            self._timings.snapshot_take.observe(time.perf_counter() - started)
        except Exception:
            log.exception("taking a snapshot failed; the log is kept and it is tried again later")
            self._snapshots.index = applied
        finally:
            self.task = None
            self._driver.holding = False
            self._wake()
