"""The command log seam: how the master changes state.

:class:`CommandLog` (defined in :mod:`agentflow.state.commandlog`, so the scheduler needs only
``state``) is the seam itself: ``propose(command)`` returns the command's result once it
is durable and applied (a refused command raises its typed error), ``subscribe`` hears the
events of every applied batch in order. The leader's loops (``agentflow.scheduler``) need
nothing more. Four logs implement it: the Raft node (:class:`agentflow.cluster.node.RaftLog`),
the log in a SQL database (:class:`agentflow.cluster.sql.sqllog.SqlLog`: one writer holding a
fenced lease, ``--store postgresql://...``), the in-memory log
(:class:`agentflow.cluster.memlog.MemoryLog`: one replica, no Raft, for tests) and the
simulator's node (``agentflow.testing.sim._simlog.SimLog``).

:class:`MasterLog` is what a master's API serves over: a command log plus its lifecycle, who
leads, and the cluster's membership. ``RaftLog``, ``SqlLog`` and ``MemoryLog`` implement it, so
the API app is built over any of them (``MasterService(config, log=...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from agentflow.cluster.image import Member
from agentflow.cluster.timings import RaftTimings
from agentflow.errors import NotLeaderError
from agentflow.raft import ConfChangeType, StateRole, Status
from agentflow.state.commandlog import CommandLog, EventSink

__all__ = ["CommandLog", "EventSink", "LeaderWatcher", "MasterLog"]

LeaderWatcher = Callable[[bool], None]  # called with is_leader when leadership changes


class MasterLog(CommandLog, Protocol):
    """A command log as a master's API and services use it."""

    @property
    def role(self) -> StateRole: ...

    @property
    def leader_id(self) -> str | None: ...

    @property
    def leader_url(self) -> str | None:
        """The leader's API URL, where a follower forwards writes (None: none known)."""
        ...

    @property
    def members(self) -> dict[str, Member]: ...

    @property
    def raft_status(self) -> Status: ...

    @property
    def timings(self) -> RaftTimings:
        """Latencies and counts the log measured (for ``/metrics``)."""
        ...

    def not_leader(self) -> NotLeaderError:
        """The error for a request only the leader serves, naming the leader if known."""
        ...

    def on_leadership(self, watcher: LeaderWatcher) -> None: ...

    def log_format(self) -> int:
        """The log entry format this master writes as leader now: the highest every member
        reads (features of a newer format wait for it: ``envelope.WORKSPACE_FORMAT``)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def status(self) -> dict[str, Any]:
        """What ``GET /api/v1/cluster`` shows (see :mod:`agentflow.cluster.status`)."""
        ...

    async def change_membership(
        self, kind: ConfChangeType, node_id: str, raft_address: str = "", api_url: str = ""
    ) -> dict[str, Any]: ...

    async def add_voter(self, node_id: str, raft_address: str, api_url: str) -> dict[str, Any]: ...

    async def transfer_leadership(self, to: str) -> None: ...
