"""AsyncClient's methods that were Client-only, against real master and worker processes:
priority, paging, map, workflows (wait, graph, cancel, retry), drain and removal of workers;
and AsyncAgent's broadcast, publish and receive."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from agentflow import AsyncClient, AsyncTaskFuture
from agentflow.errors import ConflictError
from tests.e2e.procs import Processes, live_workers, wait_until

MODULE = """
def ident(x):
    return x
"""


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[ModuleType]:
    (tmp_path / "af_async_jobs.py").write_text(MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("af_async_jobs")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("af_async_jobs", None)


async def _until(
    predicate: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15.0
) -> None:
    """Awaits ``predicate()`` until it is true, or fails after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_priority_paging_and_map(procs: Processes, tmp_path: Path, jobs: ModuleType) -> None:
    _, url = procs.master()
    async with AsyncClient(url) as client:
        ids = await client.submit_many([{"command": "true", "priority": "low"}] * 5)
        raised = await client.set_priority(ids[3], "urgent")
        assert raised.priority == "urgent"
        assert (await client.queue_stats())["by_priority"] == {
            "urgent": 1,
            "high": 0,
            "medium": 0,
            "low": 4,
        }
        paged = [info.id async for info in client.iter_tasks(limit=2)]  # three pages
        assert sorted(paged) == sorted(ids) and len(paged) == 5
        capped = [info.id async for info in client.iter_tasks(limit=2, max_items=3)]
        assert len(capped) == 3 and set(capped) <= set(ids)
        assert [t.id for t in await client.list(limit=2)] == paged[:2]

        procs.worker("py", url, "--slots", "2", env={"PYTHONPATH": str(tmp_path)})
        futures = await client.map(jobs.ident, [1, "two", [3]])
        assert all(isinstance(f, AsyncTaskFuture) for f in futures)
        assert await asyncio.gather(*futures) == [1, "two", [3]]
        single = await client.submit(jobs.ident, {"k": 4})
        assert await single.result(timeout_s=20) == {"k": 4}
        assert await single.done()
        for task_id in ids:
            assert (await client.wait(task_id, timeout_s=20)).ok


async def test_workflow_wait_graph_cancel_and_retry(procs: Processes, tmp_path: Path) -> None:
    _, url = procs.master()
    procs.worker("w1", url, "--slots", "2")
    wait_until(lambda: live_workers(url) == 1)
    fixed = tmp_path / "fixed"
    async with AsyncClient(url) as client:
        wf = await client.submit_workflow(
            {
                "name": "retry",
                "tasks": [
                    {"id": "good", "command": "true"},
                    {"id": "broken", "dependencies": ["good"], "command": f"[ -e {fixed} ]"},
                    {"id": "after", "dependencies": ["broken"], "command": "true"},
                ],
            }
        )
        failed = await client.wait_workflow(wf["id"], timeout_s=30)
        assert failed["status"] == "failed"
        graph = await client.workflow_graph(wf["id"])
        nodes = {n["key"]: n for n in graph["nodes"]}
        assert nodes["after"]["dependencies"] == ["broken"]
        assert nodes["broken"]["status"] == "failed"
        fixed.touch()
        assert (await client.retry_workflow(wf["id"]))["retried_tasks"] == 2
        assert (await client.wait_workflow(wf["id"], timeout_s=30))["status"] == "completed"

        slow = await client.submit_workflow(
            {"name": "slow", "tasks": [{"id": "sleeper", "command": "sleep 30"}]}
        )
        still = await client.wait_workflow(slow["id"], timeout_s=0.5)  # the wait runs out
        assert still["status"] == "running"
        assert (await client.cancel_workflow(slow["id"]))["status"] == "cancelled"
        assert (await client.wait_workflow(slow["id"], timeout_s=10))["status"] == "cancelled"


async def test_drain_and_remove_a_worker(procs: Processes) -> None:
    _, url = procs.master("m1", None, "--worker-timeout", "60s")
    worker = procs.worker("w1", url, "--slots", "1")
    wait_until(lambda: live_workers(url) == 1)
    async with AsyncClient(url) as client:
        assert (await client.drain_worker("w1"))["state"] == "draining"
        task = await client.submit("true")
        assert (await client.wait(task.id, timeout_s=1)).status == "queued"
        assert (await client.drain_worker("w1", drain=False))["state"] == "active"
        assert (await client.wait(task.id, timeout_s=20)).ok

        busy = await client.submit("sleep 5")

        async def running() -> bool:
            return (await client.get(busy.id)).status == "running"

        await _until(running, "the task to run")
        worker.kill9()  # the master still counts the task as running on w1 (60 s to notice)
        with pytest.raises(ConflictError):
            await client.remove_worker("w1")
        await client.remove_worker("w1", force=True)
        assert await client.workers() == []
        assert (await client.get(busy.id)).status == "queued"  # its attempt was given back


async def test_async_agent_broadcasts_publishes_and_reads_its_inbox(procs: Processes) -> None:
    _, url = procs.master()
    async with (
        AsyncClient(url) as client,
        client.agent("a-sender") as sender,
        client.agent("a-reader") as reader,
    ):
        await reader.subscribe("builds.*")
        await sender.broadcast("Notification", "freeze at 18:00")
        await sender.publish("builds.linux", "StatusUpdate", {"ok": True})
        got = await reader.receive(wait_s=10)
        assert [(m.type, m.content) for m in got] == [
            ("Notification", "freeze at 18:00"),
            ("StatusUpdate", {"ok": True}),
        ]
        await reader.ack(got[-1])
        assert await reader.receive() == []
