"""The command log, as the layers above the state machine see it.

``propose(command)`` returns the command's result once it is durable and applied (a refused
command raises its typed error); ``subscribe`` hears the events of every applied batch in
order. The leader's loops (``agentflow.scheduler``) need nothing more, so the protocol lives
here, beside the machine it feeds, and the scheduler depends on ``state`` only. Three logs
implement it: the Raft node (``agentflow.cluster.node.RaftLog``), the in-memory log
(``agentflow.cluster.memlog.MemoryLog``) and the simulator's node
(``agentflow.testing.sim._simlog.SimLog``); ``agentflow.cluster.seam``
adds what a master's API needs on top (``MasterLog``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from agentflow.state.commands import Command
from agentflow.state.events import Event
from agentflow.state.machine import StateMachine

__all__ = ["CommandLog", "EventSink"]

EventSink = Callable[[list[Event]], None]


class CommandLog(Protocol):
    """Durable, ordered application of commands to one state machine."""

    @property
    def machine(self) -> StateMachine: ...

    @property
    def is_leader(self) -> bool: ...

    async def propose(self, command: Command) -> Any:
        """Resolve with ``apply``'s result once the command is durable and applied."""
        ...

    async def read_barrier(self) -> None:
        """Return once local state reflects every command committed before the call."""
        ...

    def subscribe(self, sink: EventSink) -> None:
        """Call ``sink`` with the events of every applied batch, in order."""
        ...
