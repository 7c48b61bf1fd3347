"""Schedule commands applied to the state machine's :class:`ScheduleTable`.

``FireSchedule`` is the one that crosses tables: in one entry it records the fire time, cancels
the previous run (overlap ``cancel_previous``) and submits the new one through the same
handlers as ``SubmitTasks`` and ``SubmitWorkflow``. The run's ids and its idempotency key
(``schedule:<name>:<fire ms>``) derive from the schedule and the fire time alone, so every
replica makes the same run and a fire time proposed twice finds the first run.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agentflow.errors import ConflictError, ValidationError
from agentflow.state import tasks as task_ops
from agentflow.state import workflows as workflow_ops
from agentflow.state.commands import (
    CancelWorkflow,
    Command,
    CreateSchedule,
    DeleteSchedule,
    FireSchedule,
    NewTask,
    SubmitTasks,
    SubmitWorkflow,
    UpdateSchedule,
)
from agentflow.state.field_types import FieldTypeError, check_fields
from agentflow.state.records import TERMINAL_STATUSES, WorkflowStatus
from agentflow.state.schedules import (
    Overlap,
    RunKind,
    ScheduleRecord,
    parse_catchup,
    parse_kind,
    parse_overlap,
    run_key,
)

if TYPE_CHECKING:
    from agentflow.state.handlers import Handler
    from agentflow.state.machine import StateMachine

__all__ = ["HANDLERS", "create", "delete", "fire", "update"]

WORKFLOW_TEMPLATE_KEYS = frozenset({"name", "failure_policy", "tasks"})


def _template_tasks(kind: RunKind, template: dict[str, Any]) -> list[NewTask]:
    """The tasks ``template`` describes, checked field by field (a ``ValidationError`` if not)."""
    try:
        if kind is RunKind.TASK:
            tasks = [NewTask(**template)]
        else:
            if set(template) != WORKFLOW_TEMPLATE_KEYS or not isinstance(template["tasks"], list):
                raise ValidationError(f"a workflow template has {sorted(WORKFLOW_TEMPLATE_KEYS)}")
            tasks = [NewTask(**t) for t in template["tasks"]]
            keys = {t.id for t in tasks}
            if len(keys) != len(tasks) or any(d not in keys for t in tasks for d in t.dependencies):
                raise ValidationError("a workflow template's dependencies name its own tasks")
        for task in tasks:
            check_fields(task)
    except (TypeError, FieldTypeError) as exc:
        raise ValidationError(f"the schedule's {kind.value} is malformed: {exc}") from None
    return tasks


def create(sm: StateMachine, index: int, cmd: CreateSchedule) -> ScheduleRecord:
    kind = parse_kind(cmd.kind)
    _template_tasks(kind, cmd.template)
    record = ScheduleRecord(
        name=cmd.name,
        cron=cmd.cron,
        every_ms=cmd.every_ms,
        timezone=cmd.timezone,
        kind=kind,
        template=cmd.template,
        overlap=parse_overlap(cmd.overlap),
        catchup=parse_catchup(cmd.catchup),
        paused=cmd.paused,
        created_index=index,
        created_ms=cmd.now_ms,
        origin_ms=cmd.now_ms,
        since_ms=cmd.now_ms,
    )
    return sm.schedules.add(record)


def update(sm: StateMachine, index: int, cmd: UpdateSchedule) -> ScheduleRecord:
    """Everything is checked before anything changes."""
    record = sm.schedules.require(cmd.name)
    overlap = None if cmd.overlap is None else parse_overlap(cmd.overlap)
    catchup = None if cmd.catchup is None else parse_catchup(cmd.catchup)
    kind = record.kind if cmd.kind is None else parse_kind(cmd.kind)
    if cmd.template is not None or cmd.kind is not None:
        _template_tasks(kind, record.template if cmd.template is None else cmd.template)
    new_timing = cmd.cron is not None or cmd.every_ms is not None
    if new_timing:
        sm.schedules.check_timing(cmd.cron, cmd.every_ms)
    if new_timing or cmd.timezone is not None:
        if new_timing:
            record.cron, record.every_ms = cmd.cron, cmd.every_ms
        record.timezone = record.timezone if cmd.timezone is None else cmd.timezone
        record.origin_ms = record.since_ms = cmd.now_ms  # the new timing counts from now
    if cmd.paused is not None and cmd.paused != record.paused:
        record.paused = cmd.paused
        if not cmd.paused:
            record.since_ms = cmd.now_ms  # what fell due while paused does not run
    record.overlap = overlap or record.overlap
    record.catchup = catchup or record.catchup
    record.kind = kind
    if cmd.template is not None:
        record.template = cmd.template
    sm.schedules.changed()
    return record


def delete(sm: StateMachine, index: int, cmd: DeleteSchedule) -> ScheduleRecord:
    """The schedule goes; the runs it made stay."""
    return sm.schedules.remove(cmd.name)


def fire(sm: StateMachine, index: int, cmd: FireSchedule) -> dict[str, Any]:
    """Record ``cmd.fire_ms`` as the schedule's last fire time and act by its policies.

    Returns ``{"schedule", "fire_ms", "run_id", "skipped"}``: ``run_id`` is the task or
    workflow made (None when the fire time passed without a run), ``skipped`` says why not."""
    record = sm.schedules.require(cmd.name)
    if record.paused:
        raise ConflictError(f"schedule {record.name} is paused", schedule=record.name)
    after = record.since_ms if record.last_fire_ms is None else record.last_fire_ms
    if cmd.fire_ms <= max(after, record.since_ms):
        raise ConflictError(
            f"schedule {record.name} already fired up to {after}; {cmd.fire_ms} is not later",
            schedule=record.name,
        )
    if cmd.fire_ms > cmd.now_ms:
        raise ValidationError(f"fire time {cmd.fire_ms} is after the command's time")
    record.last_fire_ms = cmd.fire_ms
    sm.schedules.changed()
    answer: dict[str, Any] = {"schedule": record.name, "fire_ms": cmd.fire_ms, "run_id": None}
    if not cmd.run:
        record.skipped += 1
        return answer | {"skipped": "late"}
    live = _live_run(sm, record)
    if live and record.overlap is Overlap.SKIP:
        record.skipped += 1
        return answer | {"skipped": "overlap"}
    if live and record.overlap is Overlap.CANCEL_PREVIOUS:
        _cancel_run(sm, index, cmd.now_ms, record)
    run_id = _submit_run(sm, index, cmd, record)
    record.last_run_id, record.last_run_ms = run_id, cmd.fire_ms
    record.runs += 1
    return answer | {"run_id": run_id, "skipped": None}


def _live_run(sm: StateMachine, record: ScheduleRecord) -> bool:
    run_id = record.last_run_id
    if run_id is None:
        return False
    if record.kind is RunKind.TASK:
        task = sm.tasks.peek(run_id)
        return task is not None and task.status not in TERMINAL_STATUSES
    wf = sm.workflows.get(run_id)
    return wf is not None and wf.status is WorkflowStatus.RUNNING


def _cancel_run(sm: StateMachine, index: int, now_ms: int, record: ScheduleRecord) -> None:
    assert record.last_run_id is not None
    reason = f"cancelled by the next run of schedule {record.name}"
    if record.kind is RunKind.TASK:
        task = sm.tasks.get(record.last_run_id)
        if task is not None:
            task_ops.cancel_one(sm, index, now_ms, task, reason)
    else:
        workflow_ops.cancel_workflow(
            sm, index, CancelWorkflow(now_ms=now_ms, workflow_id=record.last_run_id)
        )


def _run_id(prefix: str, record: ScheduleRecord, fire_ms: int, part: str = "") -> str:
    seed = f"{record.name}\0{record.created_index}\0{fire_ms}\0{part}".encode()
    return prefix + hashlib.sha256(seed).hexdigest()[:16]


def _submit_run(sm: StateMachine, index: int, cmd: FireSchedule, record: ScheduleRecord) -> str:
    key = run_key(record.name, cmd.fire_ms)
    if record.kind is RunKind.TASK:
        new = NewTask(
            **record.template | {"id": _run_id("t-", record, cmd.fire_ms), "idempotency_key": key}
        )
        [(task_id, _)] = task_ops.submit(sm, index, SubmitTasks(now_ms=cmd.now_ms, tasks=[new]))
        return task_id
    template = record.template
    keyed = [NewTask(**t) for t in template["tasks"]]  # ids are the workflow's task keys
    ids = {t.id: _run_id("t-", record, cmd.fire_ms, t.id) for t in keyed}
    tasks = [
        replace(t, id=ids[t.id], key=t.id, dependencies=[ids[d] for d in t.dependencies])
        for t in keyed
    ]
    made = workflow_ops.submit_workflow(
        sm,
        index,
        SubmitWorkflow(
            now_ms=cmd.now_ms,
            workflow_id=_run_id("wf-", record, cmd.fire_ms),
            name=template["name"],
            failure_policy=template["failure_policy"],
            tasks=tasks,
            idempotency_key=key,
        ),
    )
    workflow_id: str = made["workflow_id"]
    return workflow_id


HANDLERS: dict[type[Command], Handler] = {
    CreateSchedule: create,
    UpdateSchedule: update,
    DeleteSchedule: delete,
    FireSchedule: fire,
}
