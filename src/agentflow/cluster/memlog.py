"""An in-memory command log: one replica, no Raft, no disk — for tests.

:class:`MemoryLog` implements :class:`agentflow.cluster.seam.MasterLog`, so a whole master (the
API app, its scheduler and lock keeper) runs over it in one process, in memory, without sockets:
``propose`` encodes the command as the Raft log would, applies those bytes at the next index as
every replica decodes them, hands the events to the subscribers and returns the result (or
raises the error the command was refused with).

Tests steer what a real cluster would decide: :meth:`MemoryLog.set_leader` makes this master a
follower (or the leader again; leadership watchers hear it) and :meth:`MemoryLog.fail_next`
makes the next proposals fail with a given error (no quorum, overload). ``entries`` holds every
applied entry, so a fresh machine can replay them and compare digests. Nothing is durable.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from agentflow.cluster.image import Member
from agentflow.cluster.seam import EventSink, LeaderWatcher, MasterLog
from agentflow.cluster.timings import RaftTimings
from agentflow.cluster.versions import format_status
from agentflow.errors import (
    AgentFlowError,
    ConflictError,
    NotLeaderError,
    UnavailableError,
    ValidationError,
)
from agentflow.raft import ConfChangeType, ConfState, StateRole, Status
from agentflow.state import Command, StateMachine, encode_command
from agentflow.state.envelope import LOG_FORMAT

__all__ = ["MemoryLog"]


class MemoryLog:
    """A single replica that applies each proposed command at once, in order."""

    def __init__(
        self,
        machine: StateMachine,
        *,
        node_id: str = "m1",
        api_url: str = "http://127.0.0.1:6767",
        cluster_id: str = "memory",
        log_format: int = LOG_FORMAT,
    ) -> None:
        self._machine = machine
        self.node_id = node_id
        self.api_url = api_url
        self.cluster_id = cluster_id
        self.written_format = log_format  # as a cluster mid-upgrade would write (tests)
        self.term = 1
        self.entries: list[bytes] = []  # every applied entry, in order
        self._leader_id: str | None = node_id
        self._leader_url: str | None = api_url
        self._last_leader_id: str | None = node_id
        self._sinks: list[EventSink] = []
        self._watchers: list[LeaderWatcher] = []
        self._failures: deque[AgentFlowError] = deque()
        self._closed = False
        self.timings = RaftTimings()  # nothing is timed: there is no disk nor consensus

    # -- the command log --------------------------------------------------------------------

    @property
    def machine(self) -> StateMachine:
        return self._machine

    @property
    def is_leader(self) -> bool:
        return self._leader_id == self.node_id

    async def propose(self, command: Command) -> Any:
        if self._closed:
            raise UnavailableError("master is shutting down")
        if not self.is_leader:
            raise self.not_leader()
        if self._failures:
            raise self._failures.popleft()
        return self.apply(command)

    def apply(self, command: Command) -> Any:
        """Commit and apply ``command`` now, whoever leads (a test playing the leader)."""
        data = encode_command(command, self.written_format)
        self.entries.append(data)
        result = self._machine.apply_entry(self._machine.applied_index + 1, data)
        events = self._machine.drain_events()
        if events:
            for sink in self._sinks:
                sink(events)
        if isinstance(result, AgentFlowError):
            raise result
        return result

    async def read_barrier(self) -> None:
        if self._closed:
            raise UnavailableError("master is shutting down")
        if self._leader_id is None:
            raise UnavailableError(
                f"cannot confirm the latest state: no leader known to {self.node_id}",
                **self._leader_hint(),
            )

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    # -- what tests steer -------------------------------------------------------------------

    def set_leader(self, leader_id: str | None, leader_url: str | None = None) -> None:
        """Make ``leader_id`` the leader (this node's own id: lead again; None: no leader)."""
        was_leader = self.is_leader
        self._leader_id = leader_id
        self._leader_url = self.api_url if leader_id == self.node_id else leader_url
        if leader_id is not None:
            self._last_leader_id = leader_id
            self.term += 1
        if was_leader != self.is_leader:
            for watcher in self._watchers:
                watcher(self.is_leader)

    def fail_next(self, error: AgentFlowError, times: int = 1) -> None:
        """The next ``times`` proposals are refused with ``error`` (nothing is applied)."""
        self._failures.extend([error] * times)

    # -- the master's view ------------------------------------------------------------------

    @property
    def role(self) -> StateRole:
        return StateRole.LEADER if self.is_leader else StateRole.FOLLOWER

    @property
    def leader_id(self) -> str | None:
        return self._leader_id

    @property
    def leader_url(self) -> str | None:
        return self._leader_url

    @property
    def members(self) -> dict[str, Member]:
        return {self.node_id: Member(node_id=self.node_id, raft_address="", api_url=self.api_url)}

    @property
    def raft_status(self) -> Status:
        applied = self._machine.applied_index
        return Status(
            id=self.node_id,
            term=self.term,
            vote=self._leader_id,
            role=self.role,
            leader_id=self._leader_id,
            commit=applied,
            applied=applied,
            last_index=applied,
            conf_state=ConfState(voters=frozenset({self.node_id})),
            lead_transferee=None,
            progress={},
        )

    def _leader_hint(self) -> dict[str, Any]:
        known = self._leader_id or self._last_leader_id
        url = self.api_url if known == self.node_id else self._leader_url
        return {"leader_id": known, "leader_url": url, "leader_known": self._leader_id is not None}

    def not_leader(self) -> NotLeaderError:
        why = f"; the leader is {self._leader_id}" if self._leader_id else "; no leader is known"
        return NotLeaderError(
            f"master {self.node_id} is not the leader{why}", **self._leader_hint()
        )

    def log_format(self) -> int:
        return self.written_format

    def on_leadership(self, watcher: LeaderWatcher) -> None:
        self._watchers.append(watcher)

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    def status(self) -> dict[str, Any]:
        """The keys of :func:`agentflow.cluster.status.cluster_status`, for one member."""
        applied = self._machine.applied_index
        me = {
            "id": self.node_id,
            "api_url": self.api_url,
            "raft_address": "",
            "role": "leader" if self.is_leader else "voter",
            "match_index": applied if self.is_leader else None,
            "lag": 0 if self.is_leader else None,
            "last_contact_s": None,
            "connected": True,
            "link": "self",
        }
        return {
            "node_id": self.node_id,
            "cluster_id": self.cluster_id,
            "leader_id": self._leader_id,
            "leader_url": self._leader_url,
            "role": self.role.value.lower(),
            "term": self.term,
            "commit_index": applied,
            "applied_index": applied,
            "last_index": applied,
            "snapshot_index": 0,
            "members": [me],
            "link_timeout_s": 0.0,
            "rejected_entries": self._machine.rejected.view(),
            "formats": format_status(self.node_id, [self.node_id], {}),
            "recent_leaders": [],  # one member, leading from the start: no election
        }

    async def change_membership(
        self, kind: ConfChangeType, node_id: str, raft_address: str = "", api_url: str = ""
    ) -> dict[str, Any]:
        if not self.is_leader:
            raise self.not_leader()
        raise ConflictError(
            f"the in-memory log has one member and takes no membership change ({kind.name}"
            f" {node_id})"
        )

    async def add_voter(self, node_id: str, raft_address: str, api_url: str) -> dict[str, Any]:
        return await self.change_membership(
            ConfChangeType.ADD_VOTER, node_id, raft_address, api_url
        )

    async def transfer_leadership(self, to: str) -> None:
        if not self.is_leader:
            raise self.not_leader()
        if to != self.node_id:
            raise ValidationError(f"{to} is not a voting member")


def _conforms(log: MemoryLog) -> MasterLog:
    return log  # mypy checks here that MemoryLog implements the whole seam
