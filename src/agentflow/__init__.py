"""AgentFlow: distributed parallel execution for AI agents and batch work.

>>> from agentflow import Client
>>> with Client("http://127.0.0.1:6767") as client:
...     task = client.submit("echo hello")
...     print(client.wait(task.id).status)
"""

from agentflow._version import __version__
from agentflow.client import AsyncClient, Client, TaskInfo
from agentflow.errors import AgentFlowError, TaskFailedError

__all__ = [
    "AgentFlowError",
    "AsyncClient",
    "Client",
    "TaskFailedError",
    "TaskInfo",
    "__version__",
]
