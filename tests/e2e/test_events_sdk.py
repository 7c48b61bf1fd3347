"""The SDK's waits over the event socket, against a real master and workers: ``gather``,
``as_completed``, ``wait_many``, futures' ``result()`` and ``wait_workflow``, sync and async,
with no HTTP request per result."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Iterator

import httpx
import pytest

from agentflow.client import AsyncClient, Client
from agentflow.errors import NotFoundError, TaskFailedError, TimeoutExpiredError
from tests.e2e.procs import Processes, live_workers, wait_until


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    processes = Processes(tmp_path_factory.mktemp("events-sdk"))
    try:
        _, master_url = processes.master("m1")
        for name in ("w1", "w2"):
            processes.worker(name, master_url, "--slots", "2")
        wait_until(lambda: live_workers(master_url) == 2, what="two workers")
        yield master_url
    finally:
        processes.close()


def counting(client: Client) -> list[str]:
    """The HTTP requests ``client`` sends from now on."""
    sent: list[str] = []

    def hook(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url.path}")

    client._http.event_hooks["request"].append(hook)
    return sent


def test_gather_as_completed_and_futures_cost_no_request_per_result(url: str) -> None:
    with Client(url) as client:
        futures = client.map(operator.pos, range(200))
        sent = counting(client)
        assert client.gather(futures, timeout_s=60) == list(range(200))
        assert sent == []  # every result came over the one event socket
        again = client.map(operator.neg, range(50))
        sent.clear()
        finished = list(client.as_completed(again, timeout_s=60))
        assert sorted(f.id for f in finished) == sorted(f.id for f in again)  # each once
        assert sorted(f.result() for f in finished) == sorted(-i for i in range(50))
        assert client.submit(operator.add, 2, 3).result(timeout_s=60) == 5
        assert not [r for r in sent if "/api/v1/tasks/" in r]  # no long poll, no GET


def test_failures_timeouts_and_unknown_tasks(url: str) -> None:
    with Client(url) as client:
        good, bad = client.submit(operator.pos, 1), client.submit(operator.truediv, 1, 0)
        with pytest.raises(TaskFailedError, match="ZeroDivisionError"):
            client.gather([good, bad], timeout_s=60)
        value, error = client.gather([good, bad], timeout_s=60, return_exceptions=True)
        assert value == 1 and isinstance(error, TaskFailedError)
        stuck = client.submit("true", group="nobody").id
        with pytest.raises(TimeoutExpiredError):
            client.gather([stuck], timeout_s=0.5)
        done, waiting = client.wait_many([good.id, stuck], timeout_s=0.5)
        assert (done.status, done.ok, waiting.status) == ("completed", True, "queued")
        with pytest.raises(NotFoundError):
            client.wait_many(["t-0000000000000000"], timeout_s=10)
        client.cancel(stuck)


def test_wait_workflow_returns_at_its_end(url: str) -> None:
    with Client(url) as client:
        wf = client.submit_workflow(
            {
                "name": "chain",
                "tasks": [
                    {"id": "a", "command": "sleep 0.2"},
                    {"id": "b", "command": "true", "dependencies": ["a"]},
                ],
            }
        )
        view = client.wait_workflow(wf["id"], timeout_s=60)
        assert view["status"] == "completed"
        running = client.submit_workflow(
            {"name": "held", "tasks": [{"id": "x", "command": "true", "group": "nobody"}]}
        )
        assert client.wait_workflow(running["id"], timeout_s=0.5)["status"] == "running"
        client.cancel_workflow(running["id"])


def test_the_async_client_waits_the_same_way(url: str) -> None:
    async def main() -> None:
        async with AsyncClient(url) as client:
            futures = await client.map(operator.pos, range(100))
            assert await client.gather(futures, timeout_s=60) == list(range(100))
            assert await asyncio.gather(*futures[:10]) == list(range(10))  # one socket too
            more = await client.map(operator.neg, range(20))
            seen = [f.id async for f in client.as_completed(more, timeout_s=60)]
            assert sorted(seen) == sorted(f.id for f in more)
            infos = await client.wait_many(more, timeout_s=60)
            assert [i.id for i in infos] == [f.id for f in more] and all(i.ok for i in infos)
            wf = await client.submit_workflow(
                {"name": "w", "tasks": [{"id": "a", "command": "true"}]}
            )
            assert (await client.wait_workflow(wf["id"], timeout_s=60))["status"] == "completed"

    asyncio.run(main())
