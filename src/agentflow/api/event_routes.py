"""``WS /api/v1/events``: task, workflow, worker, lock and message events as they apply.

Served by every master from its own apply (no leader needed). The subscription comes in the
query string (``?task_id=A&task_id=B&workflow_id=W&group=G&kind=task&from_index=N&replay=true
&current=true&ends_only=true``) or, when the query names none of those, as the first frame
(the same keys: ``{"task_ids": [...], "kinds": [...], ...}``).

Server frames, in order:

- ``{"index": N, "events": [{"index": i, "kind": "task", ...}, ...]}``: events in log order;
  every event the filter takes, of every entry up to index ``N``, has been sent. A frame with no
  events moves ``N`` on while nothing matches (every few seconds at most).
- ``{"subscribed": true, "index": A, "floor": F}``: what was asked for (held events, current
  state) has been sent; live events follow. ``unknown`` lists named tasks this master does
  not hold (with ``current``).
- ``{"ref": r, "index": A, "added": n, "unknown": [...]}`` answers ``{"add": [task ids],
  "ref": r}``: the current state of the added tasks was sent before it. ``{"remove": [task
  ids]}`` stops watching them (no answer).
- ``{"ref": r, "error": {problem}}`` for a frame refused; ``{"error": {problem}}`` then a close
  for the socket's end: 4410 (``events-lost``: resume point no longer held, or the state jumped;
  re-read state and subscribe from now), 4429 (the client read too slowly: resume from the last
  ``index`` it saw), 4503 (this master has not applied the resume point yet and cannot catch
  up: resume on another), 4400 (a refused subscription), 1001 (the master is stopping).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any, Literal

import pydantic
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ConfigDict, Field

from agentflow import jsonbound
from agentflow.api.decoding import CLOSE_INVALID, FrameError, receive_frame
from agentflow.api.event_hub import (
    EVENT_KINDS,
    WATCHED_TASKS_MAX,
    Close,
    EventFilter,
    StreamEvent,
    Subscription,
)
from agentflow.api.identity import identity_of
from agentflow.api.problems import validation_error
from agentflow.api.service import MasterService
from agentflow.errors import (
    AgentFlowError,
    ClientError,
    EventsLostError,
    ForbiddenError,
    OverloadedError,
    UnavailableError,
    ValidationError,
)
from agentflow.state.tokens import Role

__all__ = ["CLOSE_LOST", "CLOSE_SLOW", "SubscriptionIn", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

FIRST_FRAME_S = 10.0  # a socket with no subscription in its query sends one this soon
PROGRESS_S = 5.0  # an idle socket hears the applied index at most this often
SEND_TIMEOUT_S = 30.0  # a frame the client does not take within this ends the socket
FRAME_EVENTS_MAX = 1000
FRAME_CHARS_MAX = 512 << 10  # a frame holds at least one event, and stops past this
ADD_TASKS_MAX = 10_000  # task ids in one add frame
CLOSE_REFUSED = 4400
CLOSE_LOST = 4410
CLOSE_SLOW = 4429
CLOSE_GOING_AWAY = 1001
CLOSE_BEHIND = 4503
_QUERY_KEYS = {"task_id", "workflow_id", "group", "kind", "from_index", "replay", "current"}
_QUERY_KEYS |= {"ends_only"}
_TASK_KINDS = frozenset({"task", "workflow"})  # what a task's own token may follow

_CLOSE_CODES = {EventsLostError: CLOSE_LOST, UnavailableError: CLOSE_BEHIND}

Kind = Literal["task", "workflow", "worker", "lock", "message", "entry"]
Key = Annotated[str, Field(min_length=1, max_length=200)]


class SubscriptionIn(pydantic.BaseModel):
    """What a socket follows (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid")

    task_ids: list[Key] | None = Field(default=None, max_length=WATCHED_TASKS_MAX)
    workflow_id: Key | None = None
    group: Key | None = None
    kinds: list[Kind] | None = Field(default=None, min_length=1, max_length=len(EVENT_KINDS))
    from_index: int | None = Field(default=None, ge=0, le=jsonbound.INT64_MAX)
    replay: bool = False
    current: bool = False
    ends_only: bool = False


class AddIn(pydantic.BaseModel):
    """``{"add": [ids], "ref": r}`` watches more tasks (answered); ``{"remove": [ids]}`` stops
    watching some (not answered)."""

    model_config = ConfigDict(extra="forbid")

    add: list[Key] | None = Field(default=None, max_length=ADD_TASKS_MAX)
    remove: list[Key] | None = Field(default=None, max_length=ADD_TASKS_MAX)
    ref: Annotated[str, Field(max_length=200)] | int | None = None


@router.websocket("/events")
async def events(ws: WebSocket) -> None:
    svc: MasterService = ws.app.state.service
    await ws.accept()
    try:
        body = await _subscription(ws)
        flt = _filter(body, ws)
        await _caught_up(svc, body)
        sub = svc.events.subscribe(
            flt, from_index=body.from_index, replay=body.replay, current=body.current
        )
    except WebSocketDisconnect:
        return
    except FrameError as exc:
        await _close(ws, exc.error, exc.close_code or CLOSE_REFUSED)
        return
    except AgentFlowError as exc:
        await _close(ws, exc, _CLOSE_CODES.get(type(exc), CLOSE_REFUSED))
        return
    try:
        await _serve(svc, ws, sub)
    finally:
        svc.events.unsubscribe(sub)


async def _subscription(ws: WebSocket) -> SubscriptionIn:
    """From the query string when it names a key, else from the first frame."""
    query = ws.query_params
    try:
        if _QUERY_KEYS & set(query.keys()):
            fields: dict[str, Any] = {k: v for k, v in query.items() if k in _QUERY_KEYS}
            fields.pop("task_id", None)
            fields.pop("kind", None)
            if "task_id" in query:
                fields["task_ids"] = query.getlist("task_id")
            if "kind" in query:
                fields["kinds"] = query.getlist("kind")
            unknown = set(query.keys()) - _QUERY_KEYS
            if unknown:
                raise ValidationError(f"unknown query parameter {sorted(unknown)[0]!r}")
            body = SubscriptionIn.model_validate(fields)  # text to numbers and booleans
        else:
            async with asyncio.timeout(FIRST_FRAME_S):
                frame = await receive_frame(ws)
            body = SubscriptionIn.model_validate(frame, strict=True)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None
    except TimeoutError:
        raise ClientError(f"no subscription within {FIRST_FRAME_S:g}s: send one") from None
    if body.replay and body.from_index is not None:
        raise ValidationError("replay (every held event) and from_index exclude each other")
    return body


async def _caught_up(svc: MasterService, body: SubscriptionIn) -> None:
    """A follower first applies what was committed before the subscription: the current state
    it sends is not older than what its client saw, and a resume point is never ahead of it
    (the stream stays exact: nothing twice). A master cut off from the leader cannot."""
    behind = body.from_index is not None and body.from_index > svc.machine.applied_index
    if body.current or behind:
        await svc.catch_up()
    applied = svc.machine.applied_index
    if body.from_index is not None and body.from_index > applied:
        raise UnavailableError(
            f"this master has applied entries up to {applied} only, not yet {body.from_index}: "
            "resume on another master",
            applied_index=applied,
        )


def _filter(body: SubscriptionIn, ws: WebSocket) -> EventFilter:
    kinds = frozenset(body.kinds or EVENT_KINDS)
    identity = identity_of(ws.scope)
    if identity is not None and identity.role is Role.TASK:
        if body.kinds is None:
            kinds = _TASK_KINDS
        elif not kinds <= _TASK_KINDS:
            raise ForbiddenError("a task's token follows task and workflow events only")
    return EventFilter(
        kinds=kinds,
        task_ids=None if body.task_ids is None else set(body.task_ids),
        workflow_id=body.workflow_id,
        group=body.group,
        ends_only=body.ends_only,
    )


async def _close(ws: WebSocket, error: AgentFlowError, code: int) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await ws.send_text(jsonbound.dumps({"error": error.to_problem()}).decode())
            await ws.close(code=code, reason=error.code)


async def _serve(svc: MasterService, ws: WebSocket, sub: Subscription) -> None:
    """Send what the subscription queues, take ``add`` frames, until either side ends."""
    tasks = [
        asyncio.create_task(_send(svc, ws, sub)),
        asyncio.create_task(_read(svc, ws, sub)),
        asyncio.create_task(sub.broken.wait()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[1] in done and not tasks[1].cancelled() and tasks[1].result():
            await asyncio.wait(tasks[::2], timeout=SEND_TIMEOUT_S, return_when="FIRST_COMPLETED")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if sub.overflowed:  # the sender may be stuck on a client that does not read: not waited
        error = OverloadedError(
            f"more than {sub.limit} events waited for this socket: resume from the last index "
            "received",
            index=sub.sent_index,
        )
        await _close(ws, error, CLOSE_SLOW)


async def _send(svc: MasterService, ws: WebSocket, sub: Subscription) -> None:
    try:
        await _send_frames(svc, ws, sub)
    except TimeoutError:  # a frame not taken for SEND_TIMEOUT_S: a reader too slow, as above
        sub.overflowed = True
        sub.pending.clear()
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


async def _send_frames(svc: MasterService, ws: WebSocket, sub: Subscription) -> None:
    """Frames as the subscription queues them; a progress frame when idle."""
    while True:
        sub.wake.clear()
        if sub.lost_after is not None:
            error = EventsLostError(
                f"this master installed a snapshot past index {sub.lost_after}: the events "
                "in between are not held. Re-read the state, then subscribe from now",
                index=sub.lost_after,
            )
            await _close(ws, error, CLOSE_LOST)
            return
        if svc.closing:
            await ws.close(code=CLOSE_GOING_AWAY, reason="the master is stopping")
            return
        if sub.pending:
            frame = _next_frame(svc, sub)
            if isinstance(frame, Close):
                await ws.close(code=frame.code, reason=frame.reason)
                return
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await ws.send_text(frame)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.wake.wait(), PROGRESS_S)
        if not sub.pending and sub.cursor > sub.sent_index:  # idle: the index moves on
            sub.sent_index = sub.cursor
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await ws.send_text(f'{{"index":{sub.cursor},"events":[]}}')


def _next_frame(svc: MasterService, sub: Subscription) -> str | Close:
    """The next frame of what ``sub`` queued: a ready-made frame, or a run of events."""
    pending = sub.pending
    head = pending[0]
    if not isinstance(head, StreamEvent):
        pending.popleft()
        if isinstance(head, Close):
            return head
        if "index" in head:
            sub.sent_index = max(sub.sent_index, head["index"])
        return jsonbound.dumps(head).decode()
    parts: list[str] = []
    chars = 0
    machine = svc.machine
    while pending and len(parts) < FRAME_EVENTS_MAX and chars < FRAME_CHARS_MAX:
        event = pending[0]
        if not isinstance(event, StreamEvent):
            break
        pending.popleft()
        text = jsonbound.dumps(event.wire(machine)).decode()
        parts.append(text)
        chars += len(text)
    index = sub.cursor
    for item in pending:  # the first event still queued: its entry is not fully sent
        if isinstance(item, StreamEvent):
            index = min(index, item.index - 1)
            break
    sub.sent_index = max(sub.sent_index, index)
    return f'{{"index":{index},"events":[{",".join(parts)}]}}'


async def _read(svc: MasterService, ws: WebSocket, sub: Subscription) -> bool:
    """Client frames: ``{"add": [task ids], "ref": r}``; answers go through the queue, in
    order with the events. True when a frame that cannot be read ends the socket (the sender
    closes it after the error frame); False when the client left."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            ref: Any = None
            try:
                frame = await receive_frame(ws)
                ref = _plain_ref(frame.get("ref"))
                try:
                    body = AddIn.model_validate(frame, strict=True)
                except pydantic.ValidationError as exc:
                    raise validation_error(exc) from None
                if (body.add is None) == (body.remove is None):
                    raise ValidationError('frames look like {"add": [...]} or {"remove": [...]}')
                if body.remove is not None:
                    svc.events.remove_tasks(sub, body.remove)
                    continue
                await svc.catch_up()  # on a follower: the tasks went in through the leader
                svc.events.add_tasks(sub, body.add or [], body.ref)
            except FrameError as exc:
                sub.push({"ref": exc.ref, "error": exc.error.to_problem()})
                if exc.close_code is not None:
                    reason = "invalid frame" if exc.close_code == CLOSE_INVALID else "binary frame"
                    sub.push(Close(code=exc.close_code, reason=reason))
                    return True
            except AgentFlowError as exc:
                sub.push({"ref": ref, "error": exc.to_problem()})
    return False


def _plain_ref(ref: Any) -> str | int | None:
    """A frame's ``ref`` as echoed in an error: short text or a 64-bit integer, else none."""
    if isinstance(ref, str) and len(ref) <= 200:
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref if jsonbound.INT64_MIN <= ref <= jsonbound.INT64_MAX else None
    return None
