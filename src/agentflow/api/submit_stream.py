"""``WS /api/v1/submit``: submits over one socket, without an HTTP request each.

Client frames: ``{"ref": r, "op": "task", "body": {...}}`` with the body of
``POST /api/v1/tasks``, or ``{"ref": r, "op": "batch", "body": {"tasks": [...]}}`` with that of
``POST /api/v1/tasks/batch``. Server frames answer by ``ref`` with the HTTP route's status and
answer, ``{"ref": r, "status": 201, "body": {...}}``, or ``{"ref": r, "error": {problem}}``.

Everything is the HTTP routes': the same strict decoding (the frame's text through
:func:`agentflow.jsonbound.loads`, then the route's model, strictly, on the same text), the
same bounds (``max_request_bytes`` a frame, ``max_batch_tasks`` a batch), the same code to
submit, and an answer only once the entry is committed: an acknowledged task survives
``kill -9``. Tokens and the browser guard apply to the socket as to any route (a token is
checked again on every frame). Frames run concurrently (up to :data:`MAX_RUNNING` a socket),
so a client's submits share fsyncs. Served by the leader; a follower answers with
``leader_url`` and closes, and the SDK falls back to HTTP, which follows the leader too.

What it saves is the per-request cost of the HTTP stack (middleware, routing, a response
object), about half a millisecond of master CPU per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

import pydantic
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from agentflow.api.decoding import FrameError, receive_frame_text, refuse_frame, send_frame
from agentflow.api.problems import validation_error
from agentflow.api.schemas import TaskBatchIn, TaskIn
from agentflow.api.service import MasterService, accept_on_leader
from agentflow.api.task_routes import accept_batch, accept_task
from agentflow.errors import AgentFlowError, ValidationError

__all__ = ["SubmitBatchFrame", "SubmitTaskFrame", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

MAX_RUNNING = 64  # frames of one socket in progress at once; reading waits beyond
HELD_BODIES = 2  # and at most this many max_request_bytes of frames in progress
_REF_CHARS_MAX = 200


class _Frame(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    ref: int | str | None = None

    @pydantic.field_validator("ref")
    @classmethod
    def _short_ref(cls, ref: int | str | None) -> int | str | None:
        if isinstance(ref, str) and len(ref) > _REF_CHARS_MAX:
            raise ValueError(f"a ref is at most {_REF_CHARS_MAX} characters")
        return ref


class SubmitTaskFrame(_Frame):
    """One task: the body of ``POST /api/v1/tasks``."""

    op: Literal["task"]
    body: TaskIn


class SubmitBatchFrame(_Frame):
    """Many tasks: the body of ``POST /api/v1/tasks/batch``."""

    op: Literal["batch"]
    body: TaskBatchIn


_MODELS: dict[str, type[SubmitTaskFrame | SubmitBatchFrame]] = {
    "task": SubmitTaskFrame,
    "batch": SubmitBatchFrame,
}


@router.websocket("/submit")
async def submit_socket(ws: WebSocket) -> None:
    svc = await accept_on_leader(ws)
    if svc is None:
        return
    running: dict[asyncio.Task[None], int] = {}  # each frame in progress and its size
    held_max = HELD_BODIES * svc.config.max_request_bytes
    try:
        while True:
            try:
                frame, text = await receive_frame_text(ws, svc.config.max_request_bytes)
            except FrameError as exc:  # answered by its ref when it has one
                if await refuse_frame(ws, exc):
                    break
                continue
            # Hold the reading back (TCP then slows the client) while too many frames, or too
            # many bytes of them, are in progress: a socket holds what a few requests would.
            while running and (
                len(running) >= MAX_RUNNING or sum(running.values()) + len(text) > held_max
            ):
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(_answer(svc, ws, frame, text))
            running[task] = len(text)
            task.add_done_callback(running.pop)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        if running:  # what was sent is submitted; only the answers have nowhere to go
            await asyncio.gather(*running, return_exceptions=True)


async def _answer(svc: MasterService, ws: WebSocket, frame: dict[str, Any], text: str) -> None:
    ref = frame.get("ref")
    try:
        answer = await _run(svc, frame, text)
    except AgentFlowError as exc:
        answer = {"error": exc.to_problem()}
    except Exception:  # every frame is answered, even when its handling breaks
        log.exception("submit socket: frame %r failed", ref)
        answer = {"error": AgentFlowError("the submit failed on the master").to_problem()}
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await send_frame(ws, {"ref": _ref_or_none(ref)} | answer)


async def _run(svc: MasterService, frame: dict[str, Any], text: str) -> dict[str, Any]:
    op = frame.get("op")
    model = _MODELS.get(op) if isinstance(op, str) else None
    if model is None:
        raise ValidationError('"op" is one of task, batch')
    try:  # strictly, on the text, as the HTTP routes validate their bodies
        parsed = model.model_validate_json(text, strict=True)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None
    if isinstance(parsed, SubmitTaskFrame):
        body, status = await accept_task(svc, parsed.body)
    else:
        body, status = await accept_batch(svc, parsed.body)
    return {"status": status, "body": body}


def _ref_or_none(ref: Any) -> int | str | None:
    """The frame's ref to answer with, if it is one a client could have sent."""
    if isinstance(ref, str) and len(ref) <= _REF_CHARS_MAX:
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    return None
