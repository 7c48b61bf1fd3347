"""The worker's outbox: a start and its outcome share one report; an outcome stays pending
until the report that carried it is acknowledged, and a new session sends it again."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from websockets.asyncio.client import ClientConnection

from agentflow import wire
from agentflow.worker.executor import Finished
from agentflow.worker.outbox import Outbox

DONE = Finished(status="completed", exit_code=0)


class FakeSocket:
    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(self, raw: bytes) -> None:
        await self.frames.put(wire.unpack(raw))


async def _next(sock: FakeSocket) -> dict[str, Any]:
    return await asyncio.wait_for(sock.frames.get(), timeout=5.0)


async def test_a_start_and_its_outcome_travel_together_until_acknowledged() -> None:
    sock = FakeSocket()
    current: list[FakeSocket | None] = [sock]
    outbox = Outbox(5.0, lambda: cast(ClientConnection | None, current[0]))
    runner = asyncio.create_task(outbox.run())
    try:
        outbox.started("t-1", 3)
        outbox.output("t-1", 3, "stdout", b"hi")
        outbox.outcome("t-1", 3, DONE, "42")
        frame = await _next(sock)  # at once: the outcome does not wait out the interval
        assert frame["started"] == [["t-1", 3]]
        assert frame["output"] == [["t-1", 3, "stdout", b"hi"]]
        assert [(o["task_id"], o["result"]) for o in frame["outcomes"]] == [("t-1", "42")]
        assert not outbox.settled
        assert [o["task_id"] for o in outbox.pending_outcomes()] == ["t-1"]

        outbox.reconnected()  # the ack never came: the next session sends it again
        again = await _next(sock)
        assert again["seq"] > frame["seq"] and again["outcomes"] == frame["outcomes"]
        assert again["started"] == []
        outbox.acked(again["seq"])
        assert outbox.settled and outbox.pending_outcomes() == []
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_without_a_session_outcomes_wait_and_go_when_one_opens() -> None:
    sock = FakeSocket()
    current: list[FakeSocket | None] = [None]
    outbox = Outbox(0.01, lambda: cast(ClientConnection | None, current[0]))
    runner = asyncio.create_task(outbox.run())
    try:
        outbox.outcome("t-2", 1, DONE, None)
        outbox.outcome("t-3", 1, DONE, None)
        assert [o["task_id"] for o in outbox.pending_outcomes()] == ["t-2", "t-3"]
        current[0] = sock
        outbox.reconnected()
        frame = await _next(sock)
        assert [o["task_id"] for o in frame["outcomes"]] == ["t-2", "t-3"]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_bases_and_workspace_results_travel_only_when_there_are_some() -> None:
    sock = FakeSocket()
    outbox = Outbox(0.01, lambda: cast(ClientConnection | None, sock))
    runner = asyncio.create_task(outbox.run())
    try:
        outbox.outcome("t-0", 1, DONE, None)
        plain = await _next(sock)
        assert "bases" not in plain and "workspace" not in plain["outcomes"][0]
        outbox.based("t-1", 3, "a" * 40)
        assert (await _next(sock))["bases"] == [["t-1", 3, "a" * 40]]
        result = {"base": "a" * 40, "commit": "b" * 40}
        outbox.outcome("t-1", 3, Finished(status="completed", exit_code=0, workspace=result), None)
        frame = await _next(sock)
        assert "bases" not in frame and frame["outcomes"][0]["workspace"] == result
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
