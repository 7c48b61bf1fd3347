"""Snapshots: when this node takes one, taking it, and installing (or refusing) the leader's.

A snapshot is an :class:`~agentflow.cluster.image.Image` at the applied index, saved to
state.db, handed to the Raft storage (which sends it to lagging followers) and used to compact
the log behind it. :class:`Snapshots` does the work; the driver
(:class:`agentflow.cluster.node.RaftLog`) decides when, holds back applying while an image is
taken, and adopts what an installed image says (members, applied index).
"""

from __future__ import annotations

import asyncio
import logging

from agentflow.cluster.config import ClusterConfig
from agentflow.cluster.heap import trim_heap
from agentflow.cluster.image import Image, Member, restore_error
from agentflow.cluster.raftstore import RaftStore
from agentflow.cluster.statestore import StateStore
from agentflow.raft import MemoryStorage, RaftNode, Snapshot
from agentflow.state import StateMachine

__all__ = ["Snapshots", "snapshot_usable"]

log = logging.getLogger(__name__)


def snapshot_usable(snapshot: Snapshot, machine: StateMachine) -> bool:
    """Whether a snapshot from the leader restores: tried on a scratch machine first,
    since once the core takes it there is no way back to the state it replaces."""
    scratch = StateMachine(
        machine.policy, machine.limits, machine.locks.limits, machine.messages.limits
    )
    why = restore_error(snapshot.data, scratch)
    if why is not None:
        log.error("dropped a snapshot from the leader that does not restore: %s", why)
    return why is None


class Snapshots:
    """This node's snapshots over its storage, its two SQLite stores and its state machine."""

    @classmethod
    def for_config(
        cls,
        config: ClusterConfig,
        machine: StateMachine,
        storage: MemoryStorage,
        raftstore: RaftStore,
        statestore: StateStore,
    ) -> Snapshots:
        """The snapshots of a master, with the limits of its configuration."""
        return cls(
            machine=machine,
            storage=storage,
            raftstore=raftstore,
            statestore=statestore,
            every=config.snapshot_every,
            bytes_max=config.snapshot_bytes,
            keep_after=config.keep_after_snapshot,
        )

    def __init__(
        self,
        *,
        machine: StateMachine,
        storage: MemoryStorage,
        raftstore: RaftStore,
        statestore: StateStore,
        every: int,
        bytes_max: int,
        keep_after: int,
    ) -> None:
        self._machine = machine
        self._storage = storage
        self._raftstore = raftstore
        self._statestore = statestore
        self._every = every  # applied entries between snapshots
        self._bytes_max = bytes_max  # applied entry bytes between snapshots
        self._keep_after = keep_after  # log entries kept behind a snapshot
        self.index = 0  # of the latest snapshot (or of the attempt that failed)
        self.bytes_since = 0  # entry bytes applied since the latest snapshot was started

    def due(self, applied: int) -> bool:
        """Whether enough was applied since the latest snapshot to take another."""
        return applied - self.index >= self._every or self.bytes_since >= self._bytes_max

    async def take(self, raft: RaftNode, index: int, members: dict[str, Member]) -> None:
        """Image the state at the applied ``index`` on a thread, then compact the log behind
        it. The caller holds back applying until this returns."""
        image = await self._image(raft, index, members)
        loop = asyncio.get_running_loop()
        locks = await loop.run_in_executor(None, self._machine.locks.snapshot)
        data = await loop.run_in_executor(None, image.pack)
        await self._statestore.save(index, data, locks)
        self._storage.create_snapshot(index, image.conf_state, data)
        keep_from = index - self._keep_after
        if keep_from > self._storage.first_index():
            self._storage.compact(keep_from)
            await self._raftstore.compact(keep_from)
        self.index = index
        log.info("snapshot at index %d (%d bytes)", index, len(data))
        del image, data, locks
        # What the image and the compacted log held goes back to the system, off the loop and
        # without holding back applying (trim_heap never raises).
        loop.run_in_executor(None, trim_heap)

    async def capture(
        self, raft: RaftNode, index: int, members: dict[str, Member]
    ) -> tuple[Image, str]:
        """The image at the applied ``index`` and the machine's digest there, for a backup;
        nothing saved. The caller holds back applying until this returns."""
        image = await self._image(raft, index, members)
        digest = await asyncio.get_running_loop().run_in_executor(None, self._machine.digest)
        return image, digest

    async def _image(self, raft: RaftNode, index: int, members: dict[str, Member]) -> Image:
        """The image of the state at the applied ``index`` (the machine packed on a thread)."""
        image = Image(
            index=index,
            term=self._storage.term(index),
            conf_state=raft.status.conf_state,
            members=members,
        )
        image.machine = await asyncio.get_running_loop().run_in_executor(
            None, self._machine.snapshot
        )
        return image

    async def install(self, snapshot: Snapshot) -> Image:
        """Restore the leader's snapshot into the machine, the stores and the Raft storage;
        return its image, whose members and index the caller adopts."""
        image = Image.unpack(snapshot.data)
        log.info("installing snapshot at index %d from the leader", image.index)
        self._machine.restore(image.machine)
        await self._statestore.save(image.index, snapshot.data, self._machine.locks.snapshot())
        await self._raftstore.reset_after_snapshot(image.index)
        self.index = image.index
        self._storage.apply_snapshot(snapshot)
        return image
