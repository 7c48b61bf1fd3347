"""The command log seam: how the master changes state.

``propose(command)`` returns the command's result once it is durable and applied; a refused
command raises its typed error. The single-node log implements it now; the Raft node implements
the same protocol, so nothing above this seam changes when masters replicate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from agentflow.state import Command, StateMachine
from agentflow.state.events import Event

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
