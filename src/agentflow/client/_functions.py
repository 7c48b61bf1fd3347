"""Python callables as tasks: naming a function for workers, options, futures."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from agentflow.errors import ClientError, TimeoutExpiredError

if TYPE_CHECKING:
    from agentflow.client._async import AsyncClient
    from agentflow.client._core import TaskInfo
    from agentflow.client._sync import Client

__all__ = ["AsyncTaskFuture", "TaskFuture", "function_body", "function_name", "task"]

F = TypeVar("F", bound=Callable[..., Any])
OPTIONS_ATTR = "__agentflow_options__"


def task(**options: Any) -> Callable[[F], F]:
    """Task options for a function run through the SDK:
    ``@task(priority="high", timeout_s=30, max_retries=2)``."""

    def mark(fn: F) -> F:
        setattr(fn, OPTIONS_ATTR, dict(options))
        return fn

    return mark


def function_name(fn: Callable[..., Any]) -> str:
    """``package.module:qualname``, as a worker will import it from its own PYTHONPATH."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ClientError(f"{fn!r} cannot be imported by a worker: submit a module-level function")
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None or not spec.name:
            raise ClientError(
                f"{qualname} is defined in the script being run, which workers cannot import: "
                "put it in a module on the workers' PYTHONPATH"
            )
        module = spec.name
    return f"{module}:{qualname}"


def function_body(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = dict(getattr(fn, OPTIONS_ATTR, {}))
    body.update(function=function_name(fn), args=list(args), kwargs=kwargs)
    try:
        json.dumps([body["args"], body["kwargs"]])
    except TypeError as exc:
        raise ClientError(f"arguments of {body['function']} must be JSON: {exc}") from None
    return body


class TaskFuture:
    """A submitted call: ``.result()`` waits and returns the function's value (or raises
    :class:`agentflow.TaskFailedError` carrying the traceback)."""

    def __init__(self, client: Client, task_id: str) -> None:
        self._client = client
        self.id = task_id

    def __repr__(self) -> str:
        return f"<TaskFuture {self.id}>"

    def info(self) -> TaskInfo:
        return self._client.get(self.id)

    def done(self) -> bool:
        return self.info().done

    def result(self, timeout_s: float | None = None) -> Any:
        return _value(self._client.wait(self.id, timeout_s=timeout_s), timeout_s)


class AsyncTaskFuture:
    """A call submitted through :class:`AsyncClient`: ``await future`` (or ``await
    future.result(timeout_s=...)``) waits and returns the function's value, so
    ``await asyncio.gather(*await client.map(fn, items))`` gathers every result."""

    def __init__(self, client: AsyncClient, task_id: str) -> None:
        self._client = client
        self.id = task_id

    def __repr__(self) -> str:
        return f"<AsyncTaskFuture {self.id}>"

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()

    async def info(self) -> TaskInfo:
        return await self._client.get(self.id)

    async def done(self) -> bool:
        return (await self.info()).done

    async def result(self, timeout_s: float | None = None) -> Any:
        return _value(await self._client.wait(self.id, timeout_s=timeout_s), timeout_s)


def _value(info: TaskInfo, timeout_s: float | None) -> Any:
    """The function's value from its finished task, or the error that stands for it."""
    if not info.done:
        raise TimeoutExpiredError(f"task {info.id} still {info.status} after {timeout_s}s")
    info.raise_for_status()
    raw = info.raw.get("result")
    return None if raw is None else json.loads(raw)
