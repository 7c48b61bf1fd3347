"""AgentFlow: distributed parallel execution for AI agents and batch work.

>>> from agentflow import Client
>>> with Client("http://127.0.0.1:6767") as client:
...     task = client.submit("echo hello")
...     print(client.wait(task.id).status)

The SDK names are resolved on first use, so processes that never use the SDK (a worker) do
not import its HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentflow._version import __version__
from agentflow.errors import AgentFlowError, TaskFailedError

if TYPE_CHECKING:
    from agentflow.client import (
        AsyncClient,
        AsyncTaskFuture,
        Client,
        FencedFile,
        FencedResource,
        Lease,
        TaskFuture,
        TaskInfo,
        task,
    )

__all__ = [
    "AgentFlowError",
    "AsyncClient",
    "AsyncTaskFuture",
    "Client",
    "FencedFile",
    "FencedResource",
    "Lease",
    "TaskFailedError",
    "TaskFuture",
    "TaskInfo",
    "__version__",
    "task",
]

_LAZY = {
    "AsyncClient",
    "AsyncTaskFuture",
    "Client",
    "FencedFile",
    "FencedResource",
    "Lease",
    "TaskFuture",
    "TaskInfo",
    "task",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("agentflow.client"), name)
    raise AttributeError(f"module 'agentflow' has no attribute {name!r}")
