"""Value types shared by the core, its storage and the shell: entries, messages, configuration."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

NodeId = str

# Context of a vote request sent by a campaign forced through leadership transfer (TimeoutNow):
# such a request bypasses the leader lease of check-quorum.
CAMPAIGN_TRANSFER = b"CampaignTransfer"


class EntryType(enum.Enum):
    NORMAL = "NORMAL"
    CONF_CHANGE = "CONF_CHANGE"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One log entry; ``data`` of a CONF_CHANGE entry is an encoded :class:`ConfChange`."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


def entry_size(entry: Entry) -> int:
    """Bytes an entry counts for in message and in-flight limits (payload plus a fixed header)."""
    return len(entry.data) + 16


@dataclass(frozen=True, slots=True, kw_only=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0


class ConfChangeType(enum.Enum):
    ADD_VOTER = "ADD_VOTER"
    ADD_LEARNER = "ADD_LEARNER"
    REMOVE_NODE = "REMOVE_NODE"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfChange:
    """One membership change; ``context`` is opaque to Raft (addresses, for instance)."""

    type: ConfChangeType
    node_id: NodeId
    context: bytes = b""

    def encode(self) -> bytes:
        doc = {"type": self.type.value, "node_id": self.node_id, "context": self.context.hex()}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @staticmethod
    def decode(raw: bytes) -> ConfChange:
        doc = json.loads(raw)
        return ConfChange(
            type=ConfChangeType(doc["type"]),
            node_id=str(doc["node_id"]),
            context=bytes.fromhex(doc["context"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfState:
    """The membership: voters decide elections and commits; learners only receive the log."""

    voters: frozenset[NodeId]
    learners: frozenset[NodeId] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMetadata:
    index: int
    term: int
    conf_state: ConfState


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    metadata: SnapshotMetadata
    data: bytes = b""


class MessageType(enum.Enum):
    PRE_VOTE = "PRE_VOTE"
    PRE_VOTE_RESP = "PRE_VOTE_RESP"
    VOTE = "VOTE"
    VOTE_RESP = "VOTE_RESP"
    APPEND = "APPEND"
    APPEND_RESP = "APPEND_RESP"
    HEARTBEAT = "HEARTBEAT"
    HEARTBEAT_RESP = "HEARTBEAT_RESP"
    SNAPSHOT = "SNAPSHOT"
    TIMEOUT_NOW = "TIMEOUT_NOW"
    READ_INDEX = "READ_INDEX"
    READ_INDEX_RESP = "READ_INDEX_RESP"


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message between peers.

    ``index``/``log_term`` are the previous entry of an APPEND, the last entry of a (pre)vote
    request, the acknowledged (or rejected) index of an APPEND_RESP, and the read index of a
    READ_INDEX_RESP. A rejected APPEND_RESP carries the follower's hint in ``reject_hint`` and
    ``log_term`` (the term at the hint) so the leader can skip a whole term per round trip.
    A READ_INDEX forwarded by a follower carries term 0: it is not bound to a term.
    """

    type: MessageType
    from_: NodeId
    to: NodeId
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadState:
    """A linearizable read may be served once the state machine has applied ``index``."""

    index: int
    context: bytes


class StateRole(enum.Enum):
    FOLLOWER = "FOLLOWER"
    PRE_CANDIDATE = "PRE_CANDIDATE"
    CANDIDATE = "CANDIDATE"
    LEADER = "LEADER"


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftState:
    """Volatile state worth telling the shell about; never persisted."""

    leader_id: NodeId | None
    role: StateRole


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Settings of one node. Ticks are the unit of time; the shell decides how long one is."""

    id: NodeId
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 8 << 20
    max_uncommitted_entries_size: int = 0  # 0 = no limit
    applied: int = 0  # last applied index on restart

    def validate(self) -> None:
        if not self.id:
            raise ValueError("id must not be empty")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat_tick must be positive")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0 or self.max_inflight_bytes <= 0:
            raise ValueError("in-flight limits must be positive")
        if self.max_size_per_msg <= 0:
            raise ValueError("max_size_per_msg must be positive")


class ProgressState(enum.Enum):
    """How the leader replicates to one follower.

    PROBE: one append per heartbeat interval until the match point is found; REPLICATE: stream
    optimistically within the in-flight window; SNAPSHOT: wait for a snapshot to land.
    """

    PROBE = "PROBE"
    REPLICATE = "REPLICATE"
    SNAPSHOT = "SNAPSHOT"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressStatus:
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    pending_snapshot: int
    inflight: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """A read-only picture of one node; ``progress`` is filled only on the leader."""

    id: NodeId
    term: int
    vote: NodeId | None
    role: StateRole
    leader_id: NodeId | None
    commit: int
    applied: int
    last_index: int
    conf_state: ConfState
    lead_transferee: NodeId | None
    progress: dict[NodeId, ProgressStatus]
