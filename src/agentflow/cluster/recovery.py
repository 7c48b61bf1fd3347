"""What a master recovers from its disk when it starts: its state image and its Raft log.

state.db holds the latest image (state machine and members at one index), raft.db the hard
state and the entries after it. A master with neither founds a cluster (or waits to join one)
from its configuration: an image of the members named by ``--peers``, and for a founding
member the committed ADD_VOTER entries every founder writes alike.
"""

from __future__ import annotations

from agentflow.cluster.config import ClusterConfig
from agentflow.cluster.image import Image
from agentflow.cluster.raftstore import RaftStore
from agentflow.cluster.statestore import StateStore
from agentflow.raft import (
    ConfState,
    HardState,
    MemoryStorage,
    Snapshot,
    SnapshotMetadata,
    bootstrap,
)
from agentflow.state import StateMachine

__all__ = ["recover"]


async def recover(
    config: ClusterConfig,
    machine: StateMachine,
    storage: MemoryStorage,
    raftstore: RaftStore,
    statestore: StateStore,
) -> tuple[Image, int]:
    """Restore ``machine`` and ``storage`` from the opened stores (founding a fresh cluster if
    they are empty); return the image restored and how many log entries follow it."""
    image = await _load_image(statestore)
    hard, entries = await raftstore.load(image.index)
    fresh = image.index == 0 and hard is None and not entries
    if fresh:
        image = Image.fresh(
            config.node_id,
            f"{config.raft_host}:{config.raft_port}",
            config.api_url,
            config.peers,
        )
        await statestore.save(0, image.pack())
    _install_image(image, machine, storage)
    if fresh and not config.join:
        # Founding members write the same committed ADD_VOTER entries, so a node that joins
        # later learns the membership from the log itself.
        bootstrap(storage, image.members)
        hard, _conf = storage.initial_state()
        entries = storage.entries(1, storage.last_index() + 1)
        await raftstore.save(hard, entries)
    else:
        if hard is not None:
            if hard.commit < image.index:  # a commit index written without fsync was lost
                hard = HardState(term=hard.term, vote=hard.vote, commit=image.index)
            storage.set_hard_state(hard)
        if entries:
            storage.append(entries)
    return image, len(entries)


async def _load_image(statestore: StateStore) -> Image:
    saved = await statestore.load()
    if saved is None:
        return Image(index=0, term=0, conf_state=ConfState(voters=frozenset()))
    return Image.unpack(saved[1])


def _install_image(image: Image, machine: StateMachine, storage: MemoryStorage) -> None:
    """Make ``image`` the current state of the machine and the Raft storage's snapshot."""
    if image.machine:
        machine.restore(image.machine)
    snap = Snapshot(
        metadata=SnapshotMetadata(index=image.index, term=image.term, conf_state=image.conf_state),
        data=image.pack(),
    )
    storage.apply_snapshot(snap)
