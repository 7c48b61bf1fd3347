"""Routes under ``/api/v1/tasks`` and ``/api/v1/queue``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from agentflow.api.decoding import JSONResponse, read_model, read_no_body
from agentflow.api.schemas import TaskBatchIn, TaskIn, TaskPatchIn, new_task_ids
from agentflow.api.service import MasterService, service
from agentflow.api.views import task_view
from agentflow.cluster.history import HistoryFilter
from agentflow.errors import PayloadTooLargeError, ValidationError
from agentflow.jsonbound import INT64_MAX
from agentflow.state import TaskStatus
from agentflow.state.commands import CancelTask, SetPriority
from agentflow.state.records import TERMINAL_STATUSES

__all__ = ["accept_batch", "accept_task", "router"]

router = APIRouter(prefix="/api/v1")

MAX_WAIT_S = 300.0
MAX_PAGE = 1000


@router.post("/tasks", status_code=201)
async def create_task(request: Request) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, TaskIn, svc.config.max_request_bytes)
    view, status = await accept_task(svc, body)
    return JSONResponse(view, status_code=status)


@router.post("/tasks/batch", status_code=201)
async def create_tasks(request: Request) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, TaskBatchIn, svc.config.max_request_bytes)
    answer, status = await accept_batch(svc, body)
    return JSONResponse(answer, status_code=status)


async def accept_task(svc: MasterService, body: TaskIn) -> tuple[dict[str, Any], int]:
    """Submit one validated task; its view and status (201 new, 200 a repeated key) once the
    entry is committed. The HTTP route and ``WS /api/v1/submit`` both answer with this."""
    [(task_id, created)] = await svc.submit([body.to_new_task()])
    view = task_view(svc.machine, svc.task(task_id), svc.now_ms())
    view["created"] = created
    return view, 201 if created else 200


async def accept_batch(svc: MasterService, body: TaskBatchIn) -> tuple[dict[str, Any], int]:
    """Submit a validated batch (413 over ``max_batch_tasks``); ids in order, once committed."""
    if len(body.tasks) > svc.config.max_batch_tasks:
        raise PayloadTooLargeError(
            f"batch of {len(body.tasks)} tasks exceeds {svc.config.max_batch_tasks}"
        )
    ids = new_task_ids(len(body.tasks))
    results = await svc.submit([t.to_new_task(i) for t, i in zip(body.tasks, ids, strict=True)])
    tasks = [{"id": tid, "created": created} for tid, created in results]
    return {"tasks": tasks, "count": len(tasks)}, 201


@router.get("/tasks")
async def list_tasks(
    request: Request,
    *,
    status: Annotated[list[str] | None, Query()] = None,
    group: str | None = None,
    priority: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: str | None = None,
    history: bool = False,
) -> JSONResponse:
    """Newest first. ``cursor`` is the ``next_cursor`` of the previous page. With ``history``,
    the listing goes on past the tasks in memory into the history (tasks evicted beyond
    --max-finished-tasks, the last evicted first, marked ``from_history``): this master's file,
    or with a SQL store the store's tables, the same on every master."""
    svc = service(request)
    keep = HistoryFilter(statuses=frozenset(_statuses(status)), group=group, priority=priority)
    ids = list(svc.machine.tasks)
    start = len(ids)
    if cursor:
        try:
            start = ids.index(cursor)
        except ValueError:
            if not history or not await svc.history.holds(cursor):
                raise ValidationError(f"unknown cursor {cursor!r}") from None
            return await _history_page(svc, keep, limit, cursor, [])
    page: list[dict[str, Any]] = []
    now = svc.now_ms()
    for pos in range(start - 1, -1, -1):
        task = svc.machine.tasks.peek(ids[pos])  # read only: a frozen task stays frozen
        if task is None or not keep.keeps(task):
            continue
        if len(page) == limit:
            return JSONResponse({"tasks": page, "next_cursor": ids[pos + 1]})
        page.append(task_view(svc.machine, task, now))
    if history:
        return await _history_page(svc, keep, limit, ids[0] if ids else None, page)
    return JSONResponse({"tasks": page, "next_cursor": None})


async def _history_page(
    svc: MasterService, keep: HistoryFilter, limit: int, cursor: str | None, page: list[Any]
) -> JSONResponse:
    """``page`` (tasks from memory) filled up from the history, after ``cursor`` when it is a
    task of the history; the next cursor when more remain."""
    if len(page) == limit:  # full from memory: the history, if any, is the next page's
        empty = await svc.history.is_empty()
        return JSONResponse({"tasks": page, "next_cursor": None if empty else cursor})
    after = cursor if cursor is not None and await svc.history.holds(cursor) else None
    room = limit - len(page)
    found = await svc.history.find_page(keep, room + 1, after)  # one more: whether more remain
    more = len(found) > room
    now = svc.now_ms()
    page.extend(_historic(task_view(svc.machine, t, now)) for t in found[:room])
    return JSONResponse({"tasks": page, "next_cursor": page[-1]["id"] if more else None})


def _historic(view: dict[str, Any]) -> dict[str, Any]:
    view["from_history"] = True
    return view


def _statuses(values: list[str] | None) -> set[TaskStatus]:
    out: set[TaskStatus] = set()
    for value in values or []:
        for name in filter(None, (n.strip() for n in value.split(","))):
            try:
                out.add(TaskStatus(name.strip()))
            except ValueError:
                known = ", ".join(s.value for s in TaskStatus)
                raise ValidationError(f"unknown status {name!r}; one of {known}") from None
    return out


@router.get("/tasks/{task_id}")
async def get_task(
    request: Request,
    task_id: str,
    wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0.0,
) -> JSONResponse:
    """The task; with ``wait_s``, answered when it finishes or the wait runs out."""
    svc = service(request)
    task, old = await svc.wait_finished(task_id, wait_s)
    view = task_view(svc.machine, task, svc.now_ms())
    return JSONResponse(_historic(view) if old else view)


@router.get("/tasks/{task_id}/output", response_model=None)
async def get_output(
    request: Request,
    task_id: str,
    follow: bool = False,
    stream: Annotated[Literal["stdout", "stderr"] | None, Query()] = None,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
) -> JSONResponse | StreamingResponse:
    """The held output as JSON; with ``follow``, streamed as text until the task ends: both
    streams, or ``stream`` alone from its absolute byte ``offset`` (to resume a follow)."""
    svc = service(request)
    task, old = await svc.task_or_history(task_id)  # an evicted task's output went with it
    if (stream or offset) and not follow:
        raise ValidationError("stream and offset apply only with follow=true")
    if offset and not stream:
        raise ValidationError("offset needs stream (stdout or stderr)")
    if follow:
        chunks = svc.follow_output(task_id, stream, offset)
        return StreamingResponse(chunks, media_type="text/plain")
    tails = svc.machine.outputs.get(task_id, {})
    body: dict[str, Any] = {"task_id": task_id, "status": task.status.value, "finished": False}
    for name in ("stdout", "stderr"):
        tail = tails.get(name)
        body[name] = tail.data.decode("utf-8", "replace") if tail else ""
        body[f"{name}_truncated_bytes"] = tail.dropped if tail else 0
    body["finished"] = task.status in TERMINAL_STATUSES
    # Emptied to keep all tasks' output within --output-retained-bytes.
    body["output_evicted"] = old or any(t.evicted for t in tails.values())
    return JSONResponse(body)


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(request: Request, task_id: str) -> JSONResponse:
    svc = service(request)
    await read_no_body(request, svc.config.max_request_bytes)
    svc.task(task_id)
    await svc.log.propose(CancelTask(now_ms=svc.now_ms(), task_id=task_id))
    return JSONResponse(task_view(svc.machine, svc.task(task_id), svc.now_ms()))


@router.patch("/tasks/{task_id}")
async def patch_task(request: Request, task_id: str) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, TaskPatchIn, svc.config.max_request_bytes)
    svc.task(task_id)
    await svc.log.propose(SetPriority(now_ms=svc.now_ms(), task_id=task_id, priority=body.priority))
    return JSONResponse(task_view(svc.machine, svc.task(task_id), svc.now_ms()))


@router.get("/queue/stats")
async def queue_stats(request: Request) -> JSONResponse:
    return JSONResponse(service(request).queue_stats())
