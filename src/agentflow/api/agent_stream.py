"""``WS /api/v1/agents/{id}/stream``: an agent's inbox pushed as it fills, and its sends and
acks taken over the same socket.

Server frames: ``{"cursor": n, "message": {...}}`` for each inbox message (unless the socket
was opened with ``?push=false``), and ``{"ref": r, "id": ..., "recipients": [...]}`` (or
``{"ref": r, "error": {problem}}``) answering a send. Client frames: ``{"ack": n}`` and
``{"send": {envelope}, "ref": r}``; the sender is always the socket's agent.

Frames that arrive while a command is being committed are taken together: all their sends
become one ``SendMessages`` entry and their acks one ``AckMessages``, so a busy socket costs a
log entry per round, not per message, and order is kept. The stream is served by the leader;
it keeps the agent's session alive while open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pydantic
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from agentflow.api.decoding import FrameError, receive_frame, refuse_frame, send_frame
from agentflow.api.identity import CLOSE_REVOKED, HOLDS_KEY
from agentflow.api.message_routes import send_command, sent_view
from agentflow.api.schemas import MessageIn
from agentflow.api.service import MasterService, accept_on_leader
from agentflow.api.views import message_view
from agentflow.api.waiters import wait_for
from agentflow.errors import AgentFlowError, ValidationError
from agentflow.state.commands import AckMessages, ConnectAgent, SendMessage, SendMessages
from agentflow.state.messages import MessageTable

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

STREAM_TTL_S = 10.0  # the session a stream keeps alive, renewed every third of it
STREAM_BATCH = 100  # inbox messages read per round
FRAMES_PER_ROUND = 1000  # client frames committed together at most
FRAMES_QUEUED = 10_000  # client frames read ahead of the commits at most


@router.websocket("/agents/{agent_id}/stream")
async def stream(ws: WebSocket, agent_id: str, after: int | None = None, push: bool = True) -> None:
    svc = await accept_on_leader(ws)
    if svc is None:
        return
    try:
        await _connect(svc, agent_id)
    except AgentFlowError as exc:
        await send_frame(ws, {"error": exc.detail, "code": exc.code})
        await ws.close(code=4400)
        return
    tasks = [
        asyncio.create_task(_keep_alive(svc, ws, agent_id)),
        asyncio.create_task(_take_frames(svc, ws, agent_id)),
    ]
    if push:
        tasks.append(asyncio.create_task(_push(svc, ws, agent_id, after)))
    try:
        # The client leaving ends the frame reader (or a push fails): stop the rest.
        await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # No disconnect: another stream or an SDK session may hold the same agent. Without
    # renewals the session lapses within STREAM_TTL_S.


async def _connect(svc: MasterService, agent_id: str) -> None:
    ttl_ms = round(STREAM_TTL_S * 1000)
    await svc.log.propose(ConnectAgent(now_ms=svc.now_ms(), agent_id=agent_id, ttl_ms=ttl_ms))


async def _keep_alive(svc: MasterService, ws: WebSocket, agent_id: str) -> None:
    holds: Callable[[], bool] = ws.scope.get(HOLDS_KEY) or (lambda: True)
    while True:
        await asyncio.sleep(STREAM_TTL_S / 3)
        if not holds():  # revoked, expired, or its attempt ended: the agent lapses with it
            with contextlib.suppress(Exception):
                await ws.close(code=CLOSE_REVOKED)
            return
        try:
            await _connect(svc, agent_id)
        except AgentFlowError as exc:
            log.info("agent %s: session not renewed: %s", agent_id, exc)


async def _push(svc: MasterService, ws: WebSocket, agent_id: str, after: int | None) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await _push_from(svc, ws, svc.machine.messages, agent_id, after)


async def _push_from(
    svc: MasterService, ws: WebSocket, table: MessageTable, agent_id: str, cursor: int | None
) -> None:
    while True:
        with svc.inbox_waiters.watch(agent_id) as delivered:
            found = table.read(agent_id, after=cursor, now_ms=svc.now_ms(), limit=STREAM_BATCH)
            for position, message in found:
                await send_frame(ws, {"cursor": position, "message": message_view(message)})
            if found:
                cursor = found[-1][0]
                continue
            await wait_for(delivered, 15.0)


async def _take_frames(svc: MasterService, ws: WebSocket, agent_id: str) -> None:
    """Read frames into a queue; commit what has queued up, one round at a time. A full queue
    stops the reading, so a client sending faster than commits is held back by TCP."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(FRAMES_QUEUED)

    async def read() -> None:
        try:
            while True:
                try:
                    await queue.put(await receive_frame(ws))
                except FrameError as exc:
                    if await refuse_frame(ws, exc):
                        return  # closed: the stream ends, and with it the keep-alive
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:  # however the reading ends, the committer sees the end and stops
            await queue.put(None)

    reader = asyncio.create_task(read())
    try:
        while True:
            frames = [await queue.get()]
            while not queue.empty() and len(frames) < FRAMES_PER_ROUND:
                frames.append(queue.get_nowait())
            done = frames[-1] is None
            rounds = [f for f in frames if f is not None]
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await _commit_round(svc, ws, agent_id, rounds)
            if done:
                return
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def _commit_round(
    svc: MasterService, ws: WebSocket, agent_id: str, frames: list[dict[str, Any]]
) -> None:
    sends: list[tuple[Any, SendMessage]] = []
    acks: list[int] = []
    for frame in frames:
        try:
            if "send" in frame:
                sends.append((frame.get("ref"), _send_frame(svc, agent_id, frame["send"])))
            elif _is_cursor(frame.get("ack")):
                acks.append(frame["ack"])
            else:
                raise ValidationError('frames look like {"ack": n} or {"send": {...}, "ref": r}')
        except AgentFlowError as exc:
            await send_frame(ws, {"ref": frame.get("ref"), "error": exc.to_problem()})
    if sends:
        commands = [command for _, command in sends]
        try:
            results = await svc.log.propose(SendMessages(now_ms=svc.now_ms(), messages=commands))
        except AgentFlowError as exc:
            results = [exc] * len(commands)
        for (ref, command), result in zip(sends, results, strict=True):
            await send_frame(ws, {"ref": ref} | sent_view(command, result))
    if acks:
        try:
            await svc.log.propose(
                AckMessages(now_ms=svc.now_ms(), agent_id=agent_id, cursor=max(acks))
            )
        except AgentFlowError as exc:
            await send_frame(ws, {"error": exc.to_problem()})


def _is_cursor(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _send_frame(svc: MasterService, agent_id: str, envelope: Any) -> SendMessage:
    try:
        body = MessageIn.model_validate(envelope, strict=True)  # as over HTTP
    except pydantic.ValidationError as exc:
        raise ValidationError(f"invalid message: {exc.errors()[0]['msg']}") from None
    if body.requires_response:
        raise ValidationError("requests go to POST /api/v1/messages/request")
    return send_command(svc, body, agent_id)
