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

from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
from fastapi import APIRouter, WebSocket

from agentflow.api.frame_loop import FrameBounds, FrameLoop
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
from agentflow.errors import ValidationError

__all__ = ["router"]

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
    frames = FrameLoop(
        ws,
        name="lock socket",
        failure="the operation failed on the master",
        bounds=FrameBounds(running_max=MAX_RUNNING),
    )

    async def run(frame: dict[str, Any], _text: str) -> dict[str, Any]:
        # A blocking acquire sees the client leave within a second and cancels its wait.
        return await _run(svc, frame, frames.gone, identity_of(ws.scope), holds_of(ws.scope))

    await frames.serve(run)


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
