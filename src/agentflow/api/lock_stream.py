"""``WS /api/v1/locks``: lock operations over one socket, for clients that take many.

Client frames: ``{"ref": r, "op": "acquire" | "renew" | "release", "name": N, ...}`` where the
rest is the body of the matching HTTP route. Server frames answer by ``ref``:
``{"ref": r, "grant": {...}}`` for acquire and renew, ``{"ref": r, "released": [...],
"granted": [...]}`` for release, or ``{"ref": r, "error": {problem}}``. Each frame runs on its
own, so a blocking acquire does not hold up the renewals behind it; a client that closes the
socket has its waits cancelled. Semantics are the HTTP routes' (same code), minus an HTTP
request per operation. Served by the leader; a follower answers with ``leader_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from agentflow.api.decoding import FrameError, receive_frame, refuse_frame, send_frame
from agentflow.api.identity import Identity, holds_of, identity_of
from agentflow.api.lock_routes import (
    LOCK_NAME,
    acquire_lock,
    changes_view,
    release_lock,
    renew_lock,
)
from agentflow.api.schemas import LockAcquireIn, LockReleaseIn, LockRenewIn
from agentflow.api.service import MasterService, accept_on_leader
from agentflow.api.views import grant_view
from agentflow.errors import AgentFlowError, ValidationError

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

Gone = Callable[[], Awaitable[bool]]
MAX_RUNNING = 1000  # operations of one socket in progress at once

_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "acquire": LockAcquireIn,
    "renew": LockRenewIn,
    "release": LockReleaseIn,
}


@router.websocket("/locks")
async def lock_socket(ws: WebSocket) -> None:
    svc = await accept_on_leader(ws)
    if svc is None:
        return
    closed = asyncio.Event()
    running: set[asyncio.Task[None]] = set()

    async def gone() -> bool:
        return closed.is_set()

    try:
        while True:
            try:
                frame = await receive_frame(ws)
            except FrameError as exc:  # answered by its ref when it has one
                if await refuse_frame(ws, exc):
                    break
                continue
            if len(running) >= MAX_RUNNING:  # hold the reading back: TCP slows the client
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(_answer(svc, ws, frame, gone))
            running.add(task)
            task.add_done_callback(running.discard)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        closed.set()  # blocking acquires see it within a second and cancel their waits
        if running:
            await asyncio.gather(*running, return_exceptions=True)


async def _answer(svc: MasterService, ws: WebSocket, frame: dict[str, Any], gone: Gone) -> None:
    ref = frame.get("ref")
    try:
        answer = await _run(svc, frame, gone, identity_of(ws.scope), holds_of(ws.scope))
    except AgentFlowError as exc:
        answer = {"error": exc.to_problem()}
    except Exception:  # every frame is answered, even when its handling breaks
        log.exception("lock socket: frame %r failed", ref)
        answer = {"error": AgentFlowError("the operation failed on the master").to_problem()}
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await send_frame(ws, {"ref": ref} | answer)


async def _run(
    svc: MasterService,
    frame: dict[str, Any],
    gone: Gone,
    identity: Identity | None,
    holds: Callable[[], bool],
) -> dict[str, Any]:
    op, name = frame.get("op"), frame.get("name")
    model = _MODELS.get(op) if isinstance(op, str) else None
    if model is None:
        raise ValidationError('"op" is one of acquire, renew, release')
    if not isinstance(name, str) or not LOCK_NAME.match(name):
        raise ValidationError(f"invalid lock name {name!r}")
    fields = {k: v for k, v in frame.items() if k not in ("ref", "op", "name")}
    try:
        body = model.model_validate(fields, strict=True)  # as over HTTP
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "frame"
        raise ValidationError(f"{where}: {problem['msg']}") from None
    if isinstance(body, LockAcquireIn):
        grant = await acquire_lock(svc, name, body, gone=gone, identity=identity, holds=holds)
    elif isinstance(body, LockRenewIn):
        grant = await renew_lock(svc, name, body, identity)
    else:
        assert isinstance(body, LockReleaseIn)
        return changes_view(name, await release_lock(svc, name, body, identity))
    return {"grant": grant_view(svc.machine, grant, svc.now_ms())}
