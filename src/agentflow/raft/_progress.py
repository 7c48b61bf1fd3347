"""What the leader knows of each peer (paper: nextIndex, matchIndex) and quorum arithmetic."""

from __future__ import annotations

from collections import deque

from agentflow.raft._types import ConfState, NodeId, ProgressState, ProgressStatus


class Inflights:
    """Appends sent but not yet acknowledged, bounded by count and by bytes."""

    __slots__ = ("_bytes", "_queue", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._queue: deque[tuple[int, int]] = deque()  # (last index of the append, its bytes)
        self._bytes = 0

    def add(self, index: int, size: int) -> None:
        self._queue.append((index, size))
        self._bytes += size

    def free_le(self, index: int) -> None:
        """Forget every append whose last index is acknowledged by ``index``."""
        queue = self._queue
        while queue and queue[0][0] <= index:
            self._bytes -= queue.popleft()[1]

    def free_first_one(self) -> None:
        if self._queue:
            self._bytes -= self._queue.popleft()[1]

    def full(self) -> bool:
        return len(self._queue) >= self.max_count or self._bytes >= self.max_bytes

    def reset(self) -> None:
        self._queue.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._queue)


class Progress:
    """The leader's view of one follower: match_index, next_index and how to replicate."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "state",
    )

    def __init__(self, *, next_index: int, inflights: Inflights, is_learner: bool) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False  # PROBE: an append is out; wait for a reply or a heartbeat
        self.pending_snapshot = 0
        self.recent_active = False
        self.inflights = inflights
        self.is_learner = is_learner

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement of ``index``; False if it tells nothing new (stale, duplicate)."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the append after ``rejected``; False if it is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # answers an older probe
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def sent_entries(self, last_index: int, count: int, size: int) -> None:
        """Account for an append holding ``count`` entries up to ``last_index``."""
        if self.state is ProgressState.REPLICATE:
            if count > 0:
                self.next = last_index + 1
                self.inflights.add(last_index, size)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def status(self) -> ProgressStatus:
        return ProgressStatus(
            match=self.match,
            next=self.next,
            state=self.state,
            is_learner=self.is_learner,
            recent_active=self.recent_active,
            pending_snapshot=self.pending_snapshot,
            inflight=len(self.inflights),
        )


class ProgressTracker:
    """Membership plus per-peer progress; quorums count voters only, never learners."""

    def __init__(self, max_inflight_msgs: int, max_inflight_bytes: int) -> None:
        self.max_inflight_msgs = max_inflight_msgs
        self.max_inflight_bytes = max_inflight_bytes
        self.voters: set[NodeId] = set()
        self.learners: set[NodeId] = set()
        self.progress: dict[NodeId, Progress] = {}
        self.votes: dict[NodeId, bool] = {}
        self._peers: list[NodeId] = []

    def conf_state(self) -> ConfState:
        return ConfState(voters=frozenset(self.voters), learners=frozenset(self.learners))

    def load(self, conf_state: ConfState, next_index: int) -> None:
        self.voters = set(conf_state.voters)
        self.learners = set(conf_state.learners) - self.voters
        self.progress = {}
        self._peers = []
        for node_id in sorted(self.voters | self.learners):
            self.ensure_progress(node_id, next_index)

    def ensure_progress(self, node_id: NodeId, next_index: int) -> Progress:
        pr = self.progress.get(node_id)
        if pr is None:
            inflights = Inflights(self.max_inflight_msgs, self.max_inflight_bytes)
            pr = Progress(next_index=next_index, inflights=inflights, is_learner=False)
            self.progress[node_id] = pr
            self._peers = sorted(self.progress)
        pr.is_learner = node_id in self.learners
        return pr

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def committed(self) -> int:
        """The largest index held by a majority of voters (paper: a majority of matchIndex)."""
        if not self.voters:
            return 0
        matches = sorted((self.progress[v].match for v in self.voters), reverse=True)
        return matches[self.quorum() - 1]

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def has_quorum(self, nodes: set[NodeId] | dict[NodeId, bool]) -> bool:
        return sum(1 for v in self.voters if v in nodes) >= self.quorum()

    def quorum_active(self, self_id: NodeId) -> bool:
        active = sum(1 for v in self.voters if v == self_id or self.progress[v].recent_active)
        return active >= self.quorum()

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: NodeId, granted: bool) -> None:
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int]:
        """(granted, rejected) among voters; votes of learners or strangers do not count."""
        granted = rejected = 0
        for voter in self.voters:
            vote = self.votes.get(voter)
            if vote is True:
                granted += 1
            elif vote is False:
                rejected += 1
        return granted, rejected

    def remove(self, node_id: NodeId) -> None:
        self.voters.discard(node_id)
        self.learners.discard(node_id)
        if self.progress.pop(node_id, None) is not None:
            self._peers = sorted(self.progress)

    def peers(self) -> list[NodeId]:
        """Every node with a progress, sorted so that message order is deterministic."""
        return self._peers
