"""Routes under ``/api/v1/agents``: sessions, inboxes (long-poll and a WebSocket stream), acks,
subscriptions, and the agent registry.

Any id is an agent: a running task's id, or a name a process connects under. Reading an inbox
changes nothing; acknowledging does (one command). The stream is served by the leader, which
keeps the agent's session alive while the socket is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response

from agentflow.api.problems import read_model
from agentflow.api.schemas import AckIn, ConnectIn
from agentflow.api.service import MasterService, service
from agentflow.api.views import agent_view, message_view
from agentflow.api.waiters import wait_for
from agentflow.errors import AgentFlowError
from agentflow.state.commands import (
    AckMessages,
    ConnectAgent,
    DisconnectAgent,
    Subscribe,
    Unsubscribe,
)
from agentflow.state.messages import AgentBox, MessageTable

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

AgentIdPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\s*/][^\s/]*$")]
MAX_WAIT_S = 300.0
STREAM_TTL_S = 10.0  # the session a stream keeps alive, renewed every third of it
STREAM_BATCH = 100


def _view(svc: MasterService, box: AgentBox) -> dict[str, Any]:
    return agent_view(svc.machine, box, svc.now_ms())


@router.get("/agents")
async def list_agents(
    request: Request,
    *,
    prefix: str = "",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> JSONResponse:
    """Agents by id (those starting with ``prefix``): liveness, subscriptions, inbox depth."""
    svc = service(request)
    ids = sorted(a for a in svc.machine.messages.agents if a.startswith(prefix))
    boxes = svc.machine.messages.agents
    agents = [_view(svc, boxes[a]) for a in ids[:limit]]
    return JSONResponse({"agents": agents, "count": len(agents), "total": len(ids)})


@router.get("/agents/{agent_id}")
async def get_agent(request: Request, agent_id: AgentIdPath) -> JSONResponse:
    svc = service(request)
    return JSONResponse(_view(svc, svc.machine.messages.agent(agent_id)))


@router.post("/agents/{agent_id}/connect")
async def connect(request: Request, agent_id: AgentIdPath) -> JSONResponse:
    """Open or renew a named session (live for ``ttl_s``; renew before it runs out)."""
    svc = service(request)
    raw = await request.body()
    ttl_s = 30.0
    if raw.strip():
        ttl_s = (await read_model(request, ConnectIn, svc.config.max_request_bytes)).ttl_s
    box: AgentBox = await svc.log.propose(
        ConnectAgent(now_ms=svc.now_ms(), agent_id=agent_id, ttl_ms=round(ttl_s * 1000))
    )
    return JSONResponse(_view(svc, box))


@router.post("/agents/{agent_id}/disconnect")
async def disconnect(request: Request, agent_id: AgentIdPath) -> JSONResponse:
    svc = service(request)
    box: AgentBox = await svc.log.propose(DisconnectAgent(now_ms=svc.now_ms(), agent_id=agent_id))
    return JSONResponse(_view(svc, box))


@router.get("/agents/{agent_id}/inbox")
async def inbox(
    request: Request,
    agent_id: AgentIdPath,
    *,
    after: Annotated[int | None, Query(ge=0)] = None,
    wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0.0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    """Messages after cursor ``after`` (default: after the last acknowledged one); with
    ``wait_s``, answered as soon as one arrives (long-poll). Reading acknowledges nothing."""
    svc = service(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    table = svc.machine.messages
    while True:
        with svc.inbox_waiters.watch(agent_id) as delivered:
            found = table.read(agent_id, after=after, now_ms=svc.now_ms(), limit=limit)
            left = deadline - loop.time()
            if found or left <= 0:
                box = table.agents.get(agent_id)
                messages = [message_view(m, cursor) for cursor, m in found]
                return JSONResponse(
                    {
                        "agent": agent_id,
                        "messages": messages,
                        "acked": 0 if box is None else box.acked,
                        "next_after": found[-1][0] if found else after,
                    }
                )
            await wait_for(delivered, left)


@router.post("/agents/{agent_id}/ack")
async def ack(request: Request, agent_id: AgentIdPath) -> JSONResponse:
    """Everything up to ``cursor`` is handled; it is not delivered again."""
    svc = service(request)
    body = await read_model(request, AckIn, svc.config.max_request_bytes)
    box: AgentBox = await svc.log.propose(
        AckMessages(now_ms=svc.now_ms(), agent_id=agent_id, cursor=body.cursor)
    )
    return JSONResponse(_view(svc, box))


@router.put("/agents/{agent_id}/subscriptions/{pattern:path}")
async def subscribe(request: Request, agent_id: AgentIdPath, pattern: str) -> JSONResponse:
    svc = service(request)
    box: AgentBox = await svc.log.propose(
        Subscribe(now_ms=svc.now_ms(), agent_id=agent_id, pattern=pattern)
    )
    return JSONResponse(_view(svc, box))


@router.delete("/agents/{agent_id}/subscriptions/{pattern:path}", status_code=204)
async def unsubscribe(request: Request, agent_id: AgentIdPath, pattern: str) -> Response:
    svc = service(request)
    await svc.log.propose(Unsubscribe(now_ms=svc.now_ms(), agent_id=agent_id, pattern=pattern))
    return Response(status_code=204)


@router.websocket("/agents/{agent_id}/stream")
async def stream(ws: WebSocket, agent_id: str, after: int | None = None) -> None:
    """JSON frames ``{"cursor": n, "message": {...}}`` from the inbox, as they arrive; the
    client sends ``{"ack": n}``. The agent is live while the socket is open (and up to
    ``STREAM_TTL_S`` after it closes, unless something else renews its session)."""
    svc: MasterService = ws.app.state.service
    await ws.accept()
    if not svc.log.is_leader:
        error = svc.log.not_leader()
        await ws.send_json({"error": error.detail, "leader_url": svc.log.leader_url})
        await ws.close(code=4503)
        return
    try:
        await _connect(svc, agent_id)
    except AgentFlowError as exc:
        await ws.send_json({"error": exc.detail, "code": exc.code})
        await ws.close(code=4400)
        return
    tasks = [
        asyncio.create_task(_keep_alive(svc, agent_id)),
        asyncio.create_task(_read_acks(svc, ws, agent_id)),
        asyncio.create_task(_push(svc, ws, agent_id, after)),
    ]
    try:
        # The client leaving ends the ack reader (or a send fails): stop the rest.
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


async def _keep_alive(svc: MasterService, agent_id: str) -> None:
    while True:
        await asyncio.sleep(STREAM_TTL_S / 3)
        try:
            await _connect(svc, agent_id)
        except AgentFlowError as exc:
            log.info("agent %s: session not renewed: %s", agent_id, exc)


async def _push(svc: MasterService, ws: WebSocket, agent_id: str, after: int | None) -> None:
    table = svc.machine.messages
    cursor = after
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await _push_from(svc, ws, table, agent_id, cursor)


async def _push_from(
    svc: MasterService, ws: WebSocket, table: MessageTable, agent_id: str, cursor: int | None
) -> None:
    while True:
        with svc.inbox_waiters.watch(agent_id) as delivered:
            found = table.read(agent_id, after=cursor, now_ms=svc.now_ms(), limit=STREAM_BATCH)
            for position, message in found:
                await ws.send_text(
                    json.dumps({"cursor": position, "message": message_view(message)})
                )
            if found:
                cursor = found[-1][0]
                continue
            await wait_for(delivered, 15.0)


async def _read_acks(svc: MasterService, ws: WebSocket, agent_id: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            try:
                frame = json.loads(await ws.receive_text())
            except ValueError:
                frame = None
            cursor = frame.get("ack") if isinstance(frame, dict) else None
            if not isinstance(cursor, int) or cursor < 0:
                await ws.send_json({"error": 'frames look like {"ack": cursor}'})
                continue
            try:
                await svc.log.propose(
                    AckMessages(now_ms=svc.now_ms(), agent_id=agent_id, cursor=cursor)
                )
            except AgentFlowError as exc:
                await ws.send_json({"error": exc.detail, "code": exc.code})
