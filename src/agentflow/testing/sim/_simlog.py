"""A simulated master's node as a :class:`agentflow.state.commandlog.CommandLog`.

:class:`SimLog` is the third implementation of the seam (beside the Raft node and the
in-memory log): the simulator's actors — the leader's timers running the scheduler's pure
functions, the clients, the workers — propose through it exactly as the master's loops and
routes propose through ``RaftLog``. A proposal is queued to the node's
:class:`agentflow.cluster.driver.ReadyDriver`, fed to the core between Readies and resolved
when its entry applies with the term it was proposed in (another leader's entry at its index,
or a snapshot over it, resolves it with an ``UnavailableError``; a core that does not lead
drops it: ``NotLeaderError``); a command the state machine refused raises its typed error, as
in the master. ``read_barrier`` is a ReadIndex through the same driver, released once the node
has applied the read index; ``subscribe`` hears the events of the batches the node applied.

The coroutines run on the simulator's :class:`agentflow.testing.sim._simloop.SimLoop`, never
on asyncio: the seed alone orders what happens. A crash loses the node's driver and with it
every proposal and read waiting there: whoever awaits them is cancelled by its owner (the
master's own coroutines die with its process the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentflow.errors import AgentFlowError, NotLeaderError, UnavailableError
from agentflow.raft import StateRole
from agentflow.state import Command, StateMachine, encode_command
from agentflow.state.commandlog import CommandLog, EventSink
from agentflow.testing.sim._simloop import SimFuture, SimLoop
from agentflow.testing.sim._system import SystemModel

if TYPE_CHECKING:
    from agentflow.testing.sim._shell import SimNode

__all__ = ["SimLog"]


class SimLog:
    """The command log of one simulated node (all its incarnations); see the module."""

    def __init__(self, node: SimNode, *, loop: SimLoop, io: Callable[[SimNode], None]) -> None:
        self._node = node
        self._loop = loop
        self._io = io  # perform the node's Readies now (the simulation's after_io)
        self._sinks: list[EventSink] = []
        self._reads: dict[bytes, SimFuture] = {}
        self._seq = 0

    @property
    def node_id(self) -> str:
        return self._node.id

    # -- the command log --------------------------------------------------------------------

    @property
    def machine(self) -> StateMachine:
        model = self._node.model
        assert isinstance(model, SystemModel), type(model)
        return model.sm  # read anew each time: a snapshot install replaces it

    @property
    def is_leader(self) -> bool:
        return self._node.alive and self._node.role is StateRole.LEADER

    async def propose(self, command: Command) -> Any:
        node = self._node
        driver = node.driver
        if driver is None:
            raise UnavailableError(f"master {node.id} is down")
        if not self.is_leader:
            raise NotLeaderError(f"master {node.id} is not the leader")
        future = self._loop.future()
        driver.propose(encode_command(command), future, command)
        self._io(node)
        result = await future
        if isinstance(result, AgentFlowError):
            raise result
        return result

    async def read_barrier(self) -> None:
        node = self._node
        driver = node.driver
        if driver is None:
            raise UnavailableError(f"master {node.id} is down")
        self._seq += 1
        context = f"log:{node.id}:{node.incarnation}:{self._seq}".encode()
        future = self._loop.future()
        self._reads[context] = future
        # The action's waiter is the read's: a core that refuses the read resolves it with
        # the refusal (see SimNode.refused); otherwise `released` does, once applied.
        driver.act(lambda raft: raft.read_index(context), future)
        self._io(node)
        try:
            result = await future
        finally:
            self._reads.pop(context, None)
        if isinstance(result, Exception):
            raise UnavailableError(f"cannot confirm the latest state on {node.id}: {result}")

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    # -- what the simulation tells it -------------------------------------------------------

    def released(self, contexts: list[bytes]) -> None:
        """The node applied up to the read index of these reads."""
        for context in contexts:
            future = self._reads.get(context)
            if future is not None:
                future.set_result(None)

    def published(self) -> None:
        """The node applied a batch: its state machine's events go to every subscriber."""
        model = self._node.model
        if not isinstance(model, SystemModel):
            return
        events = model.take_events()
        if events:
            for sink in self._sinks:
                sink(events)


def _conforms(log: SimLog) -> CommandLog:
    return log  # mypy checks here that SimLog implements the whole seam
