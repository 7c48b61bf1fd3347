"""Settings of one Raft member: identity, addresses, timers, snapshot policy, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agentflow.cluster.peertls import PeerTLS

__all__ = ["ClusterConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    node_id: str
    data_dir: Path
    raft_host: str = "127.0.0.1"
    raft_port: int = 6768
    api_url: str = ""
    cluster_id: str = "agentflow"
    token: str | None = None  # the cluster token; None: a single master, no peer port
    tls: PeerTLS | None = None  # mutual TLS on the peer port; None: the token and MACs only
    peers: dict[str, str] = field(default_factory=dict)  # node id -> "host:port" (raft)
    join: bool = False
    force_new_cluster: bool = False  # rewrite the data into a cluster of this node alone
    tick_s: float = 0.05
    election_tick: int = 14  # 0.7 s; randomised up to twice that
    heartbeat_tick: int = 2  # 100 ms
    snapshot_every: int = 10_000  # entries applied since the last snapshot...
    snapshot_bytes: int = 64 << 20  # ...or bytes of them, whichever comes first
    keep_after_snapshot: int = 2_000
    propose_timeout_s: float = 10.0
    read_timeout_s: float = 3.0
    max_pending: int = 100_000
    promote_after_ticks: int = 4  # a learner caught up this long (two heartbeats) becomes a voter
    promote_lag_max: int = 16  # ...if its match index is this close to the leader's last index
