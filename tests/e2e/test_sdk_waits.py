"""``Client.wait`` / ``AsyncClient.wait`` and ``agentflow run``'s live view over the event
socket, against a real master and workers: no long poll per task, and long polls again where
the master refuses the socket."""

from __future__ import annotations

import asyncio
import io
import operator
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from rich.console import Console

from agentflow.cli.runview import follow_workflow
from agentflow.client import AsyncClient, Client
from tests.e2e.procs import Processes, live_workers, wait_until


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    processes = Processes(tmp_path_factory.mktemp("sdk-waits"))
    try:
        _, master_url = processes.master("m1")
        processes.worker("w1", master_url, "--slots", "2")
        wait_until(lambda: live_workers(master_url) == 1, what="one worker")
        yield master_url
    finally:
        processes.close()


def _sent(http: httpx.Client | httpx.AsyncClient) -> list[httpx.URL]:
    """The URLs of the requests ``http`` sends from now on."""
    urls: list[httpx.URL] = []
    if isinstance(http, httpx.AsyncClient):

        async def ahook(request: httpx.Request) -> None:
            urls.append(request.url)

        http.event_hooks["request"].append(ahook)
    else:
        http.event_hooks["request"].append(lambda request: urls.append(request.url))
    return urls


def _long_polls(urls: list[httpx.URL]) -> list[httpx.URL]:
    """Those that ask the master to hold the answer (``wait_s`` above 0)."""
    return [u for u in urls if float(u.params.get("wait_s", "0")) > 0]


def test_wait_hears_the_end_over_the_socket_and_returns_the_full_record(url: str) -> None:
    with Client(url) as client:
        task = client.submit(command="sleep 0.3; echo hi", title="napper")
        sent = _sent(client._http)
        info = client.wait(task.id, timeout_s=60)
        assert info.ok and info.title == "napper" and info.attempts == 1  # the full record
        assert info.worker_id is not None
        assert _long_polls(sent) == []  # its end came as an event: one GET, no long poll
        assert [u.path for u in sent] == [f"/api/v1/tasks/{task.id}"]
        slow = client.submit(command="sleep 30")
        running = client.wait(slow.id, timeout_s=0.2)  # the deadline: its state as it is
        assert not running.done and running.id == slow.id
        client.cancel(slow.id)
        assert client.wait(slow.id, timeout_s=60).status == "cancelled"
        assert _long_polls(sent) == []


def test_the_async_wait_too(url: str) -> None:
    async def main() -> None:
        async with AsyncClient(url) as client:
            future = await client.submit(operator.add, 2, 3)
            sent = _sent(client._http)
            info = await client.wait(future.id, timeout_s=60)
            assert info.ok and info.attempts == 1 and info.raw["result"] is not None
            slow = await client.submit(command="sleep 30")
            assert not (await client.wait(slow.id, timeout_s=0.2)).done
            await client.cancel(slow.id)
            assert _long_polls(sent) == []

    asyncio.run(main())


def test_a_refused_socket_leaves_the_waits_to_long_polls(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(url) as client:
        # No such socket: the master refuses the handshake (403), as for a role without it.
        nowhere = client.ws_url("/api/v1/none")
        monkeypatch.setattr(client, "ws_url", lambda path: nowhere)
        task = client.submit(command="true", title="polled")
        sent = _sent(client._http)
        info = client.wait(task.id, timeout_s=60)
        assert info.ok and info.title == "polled"
        assert _long_polls(sent) != []  # the fallback
        more = [client.submit(command="true") for _ in range(3)]
        assert all(i.ok for i in client.wait_many(more, timeout_s=60))


SPEC = {
    "name": "steps",
    "tasks": [
        {"id": "a", "command": "sleep 0.2; echo one"},
        {"id": "b", "command": "echo two", "dependencies": ["a"]},
        {"id": "c", "command": "exit 3", "dependencies": ["a"]},
    ],
}


def _follow(url: str, refused: bool) -> tuple[dict[str, Any], list[httpx.URL]]:
    async def main() -> tuple[dict[str, Any], list[httpx.URL]]:
        async with AsyncClient(url) as client:
            if refused:
                nowhere = client.ws_url("/api/v1/none")
                client.ws_url = lambda path: nowhere  # type: ignore[method-assign]
            wf = await client.submit_workflow(SPEC)
            sent = _sent(client._http)
            view, _lines = await follow_workflow(client, wf["id"], Console(file=io.StringIO()))
            return view, sent

    return asyncio.run(main())


def test_the_run_view_follows_events_instead_of_polling(url: str) -> None:
    view, sent = _follow(url, refused=False)
    assert view["status"] == "failed"
    assert _long_polls(sent) == []  # each read of the view followed an event


def test_the_run_view_polls_where_the_socket_is_refused(url: str) -> None:
    view, sent = _follow(url, refused=True)
    assert view["status"] == "failed"
    assert _long_polls(sent) != []
