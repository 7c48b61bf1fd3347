"""I/O around the pure cores: the Raft node driver, its storage and its transport.

Owns SQLite storage (on threads of its own, never on the event loop), the authenticated peer
transport and the driver that runs the Raft core behind the command log seam:
``propose(command)`` resolves once the command is durable on a majority and applied. It holds
no business rules (those live in ``agentflow.state``). Entry point: :class:`RaftLog`; the seam
it implements is :mod:`agentflow.cluster.seam`, also implemented in memory, for tests, by
:class:`agentflow.cluster.memlog.MemoryLog`.
"""

from agentflow.cluster.memlog import MemoryLog
from agentflow.cluster.node import ClusterConfig, RaftLog
from agentflow.cluster.seam import CommandLog, EventSink, MasterLog

__all__ = ["ClusterConfig", "CommandLog", "EventSink", "MasterLog", "MemoryLog", "RaftLog"]
