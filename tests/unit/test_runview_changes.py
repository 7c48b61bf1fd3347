"""The run view's reads (cli/runview.py WorkflowChanges): after the workflow's end is heard,
the next view is one plain read, even when the end came while the caller was busy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

from agentflow.cli.runview import WorkflowChanges
from agentflow.client import AsyncClient


class _Client:
    """Streams the given events, then stays open; records each read of the view."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events
        self.reads: list[float | None] = []  # each read's wait_s

    async def events(self, **_: Any) -> AsyncIterator[dict[str, Any]]:
        for event in self._events:
            yield event
        await asyncio.Event().wait()  # the socket stays open

    async def workflow(self, workflow_id: str, wait_s: float | None = None) -> dict[str, Any]:
        self.reads.append(wait_s)
        return {"id": workflow_id, "status": "failed"}


async def _until(condition: Any) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0)


async def test_an_end_heard_while_busy_is_read_at_once_not_long_polled() -> None:
    client = _Client(
        [{"kind": "task", "status": "failed"}, {"kind": "workflow", "status": "failed"}]
    )
    async with WorkflowChanges(cast(AsyncClient, client), "wf-1") as changes:
        await _until(lambda: changes._ended)  # the caller was busy while both came
        await changes.next_view()
        await changes.next_view()  # a view still not showing the end: long polls from here
    assert client.reads == [None, 0.3]


async def test_a_change_is_read_once_it_is_heard() -> None:
    client = _Client([{"kind": "task", "status": "running"}])
    async with WorkflowChanges(cast(AsyncClient, client), "wf-1") as changes:
        await changes.next_view()
    assert client.reads == [None]
