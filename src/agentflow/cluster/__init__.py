"""I/O around the pure cores: durable log, state image, and the command log seam.

Owns SQLite storage (on threads of its own, never on the event loop) and the ``CommandLog``
that turns ``propose(command)`` into a durable, applied result. It must not contain business
rules (those live in ``agentflow.state``). Entry point: :class:`SingleNodeLog`.
"""

from agentflow.cluster.seam import CommandLog, EventSink
from agentflow.cluster.single import SingleNodeLog

__all__ = ["CommandLog", "EventSink", "SingleNodeLog"]
