"""Python callables as tasks: naming a function for workers or sending it by value, options,
futures.

A function workers can import by name, called with JSON arguments, travels by name as it always
did (``function``, ``args``, ``kwargs``) and its result is JSON. Anything else (a function of
the script being run or of a notebook, a lambda, a closure, a bound method, arguments that are
not JSON) travels by value: the whole call pickled with cloudpickle (``pickled``), run only by
workers started with ``--allow-pickled-functions``, its return value pickled back.
"""

from __future__ import annotations

import base64
import inspect
import json
import sys
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from agentflow.errors import ClientError, TimeoutExpiredError

if TYPE_CHECKING:
    from agentflow.client._async import AsyncClient
    from agentflow.client._core import TaskInfo
    from agentflow.client._sync import Client

__all__ = [
    "AsyncTaskFuture",
    "TaskFuture",
    "function_body",
    "importable_name",
    "task",
    "value_of",
    "workflow_tasks",
]

F = TypeVar("F", bound=Callable[..., Any])
OPTIONS_ATTR = "__agentflow_options__"


def task(**options: Any) -> Callable[[F], F]:
    """Task options for a function run through the SDK:
    ``@task(priority="high", timeout_s=30, max_retries=2)``."""

    def mark(fn: F) -> F:
        setattr(fn, OPTIONS_ATTR, dict(options))
        return fn

    return mark


def importable_name(fn: Callable[..., Any]) -> str | None:
    """``package.module:qualname`` if workers can import ``fn`` by that name (a module-level
    function of a module, as this process sees it), else None: it must travel by value."""
    if inspect.ismethod(fn):
        return None  # a bound method: its name would lose its instance
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None  # a lambda, a closure, a callable object
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None or not spec.name:
            return None  # a script or a notebook: workers cannot import it
        return f"{spec.name}:{qualname}"  # run with ``python -m``: importable under its name
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return f"{module}:{qualname}" if found is fn else None


def function_body(
    fn: Callable[..., Any],
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    *,
    titled: bool = True,
) -> dict[str, Any]:
    """The task fields of ``fn(*args, **kwargs)``: ``function`` by name with JSON ``args`` and
    ``kwargs`` when workers can import it and the arguments are JSON; otherwise the whole call
    by value in ``pickled`` (``titled``: with the function's name as the title, for want of a
    ``module:callable`` to show). ``@task`` options come first."""
    body: dict[str, Any] = dict(getattr(fn, OPTIONS_ATTR, {}))
    name = importable_name(fn)
    if name is not None and _is_json([list(args), kwargs]):
        body.update(function=name, args=list(args), kwargs=kwargs)
        return body
    body["pickled"] = _pickled_call(fn, tuple(args), kwargs)
    if titled:
        body.setdefault("title", _call_title(fn))
    return body


def _sent_by_value(body: Mapping[str, Any]) -> bool:
    return body.get("pickled") is not None


def _call_title(fn: Callable[..., Any]) -> str:
    """A title for a call sent by value (it has no ``module:callable`` name to show)."""
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)[:200]


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _pickled_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The call ``(fn, args, kwargs)`` by value: cloudpickle, as base64 text."""
    import cloudpickle

    try:
        data = cloudpickle.dumps((fn, args, dict(kwargs)))
    except Exception as exc:  # what cannot be pickled: a lock, a socket, a generator ...
        raise ClientError(
            f"{_call_title(fn)} cannot be sent by value: {type(exc).__name__}: {exc}"
        ) from None
    return base64.b64encode(data).decode("ascii")


def _unpickled(text: str) -> Any:
    """A result sent back by value. It comes from a worker that ran this client's own call."""
    import pickle  # here, not at the top: no process imports it only for having the SDK

    return pickle.loads(base64.b64decode(text))


def workflow_tasks(tasks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The tasks of a workflow, each callable ``function`` (with its ``args`` and ``kwargs``)
    made into the task's fields as :func:`function_body` does; the task's own fields win over
    its ``@task`` options. A callable task that depends on one sent by value goes by value too:
    its parents' results are then pickles, which only workers that unpickle may read."""
    out = [dict(t) for t in tasks]
    calls = {i: t.pop("function") for i, t in enumerate(out) if callable(t.get("function"))}
    bodies = {
        i: function_body(
            fn, out[i].pop("args", None) or [], out[i].pop("kwargs", None) or {}, titled=False
        )
        for i, fn in calls.items()
    }
    by_value = [
        i for i, t in enumerate(out) if t.get("pickled") or _sent_by_value(bodies.get(i, {}))
    ]
    children: dict[Any, list[int]] = {}
    for i in calls:
        for parent in out[i].get("dependencies") or ():
            children.setdefault(parent, []).append(i)
    while by_value:  # each task is switched once at most: this ends
        for child in children.get(out[by_value.pop()].get("id"), ()):
            if not _sent_by_value(bodies[child]):
                body = bodies[child]
                args, kwargs = body.pop("args"), body.pop("kwargs")
                del body["function"]
                body["pickled"] = _pickled_call(calls[child], tuple(args), kwargs)
                by_value.append(child)
    return [{**bodies.get(i, {}), **t} for i, t in enumerate(out)]


class TaskFuture:
    """A submitted call: ``.result()`` waits and returns the function's value (or raises
    :class:`agentflow.TaskFailedError` carrying the traceback). Waits go over the client's
    event socket, shared by every wait of the client."""

    def __init__(self, client: Client, task_id: str) -> None:
        self._client = client
        self.id = task_id
        self._known: TaskInfo | None = None  # its end, once heard (as_completed sets it)

    def __repr__(self) -> str:
        return f"<TaskFuture {self.id}>"

    def info(self) -> TaskInfo:
        return self._client.get(self.id)

    def done(self) -> bool:
        return self._known is not None or self.info().done

    def result(self, timeout_s: float | None = None) -> Any:
        if self._known is None:
            info = self._client.wait_many([self.id], timeout_s=timeout_s)[0]
            if not info.done:
                return value_of(info, timeout_s)  # raises: still running
            self._known = info
        return value_of(self._known, timeout_s)


class AsyncTaskFuture:
    """A call submitted through :class:`AsyncClient`: ``await future`` (or ``await
    future.result(timeout_s=...)``) waits and returns the function's value, so
    ``await client.gather(await client.map(fn, items))`` gathers every result (and so does
    ``asyncio.gather(*futures)``, over the same socket)."""

    def __init__(self, client: AsyncClient, task_id: str) -> None:
        self._client = client
        self.id = task_id
        self._known: TaskInfo | None = None

    def __repr__(self) -> str:
        return f"<AsyncTaskFuture {self.id}>"

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()

    async def info(self) -> TaskInfo:
        return await self._client.get(self.id)

    async def done(self) -> bool:
        return self._known is not None or (await self.info()).done

    async def result(self, timeout_s: float | None = None) -> Any:
        if self._known is None:
            info = (await self._client.wait_many([self.id], timeout_s=timeout_s))[0]
            if not info.done:
                return value_of(info, timeout_s)
            self._known = info
        return value_of(self._known, timeout_s)


def value_of(info: TaskInfo, timeout_s: float | None = None) -> Any:
    """The function's value from its finished task, or the error that stands for it."""
    if not info.done:
        waiting = info.raw.get("unschedulable")  # e.g. no worker runs calls sent by value
        why = f": it {waiting}" if waiting else ""
        raise TimeoutExpiredError(f"task {info.id} still {info.status} after {timeout_s}s{why}")
    info.raise_for_status()
    raw = info.raw.get("result")
    if raw is None:
        return None
    return _unpickled(raw) if info.raw.get("result_format") == "pickle" else json.loads(raw)
