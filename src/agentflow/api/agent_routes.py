"""Routes under ``/api/v1/agents``: sessions, inboxes (long-poll and a WebSocket stream), acks,
subscriptions, and the agent registry.

Any id is an agent: a running task's id, or a name a process connects under. Reading an inbox
changes nothing; acknowledging does (one command). The stream is served by the leader, which
keeps the agent's session alive while the socket is open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from agentflow.api.decoding import JSONResponse, read_model, read_no_body, read_optional_model
from agentflow.api.schemas import AckIn, ConnectIn
from agentflow.api.service import MasterService, service
from agentflow.api.views import agent_view, message_view
from agentflow.api.waiters import wait_for
from agentflow.state.commands import (
    AckMessages,
    ConnectAgent,
    DisconnectAgent,
    Subscribe,
    Unsubscribe,
)
from agentflow.state.messages import AgentBox

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

AgentIdPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\s*/][^\s/]*$")]
MAX_WAIT_S = 300.0


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
    body = await read_optional_model(request, ConnectIn, svc.config.max_request_bytes)
    ttl_s = 30.0 if body is None else body.ttl_s
    box: AgentBox = await svc.log.propose(
        ConnectAgent(now_ms=svc.now_ms(), agent_id=agent_id, ttl_ms=round(ttl_s * 1000))
    )
    return JSONResponse(_view(svc, box))


@router.post("/agents/{agent_id}/disconnect")
async def disconnect(request: Request, agent_id: AgentIdPath) -> JSONResponse:
    svc = service(request)
    await read_no_body(request, svc.config.max_request_bytes)
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
    await read_no_body(request, svc.config.max_request_bytes)
    box: AgentBox = await svc.log.propose(
        Subscribe(now_ms=svc.now_ms(), agent_id=agent_id, pattern=pattern)
    )
    return JSONResponse(_view(svc, box))


@router.delete("/agents/{agent_id}/subscriptions/{pattern:path}", status_code=204)
async def unsubscribe(request: Request, agent_id: AgentIdPath, pattern: str) -> Response:
    svc = service(request)
    await svc.log.propose(Unsubscribe(now_ms=svc.now_ms(), agent_id=agent_id, pattern=pattern))
    return Response(status_code=204)
