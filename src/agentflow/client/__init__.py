"""The Python SDK: :class:`Client` (sync) and :class:`AsyncClient` (asyncio).

Owns talking HTTP to masters: leader following, retries that are safe because every submit
carries an idempotency key, typed errors rebuilt from problem+json. It imports nothing from
the master side.
"""

from agentflow.client._agents import Agent, AsyncAgent, Message
from agentflow.client._async import AsyncClient
from agentflow.client._core import TaskInfo
from agentflow.client._functions import AsyncTaskFuture, TaskFuture, task
from agentflow.client._locks import FencedFile, FencedResource, Lease
from agentflow.client._sync import Client

__all__ = [
    "Agent",
    "AsyncAgent",
    "AsyncClient",
    "AsyncTaskFuture",
    "Client",
    "FencedFile",
    "FencedResource",
    "Lease",
    "Message",
    "TaskFuture",
    "TaskInfo",
    "task",
]
