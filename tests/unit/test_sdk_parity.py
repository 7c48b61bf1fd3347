"""The SDK's twins stay twins, and its durations say their unit.

``Client`` and ``AsyncClient`` have the same public members with the same parameters (names,
kinds, defaults); only what asyncio changes differs: ``close``/``aclose``, the context-manager
methods, and a method doing I/O is a coroutine (an async iterator where the sync one yields).
A method added to one client fails here until it is added to the other.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import pytest

import agentflow.client as sdk
from agentflow.client import AsyncClient, AsyncTaskFuture, Client, TaskFuture
from agentflow.client._agents import Agent, AsyncAgent
from agentflow.client._calls import TaskPages
from agentflow.client._core import renamed
from agentflow.client._locks import AsyncLockContext, LockContext

SYNC_TO_ASYNC = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
NO_IO = {"agent", "lock", "lock_socket", "submit_socket", "follow_leader", "ws_options", "ws_url"}
ITERATORS = {"iter_tasks", "follow", "as_completed", "events"}
DURATION_WORDS = {"timeout", "ttl", "wait", "idle_timeout", "delay", "interval", "deadline"}


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")} | {
        name for name in SYNC_TO_ASYNC.keys() | SYNC_TO_ASYNC.values() if hasattr(cls, name)
    }


def parameters(member: Any) -> list[tuple[str, Any, Any]]:
    if isinstance(member, property):
        member = member.fget
    params = list(inspect.signature(member).parameters.values())
    return [(p.name, p.kind, p.default) for p in params[1:]]  # without self


def test_async_client_has_every_member_of_client() -> None:
    expected = {SYNC_TO_ASYNC.get(name, name) for name in public(Client)}
    assert public(AsyncClient) == expected
    assert {"cancel_workflow", "iter_tasks", "map", "set_priority"} <= expected  # sanity
    assert {"as_completed", "events", "gather", "wait_many"} <= expected


@pytest.mark.parametrize("name", sorted(public(Client)))
def test_same_parameters(name: str) -> None:
    sync = inspect.getattr_static(Client, name)
    other = inspect.getattr_static(AsyncClient, SYNC_TO_ASYNC.get(name, name))
    assert isinstance(sync, property) == isinstance(other, property)
    assert parameters(sync) == parameters(other)


@pytest.mark.parametrize("name", sorted(public(Client) - {"lock_socket", "submit_socket"}))
def test_async_where_the_sync_one_does_io(name: str) -> None:
    sync = getattr(Client, name)
    other = getattr(AsyncClient, SYNC_TO_ASYNC.get(name, name))
    assert not inspect.iscoroutinefunction(sync) and not inspect.isasyncgenfunction(sync)
    if name in ITERATORS:
        assert inspect.isgeneratorfunction(sync) and inspect.isasyncgenfunction(other)
    elif name in NO_IO or name == "__init__":
        assert not inspect.iscoroutinefunction(other) and not inspect.isasyncgenfunction(other)
    else:
        assert inspect.iscoroutinefunction(other), f"AsyncClient.{name} must be awaited"


async def test_same_public_attributes() -> None:
    with Client("http://127.0.0.1:9") as sync:
        async with AsyncClient("http://127.0.0.1:9") as other:
            assert {k for k in vars(sync) if not k.startswith("_")} == {
                k for k in vars(other) if not k.startswith("_")
            }


def test_futures_are_twins() -> None:
    assert public(TaskFuture) == public(AsyncTaskFuture) == {"done", "info", "result"}
    for name in ("done", "info", "result"):
        assert parameters(getattr(TaskFuture, name)) == parameters(getattr(AsyncTaskFuture, name))
        assert inspect.iscoroutinefunction(getattr(AsyncTaskFuture, name))
    assert hasattr(AsyncTaskFuture, "__await__")


def test_agents_are_twins_but_for_how_messages_stream() -> None:
    # Agent.messages() long-polls the inbox; ``async for message in agent`` reads the pushed
    # stream, and AsyncAgent.open() is what ``async with`` calls (Agent connects at once).
    sync = {name for name in public(Agent) if not name.startswith("__")} - {"messages"}
    assert sync == {name for name in public(AsyncAgent) if not name.startswith("__")} - {"open"}
    assert hasattr(AsyncAgent, "__aenter__") and hasattr(AsyncAgent, "__aiter__")
    for name in sorted(sync - {"ttl"}):
        assert parameters(getattr(Agent, name)) == parameters(getattr(AsyncAgent, name)), name
        assert inspect.iscoroutinefunction(getattr(AsyncAgent, name)), name


@pytest.mark.parametrize(("sync", "other"), [(Agent, AsyncAgent), (LockContext, AsyncLockContext)])
def test_shared_members_of_agents_and_lock_contexts_take_the_same_parameters(
    sync: type, other: type
) -> None:
    for name in sorted(public(sync) & public(other)):
        assert parameters(getattr(sync, name)) == parameters(getattr(other, name)), name


def _sdk_callables() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for export in sdk.__all__:
        item = getattr(sdk, export)
        if inspect.isfunction(item):
            found.append((export, item))
        elif inspect.isclass(item):
            for name, member in vars(item).items():
                if callable(member) and (not name.startswith("_") or name == "__init__"):
                    found.append((f"{export}.{name}", member))
    return found


CALLABLES = _sdk_callables()


@pytest.mark.parametrize(("where", "fn"), CALLABLES, ids=[where for where, _ in CALLABLES])
def test_public_durations_name_their_unit(where: str, fn: Any) -> None:
    try:
        names = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin without a signature
        return
    assert not names & DURATION_WORDS, f"{where}: use timeout_s, ttl_s, wait_s, idle_timeout_s"


def test_an_old_keyword_still_works_for_one_release_with_a_warning() -> None:
    with Client("http://127.0.0.1:9") as client:
        with pytest.warns(DeprecationWarning, match=r"ttl= is deprecated, use ttl_s="):
            context = client.lock("x", ttl=5.0, wait_s=0)
        assert context._ttl_s == 5.0 and context._wait_s == 0
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert client.lock("x", ttl_s=7.0)._ttl_s == 7.0  # the new name: no warning
        with pytest.raises(TypeError, match="both"):
            client.lock("x", wait=1.0, wait_s=2.0)


async def test_an_old_keyword_of_a_coroutine_still_works() -> None:
    @renamed(timeout="timeout_s")
    async def ask(*, timeout_s: float = 1.0) -> float:
        return timeout_s

    assert inspect.iscoroutinefunction(ask)
    assert list(inspect.signature(ask).parameters) == ["timeout_s"]
    with pytest.warns(DeprecationWarning, match="timeout= is deprecated"):
        assert await ask(timeout=3.0) == 3.0


def test_task_pages_stop_at_the_last_page_or_at_max_items() -> None:
    pages = TaskPages(2, None, {"status": "queued", "group": None})
    assert pages.call().params == {"status": "queued", "limit": 2}
    first = pages.take({"tasks": [{"id": "a", "status": "queued"}], "next_cursor": "c1"})
    assert [t.id for t in first] == ["a"] and not pages.done
    assert pages.call().params == {"status": "queued", "limit": 2, "cursor": "c1"}
    pages.take({"tasks": [{"id": "b", "status": "queued"}], "next_cursor": None})
    assert pages.done

    capped = TaskPages(2, 3, {})
    capped.take({"tasks": [{"id": "a", "status": "x"}] * 2, "next_cursor": "c"})
    last = capped.take({"tasks": [{"id": "b", "status": "x"}] * 2, "next_cursor": "d"})
    assert len(last) == 1 and capped.done
