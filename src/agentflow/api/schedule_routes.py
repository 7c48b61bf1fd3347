"""Routes under ``/api/v1/schedules``: periodic tasks and workflows (issue 16).

A schedule's body is validated here exactly as ``POST /api/v1/tasks`` and ``POST
/api/v1/workflows`` validate theirs (the same models, the same DAG check), and its timing (a
5-field cron expression and an IANA time zone, or an ``every`` duration) too, before anything
is proposed: a refused schedule leaves nothing in the log. Each run is made by the leader
(:mod:`agentflow.scheduler.firing`) with the idempotency key ``schedule:<name>:<fire ms>``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field, model_validator

from agentflow.api.decoding import JSONResponse, read_model
from agentflow.api.schemas import TaskIn, WorkflowIn, _Strict
from agentflow.api.service import MasterService, require_workspaces, service
from agentflow.api.views import iso
from agentflow.api.workflow_routes import checked_dag, dag_tasks
from agentflow.durations import format_duration, parse_duration
from agentflow.errors import ConfigError, ConflictError, ValidationError
from agentflow.scheduler.firing import check_cron, check_timezone, next_run_ms
from agentflow.state.commands import CreateSchedule, DeleteSchedule, UpdateSchedule
from agentflow.state.schedules import (
    SCHEDULE_NAME_PATTERN,
    RunKind,
    ScheduleLimits,
    ScheduleRecord,
    run_key,
)

__all__ = ["ScheduleIn", "SchedulePatchIn", "router", "schedule_view"]

router = APIRouter(prefix="/api/v1/schedules")

OverlapName = Literal["skip", "allow", "cancel_previous"]
CatchupName = Literal["none", "last", "all"]


class _Timing(_Strict):
    cron: str | None = Field(default=None, min_length=1, max_length=200)
    every: str | float | None = Field(
        default=None, description="A duration: seconds, or 90s, 5m, 1h30m, 1d"
    )
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    task: TaskIn | None = None
    workflow: WorkflowIn | None = None
    overlap: OverlapName | None = None
    catchup: CatchupName | None = None
    paused: bool | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> _Timing:
        if self.cron is not None and self.every is not None:
            raise ValueError("give either cron or every, not both")
        if self.task is not None and self.workflow is not None:
            raise ValueError("give either task or workflow, not both")
        if self.timezone is not None and self.every is not None:
            raise ValueError("timezone applies to a cron expression, not to every")
        return self


class ScheduleIn(_Timing):
    """A new schedule: its name, a ``cron`` expression (in ``timezone``, UTC by default) or an
    ``every`` duration, and a ``task`` or a ``workflow`` body as their submit routes take."""

    name: str = Field(pattern=SCHEDULE_NAME_PATTERN)
    overlap: OverlapName | None = "skip"
    catchup: CatchupName | None = "none"
    paused: bool | None = False

    @model_validator(mode="after")
    def _complete(self) -> ScheduleIn:
        if self.cron is None and self.every is None:
            raise ValueError("a schedule needs cron or every")
        if self.task is None and self.workflow is None:
            raise ValueError("a schedule needs a task or a workflow to run")
        return self


class SchedulePatchIn(_Timing):
    """What to change; a field left out stays as it is. ``paused`` pauses or resumes."""


def _every_ms(every: str | float, limits: ScheduleLimits) -> int:
    try:
        every_ms = round(parse_duration(every) * 1000)
    except ConfigError as exc:
        raise ValidationError(str(exc), field="every") from None
    if not limits.every_ms_min <= every_ms <= limits.every_ms_max:
        raise ValidationError(
            f"every is from {format_duration(limits.every_ms_min / 1000)} to "
            f"{format_duration(limits.every_ms_max / 1000)}, not {every!r:.40}",
            field="every",
        )
    return every_ms


def _timing(body: _Timing, limits: ScheduleLimits) -> dict[str, Any]:
    """The checked timing fields of ``body`` as command fields (only those it gives)."""
    fields: dict[str, Any] = {}
    if body.cron is not None:
        fields["cron"] = check_cron(body.cron)
    if body.every is not None:
        fields["every_ms"] = _every_ms(body.every, limits)
    if body.timezone is not None:
        fields["timezone"] = check_timezone(body.timezone).key
    return fields


def _template(body: _Timing, svc: MasterService) -> dict[str, Any]:
    """``kind`` and ``template`` for the run ``body`` gives, validated as its submit route
    validates it (none when it gives neither)."""
    if body.task is not None:
        if body.task.idempotency_key is not None:
            raise ValidationError("a scheduled task gets its idempotency key from its fire time")
        new = body.task.to_new_task("scheduled")
        require_workspaces(svc, [new])
        return {"kind": RunKind.TASK.value, "template": dataclasses.asdict(new)}
    if body.workflow is not None:
        wf = body.workflow
        if wf.idempotency_key is not None:
            raise ValidationError(
                "a scheduled workflow gets its idempotency key from its fire time"
            )
        tasks = dag_tasks(wf, checked_dag(wf), {t.id: t.id for t in wf.tasks})
        require_workspaces(svc, tasks)
        template = {
            "name": wf.name,
            "failure_policy": wf.failure_policy,
            "tasks": [dataclasses.asdict(t) for t in tasks],
        }
        return {"kind": RunKind.WORKFLOW.value, "template": template}
    return {}


def schedule_view(record: ScheduleRecord, *, detail: bool = False) -> dict[str, Any]:
    next_ms = next_run_ms(record)
    view: dict[str, Any] = {"name": record.name}
    if record.cron is not None:
        view["cron"] = record.cron
    else:
        assert record.every_ms is not None
        view["every"] = format_duration(record.every_ms / 1000)
        view["every_ms"] = record.every_ms
    last_id = "last_task_id" if record.kind is RunKind.TASK else "last_workflow_id"
    view |= {
        "timezone": record.timezone,
        "kind": record.kind.value,
        "paused": record.paused,
        "overlap": record.overlap.value,
        "catchup": record.catchup.value,
        "next_run": iso(next_ms),
        "next_run_ms": next_ms,
        "last_run": iso(record.last_run_ms),
        "last_run_ms": record.last_run_ms,
        last_id: record.last_run_id,
        "last_fire_ms": record.last_fire_ms,
        "last_run_key": (
            None if record.last_run_ms is None else run_key(record.name, record.last_run_ms)
        ),
        "runs": record.runs,
        "skipped": record.skipped,
        "created": iso(record.created_ms),
    }
    if detail:
        view[record.kind.value] = record.template
    return view


def _schedule(svc: MasterService, name: str) -> ScheduleRecord:
    return svc.machine.schedules.require(name)


@router.post("", status_code=201)
async def create_schedule(request: Request) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, ScheduleIn, svc.config.max_request_bytes)
    if svc.machine.schedules.get(body.name) is not None:
        raise ConflictError(f"schedule {body.name} exists", schedule=body.name)
    fields = _timing(body, svc.machine.schedules.limits) | _template(body, svc)
    await svc.log.propose(
        CreateSchedule(
            now_ms=svc.now_ms(),
            name=body.name,
            overlap=body.overlap or "skip",
            catchup=body.catchup or "none",
            paused=bool(body.paused),
            **fields,
        )
    )
    return JSONResponse(schedule_view(_schedule(svc, body.name), detail=True), status_code=201)


@router.get("")
async def list_schedules(request: Request) -> JSONResponse:
    svc = service(request)
    return JSONResponse({"schedules": [schedule_view(s) for s in svc.machine.schedules.values()]})


@router.get("/{name}")
async def get_schedule(request: Request, name: str) -> JSONResponse:
    return JSONResponse(schedule_view(_schedule(service(request), name), detail=True))


@router.patch("/{name}")
async def patch_schedule(request: Request, name: str) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, SchedulePatchIn, svc.config.max_request_bytes)
    record = _schedule(svc, name)
    if body.timezone is not None and body.cron is None and record.cron is None:
        raise ValidationError("timezone applies to a cron expression, not to every")
    fields = _timing(body, svc.machine.schedules.limits) | _template(body, svc)
    await svc.log.propose(
        UpdateSchedule(
            now_ms=svc.now_ms(),
            name=name,
            paused=body.paused,
            overlap=body.overlap,
            catchup=body.catchup,
            **fields,
        )
    )
    return JSONResponse(schedule_view(_schedule(svc, name), detail=True))


@router.delete("/{name}")
async def delete_schedule(request: Request, name: str) -> JSONResponse:
    """The schedule goes; the tasks and workflows it made stay."""
    svc = service(request)
    _schedule(svc, name)
    await svc.log.propose(DeleteSchedule(now_ms=svc.now_ms(), name=name))
    return JSONResponse({"name": name, "deleted": True})
