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

from typing import Any, Literal

import pydantic
from fastapi import APIRouter, WebSocket

from agentflow.api.frame_loop import FrameBounds, FrameLoop
from agentflow.api.problems import validation_error
from agentflow.api.schemas import TaskBatchIn, TaskIn
from agentflow.api.service import MasterService, accept_on_leader
from agentflow.api.task_routes import accept_batch, accept_task
from agentflow.errors import ValidationError

__all__ = ["SubmitBatchFrame", "SubmitTaskFrame", "router"]

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
    limit = svc.config.max_request_bytes
    # A socket holds what a few requests would: MAX_RUNNING frames, HELD_BODIES bodies' bytes.
    bounds = FrameBounds(
        running_max=MAX_RUNNING, frame_bytes_max=limit, held_bytes_max=HELD_BODIES * limit
    )
    frames = FrameLoop(
        ws,
        name="submit socket",
        failure="the submit failed on the master",
        bounds=bounds,
        ref_of=_ref_or_none,
    )
    await frames.serve(lambda frame, text: _run(svc, frame, text))


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
