"""AgentFlow: distributed parallel execution for AI agents and batch work."""

from agentflow._version import __version__

__all__ = ["__version__"]
