"""The Raft consensus core: a pure state machine, with no I/O, clock or global randomness.

It owns the replicated log's consensus (elections, replication, commit, ReadIndex, leadership
transfer, membership changes, snapshots) and nothing else: it never touches a socket, a file or
the time. Time arrives as :meth:`RaftNode.tick`, messages as :meth:`RaftNode.step`, and all the
work for the shell comes out as a :class:`Ready` (send the leader's early messages, persist,
send, apply, serve reads, then :meth:`RaftNode.advance`). Entry point: :class:`RaftNode` over
a :class:`Storage` such as :class:`MemoryStorage`; a fresh cluster's founding members first
write their initial voters into the log with :func:`bootstrap`, a node that joins later starts
from an empty storage.
"""

from agentflow.raft._bootstrap import bootstrap
from agentflow.raft._errors import (
    CompactedError,
    ProposalDroppedError,
    RaftError,
    SnapshotTemporarilyUnavailableError,
    UnavailableError,
)
from agentflow.raft._node import RaftNode
from agentflow.raft._ready import Ready
from agentflow.raft._storage import MemoryStorage, Storage
from agentflow.raft._types import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    ProgressState,
    ProgressStatus,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateRole,
    Status,
)

__all__ = [
    "CompactedError",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NodeId",
    "ProgressState",
    "ProgressStatus",
    "ProposalDroppedError",
    "RaftError",
    "RaftNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotTemporarilyUnavailableError",
    "SoftState",
    "StateRole",
    "Status",
    "Storage",
    "UnavailableError",
    "bootstrap",
]
