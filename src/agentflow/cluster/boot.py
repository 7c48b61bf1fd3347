"""Starting a master's Raft core from what recovery found on disk."""

from __future__ import annotations

from collections.abc import Collection
from random import Random

from agentflow.cluster.config import ClusterConfig
from agentflow.cluster.image import Image
from agentflow.errors import ConfigError
from agentflow.raft import Config, MemoryStorage, RaftNode

__all__ = ["check_peers", "make_core"]


def make_core(config: ClusterConfig, image: Image, storage: MemoryStorage) -> RaftNode:
    """The core over the recovered ``storage``, having applied up to the image."""
    return RaftNode(
        Config(
            id=config.node_id,
            election_tick=config.election_tick,
            heartbeat_tick=config.heartbeat_tick,
            applied=image.index,
        ),
        storage,
        Random(),
    )


def check_peers(config: ClusterConfig, members: Collection[str]) -> None:
    """A master with peers (or joining) needs the cluster token; refuse to start without."""
    others = sorted(set(members) - {config.node_id})
    if config.token is None and (others or config.join):
        named = f" (its data names {', '.join(others)})" if others else ""
        raise ConfigError(
            f"a cluster needs --cluster-token or --cluster-token-file{named}; a single"
            " master runs without one and opens no peer port"
        )
