"""I/O around the pure cores: the Raft node driver, its storage and its transport.

Owns SQLite storage (on threads of its own, never on the event loop), the authenticated peer
transport and the driver that runs the Raft core behind the command log seam:
``propose(command)`` resolves once the command is durable on a majority and applied. It holds
no business rules (those live in ``agentflow.state``). Entry point: :class:`RaftLog`.
"""

from agentflow.cluster.node import ClusterConfig, RaftLog
from agentflow.cluster.seam import CommandLog, EventSink

__all__ = ["ClusterConfig", "CommandLog", "EventSink", "RaftLog"]
