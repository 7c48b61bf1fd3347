"""The socket loop shared by ``WS /api/v1/submit`` and ``WS /api/v1/locks``
(:class:`agentflow.api.frame_loop.FrameLoop`), against an in-memory socket: every frame
answered by its ref, refusals, bounds on what is in progress, and the client leaving."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest
from fastapi import WebSocket

from agentflow.api.frame_loop import FrameBounds, FrameLoop
from agentflow.errors import ConflictError


class MemorySocket:
    """The client's frames in, the server's out (as JSON)."""

    def __init__(self, *frames: str) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for text in frames:
            self.send(text)
        self.sent: list[dict[str, Any]] = []
        self.close_code: int | None = None

    def send(self, text: str) -> None:
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})

    def leave(self) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.close_code = code


def loop_on(sock: MemorySocket, bounds: FrameBounds, **kw: Any) -> FrameLoop:
    return FrameLoop(
        cast(WebSocket, sock), name="test socket", failure="it broke", bounds=bounds, **kw
    )


async def run(frame: dict[str, Any], text: str) -> dict[str, Any]:
    if frame.get("op") == "conflict":
        raise ConflictError("taken")
    if frame.get("op") == "break":
        raise KeyError("bug")
    return {"echo": frame.get("n"), "bytes": len(text)}


async def test_every_frame_is_answered_by_its_ref_even_when_it_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sock = MemorySocket(
        '{"ref": 1, "n": 5}',
        '{"ref": "a", "op": "conflict"}',
        '{"ref": 2, "op": "break"}',
        '{"ref": 3, "n": 1e999}',  # out of bounds: refused by its ref, the socket goes on
        '{"ref": 4, "n": 6}',
    )
    sock.leave()
    await loop_on(sock, FrameBounds(running_max=10)).serve(run)
    by_ref = {frame["ref"]: frame for frame in sock.sent}
    assert by_ref[1] == {"ref": 1, "echo": 5, "bytes": len('{"ref": 1, "n": 5}')}
    assert by_ref["a"]["error"]["status"] == 409
    assert by_ref[2]["error"]["detail"] == "it broke" and "frame 2 failed" in caplog.text
    assert by_ref[3]["error"]["status"] == 422 and by_ref[4]["echo"] == 6
    assert sock.close_code is None


async def test_an_undecodable_frame_closes_the_socket_and_refs_are_mapped() -> None:
    sock = MemorySocket('{"ref": 1}', "not json", '{"ref": 2}')
    await loop_on(sock, FrameBounds(running_max=10), ref_of=lambda ref: f"r{ref}").serve(run)
    assert [frame["ref"] for frame in sock.sent if "echo" in frame] == ["r1"]
    assert sock.close_code is not None  # the frame after it is never read


async def test_the_reading_waits_while_too_much_is_in_progress() -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def slow(frame: dict[str, Any], _text: str) -> dict[str, Any]:
        started.append(frame["ref"])
        await release.wait()
        return {}

    sock = MemorySocket('{"ref": 1}', '{"ref": 2}', '{"ref": 3}')
    sock.leave()
    frames = loop_on(sock, FrameBounds(running_max=2))
    serving = asyncio.create_task(frames.serve(slow))
    while len(started) < 2:
        await asyncio.sleep(0)
    for _ in range(10):  # the third frame is not read while two are in progress
        await asyncio.sleep(0)
    assert started == [1, 2] and not await frames.gone()
    release.set()
    await serving
    assert started == [1, 2, 3] and await frames.gone()
    assert sorted(frame["ref"] for frame in sock.sent) == [1, 2, 3]


async def test_held_bytes_bound_the_frames_in_progress_too() -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def slow(frame: dict[str, Any], _text: str) -> dict[str, Any]:
        started.append(frame["ref"])
        await release.wait()
        return {}

    big = '{"ref": %d, "pad": "' + "x" * 50 + '"}'
    sock = MemorySocket(big % 1, big % 2)
    sock.leave()
    serving = asyncio.create_task(
        loop_on(sock, FrameBounds(running_max=10, held_bytes_max=100)).serve(slow)
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert started == [1]  # two such frames would hold more than 100 bytes
    release.set()
    await serving
    assert started == [1, 2]
